"""Credentials: the list with its filters, add, edit, change a secret, test connection, autodetect, delete."""

import logging

from flask import Blueprint, current_app, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import PaginatedQuery, get_object_or_404

import audit
import probe
from probe import protocols
import providers
from access import limits_connection_tests, requires
from encryption import UndecryptableSecret
from forms import (
    CUSTOM_DATA_ACTION,
    ConnectionForm,
    CredentialForm,
    SecretChangeForm,
    apply_custom_data_action,
    credential_data,
    field_values,
)
from models import Credential, Group, db
from services import (
    UNREADABLE_SECRET,
    StillInUse,
    audit_connection_test,
    delete_entry,
    keyring,
    run_connection_test,
    save_credential,
    test_saved_credential,
)

from . import BUSY_HEADERS, TOO_MANY_REQUESTS, finish, id_arg, is_htmx, refuse, respond

bp = Blueprint("credentials", __name__, url_prefix="/credentials")
log = logging.getLogger(__name__)

# Fields a connection test can blame, each with a slot under it in the form for the cause.
BLAMABLE_FIELDS = (
    "host", "port", "security", "username", "password", "folder", "auth", "client_id", "client_secret",
    "token_url", "scope",
)
SECRET_LABELS = {"password": "password", "client_secret": "client secret"}


@bp.get("/")
@requires("viewer")
def index():
    """The credentials, filtered and paged; htmx gets the list alone (filters and page links swap it)."""
    filters = {
        "q": request.args.get("q", "").strip(),
        "group": id_arg("group"),
        "protocol": request.args.get("protocol") or None,
    }
    pages = PaginatedQuery(
        Credential.search(filters["q"], filters["group"], filters["protocol"]),
        paginate_by=current_app.config["PAGE_SIZE"],
    )
    pages.page = min(pages.get_page(), max(pages.get_page_count(), 1))  # past the end shows the last page
    template = "credentials/_list.html" if is_htmx() else "credentials/index.html"
    return render_template(
        template,
        credentials=pages.get_object_list(),
        pages=pages,
        filters=filters,
        groups=Group.ordered(),
        protocol_names=protocols.PROTOCOLS,
    )


@bp.route("/new", methods=["GET", "POST"], defaults={"credential_id": None})
@bp.route("/<int:credential_id>/edit", methods=["GET", "POST"])
def edit(credential_id):
    """Add a credential (no id) or edit one; the custom data editor's buttons re-render without saving."""
    credential = get_object_or_404(Credential, Credential.id == credential_id) if credential_id else None
    formdata, add_row = _form_input()
    form = CredentialForm(formdata=formdata, data=credential_data(credential) if credential else None,
                          instance=credential)
    if add_row:
        form.custom_data.append_entry()
    if _wants_save() and form.validate():
        try:
            credential = save_credential(form, credential)
        except IntegrityError:
            form.form_errors.append("Another credential was saved with the same name or mailbox meanwhile.")
        else:
            return finish(f"Saved {credential.name}.", ".index")
    return _form_page(form, credential)


def _form_input():
    """The posted form data after the custom data editor's buttons, or (None, False) for a GET."""
    if request.method != "POST":
        return None, False
    return apply_custom_data_action(request.form)


def _wants_save():
    """A POST from the Save button, not from the custom data editor's Add row / Remove."""
    return request.method == "POST" and not request.form.get(CUSTOM_DATA_ACTION)


def _form_page(form, credential, test_result=None):
    return render_template(
        "credentials/form.html",
        form=form,
        credential=credential,
        test_result=test_result,
        default_ports=_default_ports(),
        unreadable=credential.unreadable_secrets(keyring()) if credential else [],
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
        form.custom_data.append_entry()
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
        security_labels=protocols.SECURITY_LABELS,
    )


