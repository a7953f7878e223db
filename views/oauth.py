"""OAuth2 sign-in: the OAuth apps page (administrators register the team's app at each provider), starting a
sign-in for a credential, and the callback the provider sends the browser back to.

A sign-in starts from the credential form (its "Sign in with ..." buttons save the form first, then come
here through ``start_sign_in``) or from the credential's own page ("Sign in again"). The callback stores
the refresh token on the credential and then tests it, so the person sees at once whether it works.
"""


from flask import Blueprint, redirect, render_template, request
from flask_login import current_user
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404

import identity_providers
from access import PUBLIC, actor_name, requires
from database import LARGEST_ID
from models import Credential, OAuthApp
from oauth_forms import OAuthAppForm
from probe import protocols
from services import connection_tests, oauth_sign_in, oauth_tokens
from services.entries import StillInUse, delete_entry
from services.oauth_apps import DiscoveryFailed, save_app
from web import after_change, explain_refusal, fragment_or_page, is_htmx

apps_bp = Blueprint("oauth_apps", __name__, url_prefix="/oauth-apps")
bp = Blueprint("oauth", __name__, url_prefix="/oauth")

# The submit button of the credential form that saves, then signs in with the OAuth app it names.
SIGN_IN_APP = "sign_in_app"


@apps_bp.app_template_global()
def sign_in_choices():
    """Every OAuth app with the words of its sign-in button, by name: [(app, label)]. Two apps of one
    provider are told apart by their names ("Sign in with Microsoft (Contoso)")."""
    apps = list(OAuthApp.select().order_by(OAuthApp.name_key))
    labels = [app.button_label for app in apps]
    return [(app, label if labels.count(label) == 1 else f"{label} ({app.name})")
            for app, label in zip(apps, labels, strict=True)]


@apps_bp.app_template_global()
def sign_in_still_serves(credential):
    """True when `credential`'s stored sign-in was made with its OAuth app as the app is now (same client,
    same token endpoint origin: services.oauth_tokens.still_serves)."""
    return oauth_tokens.still_serves(credential, credential.oauth_app)


@apps_bp.app_template_global()
def sign_in_redirect_uri():
    """The redirect URI every OAuth app registers (MAILKEEP_BASE_URL's /oauth/callback)."""
    return oauth_sign_in.callback_url()


@apps_bp.app_template_global()
def reached_elsewhere():
    """The address this page was reached at, when it is not MAILKEEP_BASE_URL's (the provider would send
    the browser back to a Mailkeep where it is not signed in); else None."""
    base = sign_in_redirect_uri().removesuffix("/oauth/callback").rstrip("/")
    here = request.host_url.rstrip("/")
    return None if here.lower() == base.lower() else here


@apps_bp.app_template_global()
def keep_alive_due(credential):
    """The day the keep-alive refreshes `credential`'s refresh token if nothing uses it before (naive UTC),
    or None when its provider's inactivity limit is unknown (see services.oauth_tokens.refresh_due)."""
    app = credential.oauth_app
    after = oauth_tokens.keep_alive_after(app) if app is not None else None
    if after is None or credential.oauth_used_at is None:
        return None
    return credential.oauth_used_at + after


@apps_bp.app_context_processor
def microsoft_preset():
    """What the credential form's Microsoft 365 app-only preset fills in, for its template and script."""
    return {
        "ms_token_url_template": identity_providers.KINDS[identity_providers.MICROSOFT].token_endpoint,
        "ms_app_only_scope": identity_providers.MICROSOFT_APP_ONLY_SCOPE,
        "ms_app_only_guide": identity_providers.MICROSOFT_APP_ONLY_GUIDE,
    }


# The pages whose forms start a sign-in (the credential form, its no-JavaScript test page, the credential's page).
SIGN_IN_PAGES = frozenset({"credentials.edit", "credentials.test_form", "credentials.show"})


@apps_bp.after_app_request
def sign_in_headers(response):
    """The callback's answers send no Referer on (its URL holds the authorization code, which no log may
    keep: an access log records the Referer of the requests a page makes).

    And the pages whose forms start a sign-in may send the browser on to the
    OAuth apps' authorization endpoints: their form posts here and is
    redirected there, and browsers hold a form submission's redirects to the
    page's Content-Security-Policy ``form-action`` too (CSP Level 3). Only
    those endpoints' origins are added, read from the apps (https, or http on
    loopback), nothing else.
    """
    if request.endpoint == "oauth.callback":
        response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint not in SIGN_IN_PAGES or response.mimetype != "text/html":
        return response
    origins = sorted({_origin(app.authorization_endpoint) for app in OAuthApp.select()} - {None})
    policy = response.headers.get("Content-Security-Policy", "")
    if origins and "form-action 'self'" in policy:
        response.headers["Content-Security-Policy"] = policy.replace(
            "form-action 'self'", "form-action 'self' " + " ".join(origins))
    return response


def _origin(url):
    """The origin of `url` as a CSP source (``https://login.example.com``, with a port if it has one), or None
    when it is not an http(s) URL with a plain host name or IP address (nothing else may enter the header)."""
    return oauth_tokens.origin(url)


