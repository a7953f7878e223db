"""Credentials: the list with its filters, add, edit, change a secret, test connection, autodetect, delete."""

import logging

from flask import Blueprint, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404

import keys
import logins
import providers
from access import actor_name, limits_connection_tests, requires
from database import is_missing_reference
from forms import (
    CUSTOM_DATA_ACTION,
    ConnectionForm,
    CredentialForm,
    SecretChangeForm,
    apply_custom_data_action,
    credential_form_data,
)
from models import Credential, Group
from probe import protocols
from services import checks, connection_tests, entries
from services.connection_tests import TOO_MANY_TESTS
from services.entries import StillInUse, delete_entry, save_credential
from views import credential_page, oauth, watch
from web import (
    BUSY_HEADERS,
    TOO_MANY_REQUESTS,
    Pages,
    after_change,
    announce,
    explain_refusal,
    fragment_or_page,
    id_arg,
    is_htmx,
    naturally,
)

bp = Blueprint("credentials", __name__, url_prefix="/credentials")
log = logging.getLogger(__name__)

# Fields a connection test can blame, each with a slot under it in the form for the cause: every setting of
# a test, secrets included.
BLAMABLE_FIELDS = (*logins.CONNECTION_FIELDS, *logins.SECRETS)


@bp.get("/")
@requires("viewer")
def index():
    """The credentials, filtered and paged; htmx gets the list alone (filters and page links swap it)."""
    filters = {
        "q": request.args.get("q", "").strip(),
        "group": id_arg("group"),
        "protocol": request.args.get("protocol") or None,
        "auth": request.args.get("auth") or None,
        "health": request.args.get("health") if request.args.get("health") in checks.SUMMARY_FILTERS else None,
    }
    matching = (filters["q"], filters["group"], filters["protocol"], filters["auth"],
                (checks.summary_condition(filters["health"]),) if filters["health"] else ())
    pages = Pages(Credential.search(*matching), lambda: Credential.count_matching(*matching),
                  fetch=lambda page, per_page: Credential.page_of(page, per_page, *matching))
    template = "credentials/_list.html" if is_htmx() else "credentials/index.html"
    return render_template(
        template,
        credentials=Credential.count_aliases(pages.get_object_list()),
        pages=pages,
        filters=filters,
        groups=naturally(Group.by_name(), "name"),
        protocol_names=protocols.PROTOCOLS,
        auth_labels=protocols.AUTHENTICATION_LABELS,
        **({} if is_htmx() else watch.summary_context()),
    )


@bp.get("/<id:credential_id>")
@requires("viewer")
def show(credential_id):
    """A credential's own page: its settings (never its secrets), its health, what it is for, and what may
    be done with it. Later features add their sections here (credentials/show.html)."""
    return credential_page.render(_listed_or_404(credential_id))[0]


