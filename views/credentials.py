"""Credentials: the list with its filters, add, edit, change password, test connection, delete."""

import logging

from flask import Blueprint, current_app, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import PaginatedQuery, get_object_or_404

import probe
import protocols
from encryption import UndecryptableSecret
from forms import (
    ConnectionForm,
    ConnectionTestForm,
    CredentialForm,
    NewCredentialForm,
    PasswordChangeForm,
    apply_custom_data_action,
    credential_data,
    field_values,
)
from models import Alias, Credential, Group

from . import UNPROCESSABLE, finish, is_htmx, keyring, refuse, respond

bp = Blueprint("credentials", __name__, url_prefix="/credentials")
log = logging.getLogger(__name__)

# Fields a connection test can blame, each with a slot under it in the form for the cause.
BLAMABLE_FIELDS = ("host", "port", "security", "username", "password", "folder")
# Sending the stored password elsewhere would leak it: reuse it only for the same server and login.
REUSE_PASSWORD_FIELDS = ("protocol", "host", "port", "security", "username")
UNREADABLE_SECRET = "This secret cannot be read with the current keys; set the password again."


@bp.get("/")
def index():
    filters = {
        "q": request.args.get("q", "").strip(),
        "group": request.args.get("group", type=int),
        "protocol": request.args.get("protocol") or None,
    }
    pages = PaginatedQuery(
        Credential.search(filters["q"], filters["group"], filters["protocol"]),
        paginate_by=current_app.config["PAGE_SIZE"],
        check_bounds=False,
    )
    template = "credentials/_list.html" if is_htmx() else "credentials/index.html"
    return render_template(
        template,
        credentials=pages.get_object_list(),
        pages=pages,
        filters=filters,
        groups=Group.ordered(),
        protocol_names=protocols.PROTOCOLS,
    )


@bp.route("/new", methods=["GET", "POST"])
def create():
    formdata, add_row = _form_input()
    form = NewCredentialForm(formdata=formdata)
    if add_row:
        form.custom_data.append_entry()
    if _wants_save() and form.validate():
        try:
            credential = Credential.add(
                keyring(),
                form.password.data,
                form.custom_data_pairs(),
                **field_values(form, Credential.EDITABLE),
            )
        except IntegrityError:
            form.form_errors.append("Another credential was saved with the same name or mailbox meanwhile.")
        else:
            return finish(f"Saved {credential.name}.", ".index")
    return _form_page(form, None)


@bp.route("/<int:credential_id>/edit", methods=["GET", "POST"])
def edit(credential_id):
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    formdata, add_row = _form_input()
    form = CredentialForm(formdata=formdata, data=credential_data(credential), credential=credential)
    if add_row:
        form.custom_data.append_entry()
    if _wants_save() and form.validate():
        try:
            credential.change(form.custom_data_pairs(), **field_values(form, Credential.EDITABLE))
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
    return request.method == "POST" and not request.form.get("custom_data_action")


def _form_page(form, credential, test_result=None, status=None):
    if status is None:
        status = UNPROCESSABLE if form.errors or form.form_errors else 200
    return (
        render_template(
            "credentials/form.html",
            form=form,
            credential=credential,
            test_result=test_result,
            blamable_fields=BLAMABLE_FIELDS,
            default_ports=_default_ports(),
        ),
        status,
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


@bp.route("/<int:credential_id>/password", methods=["GET", "POST"])
def change_password(credential_id):
    """The Change password dialog: saves only the secret."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    form = PasswordChangeForm()
    if form.validate_on_submit():
        credential.set_password(keyring(), form.new_password.data)
        credential.save()
        if is_htmx():
            return render_template("credentials/_password_dialog.html", credential=credential, form=None)
        return finish(f"Password of {credential.name} changed.", ".edit", credential_id=credential.id)
    status = UNPROCESSABLE if form.errors else 200
    return respond(
        "credentials/_password_dialog.html", f"Change password of {credential.name}", status,
        credential=credential, form=form,
    )


@bp.post("/test", defaults={"credential_id": None})
@bp.post("/<int:credential_id>/test-form")
def test_form(credential_id):
    """Test the values on screen, before or without saving them.

    The stored password of the entry being edited is used only when the
    server and login are unchanged; otherwise the password is asked for again.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id) if credential_id else None
    outcome = _test_values_on_screen(ConnectionTestForm(), credential)
    if is_htmx():
        return render_template("credentials/_test_result.html", blamable_fields=BLAMABLE_FIELDS, oob=True, **outcome)
    page_form = (CredentialForm if credential else NewCredentialForm)(credential=credential)
    return _form_page(page_form, credential, test_result=outcome, status=200)


def _test_values_on_screen(form, credential):
    """Run the test for a ConnectionTestForm; return what _test_result.html shows.

    The keys: `result` (a probe.Result, or None when nothing was tested),
    `blamed` ({field name: message} for the slots under the fields), and
    `ask_password` (the stored password may not be reused for these values).
    """
    if not form.validate():
        return _outcome(blamed={name: errors[0] for name, errors in form.errors.items()})
    password = form.password.data
    if not password and credential and _same_login(credential, form):
        try:
            password = credential.password(keyring())
        except UndecryptableSecret:
            return _outcome(blamed={"password": UNREADABLE_SECRET})
    if not password:
        return _outcome(ask_password=True)
    result = _run(probe.Settings(password=password, **field_values(form, ConnectionForm.CONNECTION_FIELDS)))
    return _outcome(result=result, blamed={result.cause.field: result.cause.message} if result.cause else None)


def _outcome(result=None, blamed=None, ask_password=False):
    return {"result": result, "blamed": blamed or {}, "ask_password": ask_password}


def _same_login(credential, form):
    return all(getattr(credential, name) == getattr(form, name).data for name in REUSE_PASSWORD_FIELDS)


@bp.post("/<int:credential_id>/test")
def test_saved(credential_id):
    """Test the saved credential and record the outcome on its health badge."""
    credential = _listed_or_404(credential_id)
    try:
        password = credential.password(keyring())
    except UndecryptableSecret:
        credential.record_test(False, UNREADABLE_SECRET)
    else:
        result = _run(probe.Settings(password=password, **field_values(credential, ConnectionForm.CONNECTION_FIELDS)))
        credential.record_test(result.ok, result.summary)
    if is_htmx():
        return render_template("credentials/_row.html", credential=credential)
    return finish(f"{credential.name}: {credential.last_test_summary}", ".index")


def _run(settings):
    return probe.run(
        settings,
        deadline=current_app.config["CONNECTION_TEST_DEADLINE"],
        ca_file=current_app.config["CA_FILE"],
    )


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
        credential.delete_instance()
    except IntegrityError:
        aliases = list(credential.aliases.order_by(Alias.address))
        log.warning(
            "refused to delete credential %s (%s): still used by aliases %s",
            credential.id, credential.name, ", ".join(alias.address for alias in aliases),
        )
        return refuse(
            "credentials/_delete_blocked.html", f"{credential.name} is still in use",
            credential=credential, aliases=aliases,
        )
    return finish(f"Deleted {credential.name}.", ".index")