@bp.route("/<int:credential_id>/password", methods=["GET", "POST"], defaults={"name": "password"})
@bp.route("/<int:credential_id>/client-secret", methods=["GET", "POST"], defaults={"name": "client_secret"})
def change_secret(credential_id, name):
    """The dialog that changes one stored secret, and nothing else."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    form = SecretChangeForm(label=SECRET_LABELS[name])
    if form.validate_on_submit():
        with db.atomic():
            credential.set_secret(keyring(), name, form.new_secret.data)
            credential.save()
            audit.record("secret_change", credential, details=f"{SECRET_LABELS[name]} changed")
        if is_htmx():
            return render_template("credentials/_secret_dialog.html", credential=credential, name=name, form=None)
        return finish(f"The {form.noun} of {credential.name} was changed.", ".edit", credential_id=credential.id)
    return respond(
        "credentials/_secret_dialog.html", f"Change the {form.noun} of {credential.name}",
        credential=credential, name=name, form=form,
    )


@bp.post("/test", defaults={"credential_id": None})
@bp.post("/<int:credential_id>/test-form")
@limits_connection_tests
def test_form(credential_id):
    """Test the values on screen, before or without saving them.

    The stored secret of the entry being edited is used only when the server,
    login (and for OAuth2 the client and token endpoint) are unchanged;
    otherwise it is asked for again.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id) if credential_id else None
    form = ConnectionForm(instance=credential)
    try:
        outcome = _test_values_on_screen(form, credential)
        if outcome["result"]:
            with db.atomic():
                audit_connection_test(outcome["result"], credential, "values on screen")
    except probe.Busy:
        outcome = _outcome(busy=True)
    status, headers = (TOO_MANY_REQUESTS, BUSY_HEADERS) if outcome["busy"] else (200, {})
    if is_htmx():
        return render_template(
            "credentials/_test_result.html", blamable_fields=BLAMABLE_FIELDS, oob=True, form=form, **outcome
        ), status, headers
    return _form_page(CredentialForm(instance=credential), credential, test_result=outcome), status, headers


def _test_values_on_screen(form, credential):
    """Run the test for a ConnectionForm; return what _test_result.html shows.

    The keys: `result` (a probe.Result, or None when nothing was tested),
    `blamed` ({field name: message} for the slots under the fields),
    `ask_secret` (the name of a stored secret that may not be reused for these
    values), and `busy`. Raises probe.Busy when too many tests run already.
    """
    if not form.validate():
        return _outcome(blamed={name: errors[0] for name, errors in form.errors.items()})
    secrets = form.secrets()
    name = form.login_secret
    if not secrets[name] and name in form.reusable_secrets():
        try:
            secrets[name] = credential.secret(keyring(), name)
        except UndecryptableSecret:
            return _outcome(blamed={name: UNREADABLE_SECRET})
    if not secrets[name]:
        return _outcome(ask_secret=name)
    result = run_connection_test(probe.Settings(**secrets, **field_values(form, ConnectionForm.CONNECTION_FIELDS)))
    return _outcome(result=result, blamed={result.cause.field: result.cause.message} if result.cause else None)


def _outcome(result=None, blamed=None, ask_secret=None, busy=False):
    return {"result": result, "blamed": blamed or {}, "ask_secret": ask_secret, "busy": busy}


@bp.post("/<int:credential_id>/test")
@limits_connection_tests
def test_saved(credential_id):
    """Test the saved credential and record the outcome on its health badge."""
    credential = _listed_or_404(credential_id)
    try:
        test_saved_credential(credential)
    except probe.Busy:
        if is_htmx():
            row = render_template("credentials/_row.html", credential=credential, busy=True)
            return row, TOO_MANY_REQUESTS, BUSY_HEADERS
        return (*respond("credentials/_busy.html", "Try again in a moment", TOO_MANY_REQUESTS), BUSY_HEADERS)
    if is_htmx():
        return render_template("credentials/_row.html", credential=credential)
    return finish(f"{credential.name}: {credential.last_test_summary}", ".index")


def _listed_or_404(credential_id):
    """The credential as the list shows it (with ``alias_count``), or 404."""
    return get_object_or_404(Credential.search(), Credential.id == credential_id)


@bp.route("/<int:credential_id>/delete", methods=["GET", "POST"])
def delete(credential_id):
    """Ask (GET, for browsers without JavaScript), then delete unless an alias still uses it.

    The database's RESTRICT foreign key is what refuses; the view only reports it.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    if request.method == "GET":
        return respond("_delete_confirm.html", f"Delete {credential.name}", thing=f"the credential {credential.name}")
    try:
        delete_entry(credential)
    except StillInUse as refused:
        addresses = ", ".join(alias.address for alias in refused.references)
        log.warning("refused to delete credential %s (%s): still used by aliases %s",
                    credential.id, credential.name, addresses)
        return refuse(
            "credentials/_delete_blocked.html", f"{credential.name} is still in use",
            credential=credential, aliases=refused.references,
        )
    return finish(f"Deleted {credential.name}.", ".index")