@bp.route("/new", methods=["GET", "POST"], defaults={"credential_id": None})
@bp.route("/<id:credential_id>/edit", methods=["GET", "POST"])
@limits_connection_tests(when=lambda: _wants_save() and _then_test())
def edit(credential_id):
    """Add a credential (no id) or edit one; the custom data editor's buttons re-render without saving.

    A save records the form's last connection test on the entry when the saved
    settings are the ones tested (its receipt, see connection_tests.record_receipt);
    "Save and test" then tests the saved entry and says how it went.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id) if credential_id else None
    formdata, add_row = _form_input()
    form = CredentialForm(formdata=formdata, data=credential_form_data(credential) if credential else None,
                          instance=credential)
    if add_row:
        form.add_custom_data_row()
    if _wants_save() and form.validate():
        try:
            saved = save_credential(
                credential or Credential(), form.values(), form.login_secrets().changes(), form.custom_data_pairs(),
                actor=actor_name(),
            )
        except IntegrityError as error:
            form.form_errors.append("The group was deleted meanwhile; choose another." if is_missing_reference(error)
                                    else "Another credential was saved with the same name or mailbox meanwhile.")
        else:
            connection_tests.record_receipt(saved, request.form.get(TEST_RECEIPT), actor=actor_name(),
                                            tested_for=credential_id or connection_tests.NEW_ENTRY)
            if app_id := request.form.get(oauth.SIGN_IN_APP):  # "Sign in with ...": saved, now to the provider
                return oauth.start_sign_in(saved, app_id, return_to="edit")
            message = f"Saved {saved.name}."
            if _then_test():
                message += " " + _tested_in_words(connection_tests.test_saved(saved, actor=actor_name()), saved)
            return after_change(message, ".index")
    return _form_page(form, credential)


# The hidden field that carries a form test's receipt (connection_tests.TestOutcome.receipt) to Save.
TEST_RECEIPT = "test_receipt"
# The submit button that saves and then tests: "Save and test".
THEN = "then"


def _then_test():
    """True when the form was sent with "Save and test"."""
    return request.form.get(THEN) == "test"


def _tested_in_words(outcome, credential):
    """What a test of the saved `credential` came to, in a sentence for the notice after saving."""
    if outcome.busy:
        return f"{connection_tests.TOO_MANY_TESTS} Test it from the list in a moment."
    if outcome.ask_secret:
        return f"Not tested: {logins.SECRETS[outcome.ask_secret].enter or 'its secret is missing.'}"
    return f"Tested: {'working' if credential.last_test_ok else 'failing'}. {credential.last_test_summary}"


def _form_input():
    """The posted form data after the custom data editor's buttons, or (None, False) for a GET."""
    if request.method != "POST":
        return None, False
    return apply_custom_data_action(request.form)


def _wants_save():
    """A POST from the Save button, not from the custom data editor's Add row / Remove."""
    return request.method == "POST" and not request.form.get(CUSTOM_DATA_ACTION)


def _form_page(form, credential, outcome=None):
    """The credential form page, with a connection test's `outcome` (services.connection_tests.TestOutcome).

    What was typed comes back: the secrets as drafts (never as text), and the
    receipt of the last test (unless a new test replaced it), so a save after
    a failed one still records that test.
    """
    return render_template(
        "credentials/form.html",
        form=form,
        login=form.login_secrets(),
        drafts=form.secret_drafts(),
        credential=credential,
        outcome=outcome,
        receipt=outcome.receipt if outcome else request.form.get(TEST_RECEIPT),
        default_ports=_default_ports(),
        login_rules=logins.client_rules(),
        unreadable=credential.unreadable_secrets(keys.ring()) if credential else [],
    )


def _default_ports():
    """{protocol: {security: port}} for the form's script that moves a default port along with Security."""
    ports = {}
    for (protocol, security), port in protocols.DEFAULT_PORTS.items():
        ports.setdefault(protocol, {})[security] = port
    return ports


@bp.post("/custom-data")
def custom_data():
    """The custom data editor after an Add row or Remove click (htmx)."""
    formdata, add_row = apply_custom_data_action(request.form)
    form = CredentialForm(formdata=formdata)
    if add_row:
        form.add_custom_data_row()
    return render_template("credentials/_custom_data.html", form=form)


@bp.get("/autodetect")
def autodetect():
    """Suggest Host, Port and Security for a username's domain from the provider list (htmx)."""
    username = request.args.get("username", "")
    protocol = request.args.get("protocol", protocols.IMAP)
    provider = providers.for_username(username) if "@" in username else None
    server = provider.server(protocol) if provider else None
    return render_template(
        "credentials/_autodetect.html", provider=provider, server=server, protocol=protocol,
        fill=provider.suggestion(protocol) if provider else None, security_labels=protocols.SECURITY_LABELS,
    )


