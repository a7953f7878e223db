"""Who may do what: sign-in (Flask-Login sessions for people, Bearer tokens for the API), the role each
view needs, CSRF for every browser request, and rate limits (Flask-Limiter).

Every view needs at least an editor unless marked otherwise with ``requires``;
forgetting the mark never opens a door wider. Until the first administrator
exists, every page leads to the set-up page, and there is no default password.
"""

import hashlib
import ipaddress
import time
from http import HTTPStatus
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import BadSignature
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import audit
from models import ApiToken, ServiceToken, User, fold
from services import service_accounts
from web import TooManyFormParts, explain_refusal, is_htmx

PUBLIC = "public"
# The "role" of routes no person may use, whatever their role: reading a connection (its secret) is for
# service accounts only. People keep the promise they have always had: no one reads a secret back.
SERVICE = "service"
NO_PERSON_READS = ("Connections are read by service accounts only: no person, and no personal API token, ever reads "
                   "a secret back. An admin makes a service account on the Service accounts page.")
PEOPLE_ONLY = ("This route is for people; service accounts may only read connections (connection:read) and test "
               "them (connection:test).")
# The session key holding when its sign-in happened (seconds since the epoch): SESSION_MAX_HOURS counts from it.
SIGNED_IN_AT = "signed_in_at"
DEFAULT_ROLE = "editor"
API_PREFIX = "/api/"

login_manager = LoginManager()
csrf = CSRFProtect()
# Counts live in RATELIMIT_STORAGE_URI (MAILKEEP_RATELIMIT_STORAGE_URI): memory, per process, unless a shared
# store such as redis:// is configured.
limiter = Limiter(key_func=get_remote_address)


def requires(role):
    """Mark a view (or a MethodView's method) with the least role it needs: ``PUBLIC``, one of ``models.ROLES``,
    or ``SERVICE`` (no person at all)."""
    def mark(view):
        view.required_role = role
        return view
    return mark


def serves(scope):
    """Mark a view (or a MethodView's method) as one that service accounts holding `scope` (a key of
    models.SCOPES) may use. Every view without this mark refuses service accounts (403)."""
    def mark(view):
        view.service_scope = scope
        return view
    return mark


def before_set_up(view):
    """Mark a view that answers before the first administrator exists, as it would after: what machines read
    (a load balancer's /healthz, Prometheus's /metrics), which the set-up page means nothing to."""
    view.before_set_up = True
    return view


def token_or_networks(setting):
    """Mark a view outside the API that is read by machines: signed in like the API (a Bearer token, no
    session, no CSRF), or without a token from an address in the networks of the configuration key
    `setting` (a tuple of ip_network, e.g. METRICS_NETWORKS)."""
    def mark(view):
        view.takes_token = True
        view.open_to_networks = setting
        return view
    return mark


def init_app(app):
    """Wire sign-in, the access check, CSRF and rate limits into `app`."""
    # CSRF is checked in check_access, where API token requests (which carry no cookies) are told apart.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.session_interface = SlidingSessionCookie()
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    app.before_request(read_body_within_limits)  # before the rate limits, whose keys read the form
    limiter.init_app(app)
    app.before_request(check_access)
    app.register_error_handler(RateLimitExceeded, too_many_requests)
    app.register_error_handler(CSRFError, stale_form)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(HTTPException, http_error)
    app.jinja_env.globals.update(may=may)