@apps_bp.get("/")
@requires("admin")
def index():
    """The OAuth apps, with the redirect URI to register and what each is used by."""
    return render_template("oauth/apps.html", apps=list(OAuthApp.by_name()))


@apps_bp.route("/new", methods=["GET", "POST"], defaults={"app_id": None})
@apps_bp.route("/<id:app_id>/edit", methods=["GET", "POST"])
@requires("admin")
def edit(app_id):
    """Add an OAuth app (no id) or edit one. The client secret is never shown; typed, it replaces the stored one."""
    app = get_object_or_404(OAuthApp, OAuthApp.id == app_id) if app_id else None
    form = OAuthAppForm(obj=app, instance=app)
    if request.method == "POST" and form.validate():
        try:
            saved = save_app(app or OAuthApp(), form.values(), form.client_secret.data or None, actor=actor_name())
        except DiscoveryFailed as failed:
            form.issuer.errors = [*form.issuer.errors, failed.message]
        except IntegrityError:
            form.name.errors = [*form.name.errors, "Another OAuth app was saved with this name meanwhile."]
        else:
            return after_change(f"Saved the OAuth app {saved.name}.", ".index")
    return render_template("oauth/app_form.html", form=form, app=app)


@apps_bp.route("/<id:app_id>/delete", methods=["GET", "POST"])
@requires("admin")
def delete(app_id):
    """Ask (GET, without JavaScript), then delete the app unless credentials sign in with it (the database's
    RESTRICT foreign key refuses; the page says which)."""
    app = get_object_or_404(OAuthApp, OAuthApp.id == app_id)
    if request.method == "GET":
        return fragment_or_page("_delete_confirm.html", f"Delete {app.name}", thing=f"the OAuth app {app.name}")
    try:
        delete_entry(app, actor=actor_name())
    except StillInUse as refused:
        return explain_refusal("oauth/_delete_blocked.html", f"{app.name} is still in use", app=app,
                               credentials=refused.references)
    return after_change(f"Deleted the OAuth app {app.name}.", ".index")


def start_sign_in(credential, app_id, return_to):
    """Send the browser to the provider to sign in for the saved `credential` with the OAuth app `app_id`
    (text from a form), coming back to its form ("edit") or page ("show")."""
    app = OAuthApp.get_or_none(OAuthApp.id == int(app_id)) if str(app_id).isdigit() and \
        0 < int(app_id) <= LARGEST_ID else None
    if app is None:
        return after_change("That OAuth app is not there any more; choose another.",
                            "credentials.edit" if return_to == "edit" else "credentials.show",
                            credential_id=credential.id)
    url = oauth_sign_in.begin(credential, app, user=current_user, return_to=return_to)
    if is_htmx():
        return "", 200, {"HX-Redirect": url}
    return redirect(url, 303)


@bp.post("/sign-in/<id:credential_id>")
@requires("editor")
def sign_in(credential_id):
    """Sign in again for a saved credential, from its page: with the app it signed in with, or the one chosen."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    return start_sign_in(credential, request.form.get("app") or credential.oauth_app_id or "", return_to="show")


@bp.get("/callback")
@requires(PUBLIC)
def callback():
    """Where the provider sends the browser back: take the sign-in (services.oauth_sign_in.finish), test the
    credential with it, and go back to where the sign-in started. A state that belongs to no sign-in of
    this session, or one used already, is refused (400) and changes nothing.

    Open to anyone so that a browser without a session is answered here rather than sent to the sign-in
    page with the authorization code in its ``next`` address; such a return cannot belong to a sign-in
    (they are bound to the session that began them) and is refused like any other.
    """
    if not current_user.is_authenticated or not current_user.may("editor"):
        return explain_refusal("_refused.html", "This sign-in cannot be finished", 400,
                               message="Sign in to Mailkeep as an editor first, then start the sign-in again "
                                       "from the credential.")
    try:
        finished = oauth_sign_in.finish(request.args, user=current_user, actor=actor_name())
    except oauth_sign_in.SignInRefused as refused:
        return explain_refusal("_refused.html", "This sign-in cannot be finished", 400, message=refused.message)
    credential, message = finished.credential, finished.message
    if finished.ok and credential.auth == protocols.OAUTH2_SIGN_IN and credential.username:
        outcome = connection_tests.test_saved(credential, actor=actor_name())
        message += " " + _tested_in_words(outcome, credential)
    endpoint = "credentials.edit" if finished.return_to == "edit" else "credentials.show"
    return after_change(message, endpoint, credential_id=credential.id)


def _tested_in_words(outcome, credential):
    """What the test after a sign-in came to, in a sentence."""
    if outcome.busy:
        return f"{connection_tests.TOO_MANY_TESTS} Test it in a moment."
    if outcome.result is None:
        return "It was not tested: " + " ".join(outcome.blamed.values())
    return f"Tested: {'working' if outcome.result.ok else 'failing'}. {outcome.result.summary}"