@bp.route("/<id:credential_id>/password", methods=["GET", "POST"], defaults={"name": "password"})
@bp.route("/<id:credential_id>/client-secret", methods=["GET", "POST"], defaults={"name": "client_secret"})
def change_secret(credential_id, name):
    """The dialog that changes one stored secret, and nothing else."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    secret = logins.SECRETS[name]
    form = SecretChangeForm(secret=secret)
    if form.validate_on_submit():
        entries.change_secret(credential, name, form.new_secret.data, actor=actor_name())
        if is_htmx():
            return render_template("credentials/_secret_dialog.html", credential=credential, secret=secret, form=None)
        return after_change(f"The {secret.noun} of {credential.name} was changed.", ".edit",
                            credential_id=credential.id)
    return fragment_or_page(
        "credentials/_secret_dialog.html", f"Change the {secret.noun} of {credential.name}",
        credential=credential, secret=secret, form=form,
    )


@bp.post("/test", defaults={"credential_id": None})
@bp.post("/<id:credential_id>/test-form")
@limits_connection_tests
def test_form(credential_id):
    """Test the values on screen, before or without saving them.

    The stored secret of the entry being edited is used only when the server,
    login (and for OAuth2 the client and token endpoint) are unchanged;
    otherwise it is asked for again.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id) if credential_id else None
    form = ConnectionForm(instance=credential)
    if form.validate():
        outcome = connection_tests.test(form.values(), form.login_secrets().typed, credential, actor=actor_name(),
                                        list_folders=True)
    else:
        outcome = connection_tests.TestOutcome(blamed={name: errors[0] for name, errors in form.errors.items()})
    status, headers = (TOO_MANY_REQUESTS, BUSY_HEADERS) if outcome.busy else (200, {})
    if is_htmx():
        # A secret typed into the "type the password to test with" prompt is kept for Save, which
        # would otherwise ask for it again once the result replaces the prompt.
        prompted = request.form.getlist(SECRET_PROMPT)
        return render_template(
            "credentials/_test_result.html", blamable_fields=BLAMABLE_FIELDS, oob=True, form=form, outcome=outcome,
            receipt=outcome.receipt, drafts=form.secret_drafts(prompted), prompted=prompted,
        ), status, headers
    return _form_page(CredentialForm(instance=credential), credential, outcome), status, headers


# Sent along with the secret typed into the test's own prompt (_test_result.html), naming that secret.
SECRET_PROMPT = "secret_prompt"


@bp.post("/<id:credential_id>/test")
@limits_connection_tests
def test_saved(credential_id):
    """Test the saved credential and record the outcome on its health badge."""
    outcome = connection_tests.test_saved(get_object_or_404(Credential, Credential.id == credential_id),
                                          actor=actor_name())
    credential = _listed_or_404(credential_id)
    if outcome.busy:
        if is_htmx():
            row = render_template("credentials/_row.html", credential=credential, busy=True)
            return row, TOO_MANY_REQUESTS, {**BUSY_HEADERS, **announce(f"{credential.name}: {TOO_MANY_TESTS}")}
        return (*fragment_or_page("credentials/_busy.html", "Try again in a moment", TOO_MANY_REQUESTS), BUSY_HEADERS)
    if is_htmx():
        # The row shows the new badge; the outcome is also said in words, for screen readers.
        state = "working" if credential.last_test_ok else "failing"
        said = f"{credential.name}: {state}. {credential.last_test_summary}"
        # The summary's counts above the list follow, out of band.
        row = render_template("credentials/_row.html", credential=credential)
        return row + render_template("credentials/_summary_counts.html", **watch.summary_context()), 200, announce(said)
    return after_change(f"{credential.name}: {credential.last_test_summary}", ".index")


def _listed_or_404(credential_id):
    """The credential as the list shows it (with ``alias_count``), or 404."""
    return Credential.count_aliases([get_object_or_404(Credential.search(), Credential.id == credential_id)])[0]


@bp.route("/<id:credential_id>/delete", methods=["GET", "POST"])
def delete(credential_id):
    """Ask (GET, for browsers without JavaScript), then delete unless an alias still uses it.

    The database's RESTRICT foreign key is what refuses; the view only reports it.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    if request.method == "GET":
        return fragment_or_page("_delete_confirm.html", f"Delete {credential.name}",
                                thing=f"the credential {credential.name}")
    try:
        delete_entry(credential, actor=actor_name())
    except StillInUse as refused:
        log.warning("refused to delete credential %s (%r): %r", credential.id, credential.name, refused.why)
        return explain_refusal(
            "credentials/_delete_blocked.html", f"{credential.name} is still in use",
            credential=credential, aliases=refused.references,
        )
    return after_change(f"Deleted {credential.name}.", ".index", event="credentialsChanged")