class SlidingSessionCookie(SecureCookieSessionInterface):
    """Flask's signed session cookie, with the idle timeout (PERMANENT_SESSION_LIFETIME, from
    SESSION_IDLE_MINUTES) sliding on activity, but the cookie renewed at most once every ``RENEW_AFTER``
    seconds (or a tenth of the idle timeout, if shorter) when the request did not change the session.

    Flask renews it on every response (SESSION_REFRESH_EACH_REQUEST), each time
    with the session as that request read it. A cookie holds the whole session,
    so the response to a request the page makes by itself (the server lookup as
    a username is typed) that ends after a save could put back the session as it
    was before the save, and the save's "Saved ..." message was lost. Now a
    request that changes nothing sends no cookie unless the one it carried was
    signed more than that long ago, so only a request carrying a cookie over a
    minute old can still do so. A session ends SESSION_IDLE_MINUTES after its
    last renewal, which is at most that long before its last request. With
    SESSION_REFRESH_EACH_REQUEST off, an unchanged session is never renewed, as
    in Flask. Follows Flask's ``SessionInterface``
    (flask.sessions) and itsdangerous's ``TimedSerializer.loads(...,
    return_timestamp=True)``.
    """

    RENEW_AFTER = 60.0
    """Seconds: renew an unchanged session's cookie only when it is older (or a tenth of the idle timeout, when
    that is shorter)."""

    def open_session(self, app, request):
        """The session the request's cookie holds (empty when none, expired or forged), knowing when its cookie
        was signed (``signed_at``, a timezone-aware datetime)."""
        serializer = self.get_signing_serializer(app)
        value = request.cookies.get(self.get_cookie_name(app))
        if serializer is None or not value:
            return super().open_session(app, request)
        try:
            data, signed_at = serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds()),
                                               return_timestamp=True)
        except BadSignature:
            return self.session_class()
        opened = self.session_class(data)
        opened.signed_at = signed_at
        return opened

    def should_set_cookie(self, app, session):
        """True when the session changed, or when it is permanent and its cookie is due for renewal."""
        if session.modified:
            return True
        if not (session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return False
        signed_at = getattr(session, "signed_at", None)
        renew_after = min(self.RENEW_AFTER, app.permanent_session_lifetime.total_seconds() / 10)
        return signed_at is None or time.time() - signed_at.timestamp() >= renew_after


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def read_body_within_limits():
    """Before anything else reads the request: a body over MAX_REQUEST_BYTES, or a form with more fields
    than MAX_FORM_PARTS, is refused here (413, see ``too_large``).

    The rate limits read the form to find their keys, and Flask-Limiter, when it
    counts in Redis, takes any error raised meanwhile for Redis failing and
    swallows it; the request would then go on with the body already consumed
    (an empty form) and Redis wrongly set aside.
    """
    if request.content_length is not None and request.content_length > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    if request.mimetype in FORM_TYPES:
        request.form  # noqa: B018 (parsed now, with Werkzeug's limits and web.Request's; kept for later)


def _load_user(session_id):
    # A session names its user and the user's session epoch: a disabled user, or a session from before
    # the epoch moved on (signed out, disabled), ends here, on its next request. So does one signed in
    # more than SESSION_MAX_HOURS ago however busy it is, or one without a sign-in time (made before it was kept).
    if not session_is_young():
        return None
    user_id, _, epoch = session_id.partition(":")
    user = User.get_or_none(User.id == int(user_id)) if user_id.isdigit() else None
    return user if user is not None and user.active and str(user.session_epoch) == epoch else None


def mark_signed_in():
    """Record in the session that its sign-in happens now (SESSION_MAX_HOURS counts from this)."""
    session[SIGNED_IN_AT] = time.time()


def session_is_young():
    """True when this session's sign-in was less than SESSION_MAX_HOURS ago."""
    signed_in_at = session.get(SIGNED_IN_AT)
    if not isinstance(signed_in_at, (int, float)):
        return False
    # The time is in the signed cookie, so no one but Mailkeep set it; a time a little ahead (another machine's
    # clock) counts as now.
    return time.time() - signed_in_at < current_app.config["SESSION_MAX_HOURS"] * 3600


def acting_user():
    """The user behind this request: the API token's, else the signed-in one's, else None (a service
    account is no user)."""
    if "api_user" in g:
        return g.api_user
    if "service_caller" in g:
        return None
    return current_user if current_user.is_authenticated else None


def service_caller():
    """The services.service_accounts.Caller making this request with a service token, or None."""
    return g.get("service_caller")


def actor_name():
    """The audit log's name for whoever makes this request: the acting user's name, a service account's
    ``service:<name>``, or audit.ANONYMOUS."""
    if (caller := service_caller()) is not None:
        return caller.account.actor
    user = acting_user()
    return user.username if user else audit.ANONYMOUS


def user_key():
    """Rate-limit key: the acting user or service account, or the remote address before anyone is known."""
    if (caller := service_caller()) is not None:
        return f"service:{caller.account.id}"
    user = acting_user()
    return f"user:{user.id}" if user else get_remote_address()


def limits_service_reads(view):
    """Apply SERVICE_READ_RATE_LIMIT to a view that serves connections, counted per service account and shared
    by every such view (Flask-Limiter; the count runs when the view is called, after the access check has
    found the account)."""
    return limiter.shared_limit(lambda: current_app.config["SERVICE_READ_RATE_LIMIT"], scope="connection-reads",
                                key_func=user_key)(view)


def limits_connection_tests(view=None, *, when=None):
    """Apply TEST_RATE_LIMIT per user and TEST_RATE_LIMIT_TOTAL across all users to a view that tests connections.

    Both counters are shared by every such view, so switching between the page and the API gains nothing.
    Flask-Limiter counts limits in the order they were applied, so the per-user one goes first: a user's
    refused requests never reach the total, and one user cannot use up everyone's tests. With `when` (a
    function of the request), only the requests for which it is true count: a view that tests only
    sometimes (a save that then tests). Use as ``@limits_connection_tests`` or ``@limits_connection_tests(when=...)``.
    """
    if view is None:
        return lambda view: limits_connection_tests(view, when=when)
    exempt = (lambda: not when()) if when else None
    per_user = limiter.shared_limit(
        lambda: current_app.config["TEST_RATE_LIMIT"], scope="connection-tests", key_func=user_key, exempt_when=exempt
    )
    in_total = limiter.shared_limit(
        lambda: current_app.config["TEST_RATE_LIMIT_TOTAL"], scope="connection-tests-total",
        key_func=lambda: "everyone", exempt_when=exempt,
    )
    return in_total(per_user(view))


def limits_password_guesses(username):
    """Apply LOGIN_ACCOUNT_RATE_LIMIT to a view that checks the password of the account `username()` names
    (a function of the request): the sign-in form, the Account page.

    Counted per account, whichever address the guesses come from, and only for
    answers that refuse (200: the form again; a success is a 303), shared by every
    such view. The key is the casefolded name whether an account has it or not,
    so a throttled name says "try again in N seconds" like any other and tells
    nothing of which accounts exist. The count ends with its window (fixed
    windows): a delay, never a lock an attacker could keep an admin out with.
    """
    def account_key():
        return "account:" + hashlib.sha256(fold(username() or "").encode()).hexdigest()

    return limiter.shared_limit(
        lambda: current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"], scope="password-guesses", key_func=account_key,
        methods=["POST"], deduct_when=lambda response: response.status_code == HTTPStatus.OK,
    )


def check_access():
    """Before every request: set-up first, then sign-in, then role; CSRF for browser requests."""
    view = current_app.view_functions.get(request.endpoint)
    if view is None or request.endpoint == "static":
        return None
    if not getattr(view, "before_set_up", False) and not _set_up():
        if request.endpoint != "auth.setup":
            return _deny(503, "Mailkeep is not set up yet.", url_for("auth.setup"))
        return _protect()
    role = _required_role(view, request.method)
    if getattr(view, "takes_token", False):
        return None if role == PUBLIC or _from_open_network(view.open_to_networks) else _check_token(role)
    if is_api():
        return None if role == PUBLIC else _check_token(role, _service_scope(view, request.method))
    _protect()
    if role == PUBLIC:
        return None
    if not current_user.is_authenticated:
        if is_htmx():
            return _session_ended()
        return _deny(401, "Sign in first.", url_for("auth.login", next=request.full_path))
    if not current_user.may(role):
        return _deny(403, f"This needs the {role} role; you are a {current_user.role}.")
    return None


def _from_open_network(setting):
    """True when the request comes from an address in the networks the configuration key `setting` lists."""
    try:
        address = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
    except ValueError:
        return False
    return any(address in network for network in current_app.config.get(setting, ()))


def _set_up():
    """True once the first administrator exists. Remembered by the process once true: the last active
    admin can be neither deleted nor disabled, so Mailkeep never goes back to needing set-up."""
    if not current_app.extensions.get("mailkeep.set_up"):
        current_app.extensions["mailkeep.set_up"] = User.select().exists()
    return current_app.extensions["mailkeep.set_up"]


def _required_role(view, method):
    """The role marked on the view, or on the MethodView method that answers `method`; else DEFAULT_ROLE."""
    handler = getattr(getattr(view, "view_class", None), method.lower(), None)
    return getattr(handler, "required_role", getattr(view, "required_role", DEFAULT_ROLE))


def _service_scope(view, method):
    """The scope a service account needs for the view (``serves``), or None: no service account may use it."""
    handler = getattr(getattr(view, "view_class", None), method.lower(), None)
    return getattr(handler, "service_scope", getattr(view, "service_scope", None))


def may(endpoint, method="GET"):
    """True when whoever makes this request may use `endpoint` with `method`, by the role the view itself
    is marked with (the same answer check_access gives). Templates ask it before showing a link or a button,
    so each page offers only what its reader may do."""
    role = _required_role(current_app.view_functions[endpoint], method)
    user = acting_user()
    return role == PUBLIC or (role != SERVICE and user is not None and user.may(role))


def is_api():
    """True for a request to the JSON API (its blueprint, or any path under it, even one that matched nothing),
    or to a view read by machines (``token_or_networks``)."""
    if request.blueprint == "api" or request.path.startswith(API_PREFIX):
        return True
    view = current_app.view_functions.get(request.endpoint)
    return bool(getattr(view, "takes_token", False))


def _protect():
    """Check the CSRF token of a browser request that changes something (Flask-WTF; 400 when wrong)."""
    config = current_app.config
    if config["WTF_CSRF_ENABLED"] and request.method in config["WTF_CSRF_METHODS"]:
        csrf.protect()


def _check_token(role, scope=None):
    """API requests carry a token (a person's, or a service account's ``mks_...``) and no cookies, so CSRF
    cannot reach them. A person asking for a route no person may use (``SERVICE``) gets 403, with a
    personal token or a session; a service account is let in only where the view ``serves`` a scope it
    holds (``_check_service_token``)."""
    scheme, _, text = request.headers.get("Authorization", "").partition(" ")
    text = text.strip() if scheme.lower() == "bearer" else ""
    if text.startswith(ServiceToken.PREFIX):
        return _check_service_token(text, scope)
    token = ApiToken.find(text) if text else None
    if token is None or not token.user.active:
        if role == SERVICE and not text and current_user.is_authenticated:
            return jsonify(error=NO_PERSON_READS), 403
        return jsonify(error="Send a valid API token: Authorization: Bearer <token>."), 401
    if token.expired():
        return jsonify(error=f"This API token expired on {token.expires_at:%Y-%m-%d}; make a new one on the "
                             "API tokens page."), 401
    token.note_use()
    user = g.api_user = token.user
    if role == SERVICE:
        return jsonify(error=NO_PERSON_READS), 403
    if not user.may(role):
        return jsonify(error=f"This needs the {role} role; the token's user is a {user.role}."), 403
    return None


def _check_service_token(text, scope):
    """A service token: 401 unknown or expired, 403 from outside the account's networks (checked first, so a
    token used from elsewhere learns nothing more), on a route not for service accounts, or without the
    route's scope. Which credentials it may read is the view's to check (404 outside its grants)."""
    try:
        caller = service_accounts.authenticate(text, request.remote_addr)
    except service_accounts.Refused as refused:
        return jsonify(error=str(refused)), refused.status
    if scope is None:
        return jsonify(error=PEOPLE_ONLY), 403
    if not caller.account.has_scope(scope):
        return jsonify(error=f"This service account lacks the scope {scope}; an admin can give it on the Service "
                             "accounts page."), 403
    g.service_caller = caller
    return None


def too_many_requests(error):
    """A rate limit was hit: say when to try again, in words and in Retry-After (seconds)."""
    limit = limiter.current_limit
    retry = max(int(limit.reset_at - time.time()), 1) if limit else 60
    message = f"Too many requests for now; try again in {retry} seconds."
    response = current_app.make_response(_deny(HTTPStatus.TOO_MANY_REQUESTS, message, title="Too many requests"))
    response.status_code = HTTPStatus.TOO_MANY_REQUESTS  # also for htmx, whose configuration swaps 429 answers
    response.headers["Retry-After"] = str(retry)
    return response


def too_large(error):
    """A request body over MAX_REQUEST_BYTES, or a form with more fields than MAX_FORM_PARTS: 413, saying which."""
    if isinstance(error, TooManyFormParts):
        message = f"{error.description} It accepts at most {current_app.config['MAX_FORM_PARTS']}."
    else:
        message = (f"This request is larger than Mailkeep accepts: at most {current_app.config['MAX_REQUEST_BYTES']:,} "
                   "bytes.")
    return _deny(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)


# Plain titles for the error pages people meet; any other status is titled by its HTTP name.
ERROR_TITLES = {
    HTTPStatus.BAD_REQUEST: "This request could not be understood",
    HTTPStatus.NOT_FOUND: "Page not found",
    HTTPStatus.METHOD_NOT_ALLOWED: "This page does not take that request",
    HTTPStatus.INTERNAL_SERVER_ERROR: "Something went wrong",
}
ERROR_MESSAGES = {
    HTTPStatus.NOT_FOUND: "There is nothing at this address: the entry may have been deleted, or the link is mistyped.",
    HTTPStatus.INTERNAL_SERVER_ERROR: "Mailkeep ran into a problem it did not expect. Nothing was changed by this "
                                      "request; try again, and if it keeps happening, the server log says why.",
}


def http_error(error):
    """Other HTTP errors (a 500 for an unexpected exception included): JSON for the API; elsewhere a page in
    the layout with a plain title, what happened and a way back."""
    if is_api():
        return jsonify(error=error.description), error.code
    status = HTTPStatus(error.code)
    # An unexpected error may come from the database itself: that page does without the signed-in user.
    plain = status == HTTPStatus.INTERNAL_SERVER_ERROR
    body = render_template(
        "error.html", title=ERROR_TITLES.get(status, status.phrase), plain=plain,
        message=ERROR_MESSAGES.get(status, error.description),
    )
    return body, status


def stale_form(error):
    """A browser request without a valid CSRF token: most often a page left open past its session."""
    return _deny(HTTPStatus.BAD_REQUEST, "This page is out of date (or your session ended). Reload it and try again.",
                 title="This page is out of date")


def _session_ended():
    """An htmx request without a session: said in the page's message area, with a link to sign in and come
    back to the page. Never a redirect: a request the page makes by itself (the server lookup as you type a
    username, a search as you type) would take the page away, and what was typed on it, without being asked
    to. (A POST from a page whose session ended fails the CSRF check first: "out of date, reload".)"""
    page = urlsplit(request.headers.get("HX-Current-URL", ""))
    back = f"{page.path}?{page.query}" if page.query else page.path
    return explain_refusal("_refused.html", "Sign in first", HTTPStatus.UNAUTHORIZED,
                           message="Your session ended, so that was not done. Sign in again to go on.",
                           sign_in_url=url_for("auth.login", next=back or None))


def _deny(status, message, location=None, title="Not allowed"):
    """Refuse in the request's own terms: JSON for the API; else a redirect to `location` (one htmx
    follows too), or the message: for htmx in the page's message area, otherwise as a page headed by
    `title`, with a way back."""
    if is_api():
        return jsonify(error=message), status
    if location is not None:
        return ("", 204, {"HX-Redirect": location}) if is_htmx() else redirect(location)
    return explain_refusal("_refused.html", title, status, message=message)
