"""The JSON API, version 1: credentials, aliases, groups and connection tests for other tools.

Requests carry a personal API token (``Authorization: Bearer <token>``) and act
with its user's role; reading needs a viewer, changing an editor. Input is
validated by the same forms as the pages, so the same rules and messages
apply. Secrets (``password``, ``client_secret``) are accepted, never returned:
a credential says only ``password_set`` and ``client_secret_set``. The
OpenAPI document at ``/api/v1/openapi.json`` describes all of it.
"""

from flask import Blueprint, current_app, request, url_for
from peewee import IntegrityError
from playhouse.shortcuts import model_to_dict
from werkzeug.datastructures import MultiDict

import openapi
import probe
from access import PUBLIC, limiter, requires, user_key
from forms import AliasForm, ConnectionForm, CredentialForm, GroupForm, credential_data, field_values
from models import Alias, Credential, Group, db
from services import (
    TOO_MANY_TESTS,
    UNREADABLE_SECRET,
    StillInUse,
    audit_connection_test,
    delete_entry,
    run_connection_test,
    save_credential,
    save_entry,
    test_saved_credential,
)

from . import BUSY_HEADERS, CONFLICT, LARGEST_ID, TOO_MANY_REQUESTS, UNPROCESSABLE

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PER_PAGE = 100


class BadRequest(Exception):
    """The request cannot be handled as sent; `status` and `body` say why."""

    def __init__(self, status, body):
        super().__init__(body)
        self.status = status
        self.body = body


@bp.errorhandler(BadRequest)
def bad_request(error):
    return error.body, error.status


@bp.get("/openapi.json")
@requires(PUBLIC)
def openapi_document():
    """The OpenAPI 3.1 description of this API."""
    return openapi.document()


def _payload():
    """The JSON object in the body; raises BadRequest (415, 400) for anything else."""
    if not request.is_json:
        raise BadRequest(415, {"error": "Send a JSON object with Content-Type: application/json."})
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise BadRequest(400, {"error": "Send a JSON object."})
    return payload


def _row(model, row_id):
    """The row of `model` with id `row_id`, or BadRequest 404."""
    if not (isinstance(row_id, int) and not isinstance(row_id, bool) and 0 < row_id <= LARGEST_ID):
        raise BadRequest(404, {"error": f"No {model.__name__.lower()} with id {row_id!r}."})
    row = model.get_or_none(model.id == row_id)
    if row is None:
        raise BadRequest(404, {"error": f"No {model.__name__.lower()} with id {row_id}."})
    return row


def _validated(form_class, values, instance=None):
    """A form of `form_class` filled from JSON `values`; raises BadRequest 422 with the messages when invalid."""
    formdata = MultiDict()
    for name, value in values.items():
        if name == "custom_data" and isinstance(value, list):
            for index, item in enumerate(value):
                formdata.update({f"custom_data-{index}-{key}": str(item.get(key, "")) for key in ("key", "value")}
                                if isinstance(item, dict) else {})
        elif value is not None:
            formdata[name] = str(value)
    form = form_class(formdata=formdata, instance=instance, meta={"csrf": False})
    if not form.validate():
        errors = dict(form.errors)
        if form.form_errors:
            errors["_entry"] = form.form_errors
        raise BadRequest(UNPROCESSABLE, {"errors": errors})
    return form


def _page_of(query, to_json):
    """One page of `query` as ``{"items", "page", "pages", "total"}``; ``page`` and ``per_page`` from the URL."""
    per_page = min(max(request.args.get("per_page", current_app.config["PAGE_SIZE"], type=int), 1), MAX_PER_PAGE)
    total = query.count()
    pages = max((total + per_page - 1) // per_page, 1)
    page = min(max(request.args.get("page", 1, type=int), 1), pages)
    return {"items": [to_json(row) for row in query.paginate(page, per_page)], "page": page, "pages": pages,
            "total": total}


def _created(body, endpoint, **values):
    return body, 201, {"Location": url_for(endpoint, **values)}


def _saved(save):
    """Run `save`; a unique index that a concurrent request won answers 409."""
    try:
        return save()
    except IntegrityError:
        raise BadRequest(CONFLICT, {"error": "Another request took this name or address meanwhile."}) from None


# Credentials.

def credential_json(credential):
    """A credential as the API shows it: no secret, only whether each is set."""
    return {
        **{name: getattr(credential, name) for name in Credential.EDITABLE if name != "group"},
        "id": credential.id,
        "group_id": credential.group_id,
        "password_set": credential.has_secret("password"),
        "client_secret_set": credential.has_secret("client_secret"),
        "custom_data": [{"key": key, "value": value} for key, value in credential.custom_data],
        "created_at": credential.created_at.isoformat() + "Z",
        "updated_at": credential.updated_at.isoformat() + "Z",
        "last_test": None if credential.last_test_at is None else {
            "at": credential.last_test_at.isoformat() + "Z", "ok": credential.last_test_ok,
            "summary": credential.last_test_summary,
        },
    }


def _credential_input(payload):
    """The form's names for the API's: ``group_id`` is the form's ``group``."""
    values = dict(payload)
    if "group_id" in values:
        values["group"] = values.pop("group_id")
    return values


@bp.get("/credentials")
@requires("viewer")
def list_credentials():
    """Credentials, filtered like the page: ``q`` (text), ``group`` (id), ``protocol``; paged."""
    group = request.args.get("group", type=int)
    query = Credential.search(request.args.get("q", "").strip(), group if group and group <= LARGEST_ID else None,
                              request.args.get("protocol") or None)
    return _page_of(query, credential_json)


@bp.post("/credentials")
def create_credential():
    """Add a credential; answers it, with its new id, and 201."""
    values = {"group": Group.default().id, **_credential_input(_payload())}
    form = _validated(CredentialForm, values)
    credential = _saved(lambda: save_credential(form))
    return _created(credential_json(credential), "api.get_credential", credential_id=credential.id)


@bp.get("/credentials/<int:credential_id>")
@requires("viewer")
def get_credential(credential_id):
    """One credential."""
    return credential_json(_row(Credential, credential_id))


@bp.patch("/credentials/<int:credential_id>")
def update_credential(credential_id):
    """Change the fields sent; the others stay. Changing the server or login needs the secret again."""
    credential = _row(Credential, credential_id)
    values = {**credential_data(credential), **_credential_input(_payload())}
    form = _validated(CredentialForm, values, credential)
    return credential_json(_saved(lambda: save_credential(form, credential)))


@bp.delete("/credentials/<int:credential_id>")
def delete_credential(credential_id):
    """Delete a credential; 409 with the aliases that still use it."""
    credential = _row(Credential, credential_id)
    try:
        delete_entry(credential)
    except StillInUse as refused:
        aliases = [{"id": alias.id, "address": alias.address} for alias in refused.references]
        return {"error": f"{credential.name} is still used by {len(aliases)} alias(es).", "aliases": aliases}, CONFLICT
    return "", 204


# Aliases.

def alias_json(alias):
    """An alias as the API shows it."""
    data = model_to_dict(alias, recurse=False, only=[getattr(Alias, name) for name in AliasForm.FIELDS])
    return {"id": alias.id, **data, "credential_id": data.pop("credential")}


def _alias_input(payload):
    values = dict(payload)
    if "credential_id" in values:
        values["credential"] = values.pop("credential_id")
    return values


@bp.get("/aliases")
@requires("viewer")
def list_aliases():
    """Aliases by address; paged."""
    return _page_of(Alias.ordered(), alias_json)


@bp.post("/aliases")
def create_alias():
    """Add an alias; answers it, with its new id, and 201."""
    form = _validated(AliasForm, _alias_input(_payload()))
    alias = _saved(lambda: save_entry(form, Alias()))
    return _created(alias_json(alias), "api.get_alias", alias_id=alias.id)


@bp.get("/aliases/<int:alias_id>")
@requires("viewer")
def get_alias(alias_id):
    """One alias."""
    return alias_json(_row(Alias, alias_id))


@bp.patch("/aliases/<int:alias_id>")
def update_alias(alias_id):
    """Change the fields sent; the others stay."""
    alias = _row(Alias, alias_id)
    form = _validated(AliasForm, _alias_input({**alias_json(alias), **_payload()}), alias)
    return alias_json(_saved(lambda: save_entry(form, alias)))


@bp.delete("/aliases/<int:alias_id>")
def delete_alias(alias_id):
    """Delete an alias."""
    delete_entry(_row(Alias, alias_id))
    return "", 204


# Groups.

def group_json(group):
    """A group as the API shows it, with how many credentials it holds."""
    return {"id": group.id, "name": group.name, "description": group.description, "is_default": group.is_default,
            "credential_count": group.credentials.count()}


@bp.get("/groups")
@requires("viewer")
def list_groups():
    """Groups by name; paged."""
    return _page_of(Group.select().order_by(Group.name_key), group_json)


@bp.post("/groups")
def create_group():
    """Add a group; answers it, with its new id, and 201."""
    form = _validated(GroupForm, _payload())
    group = _saved(lambda: save_entry(form, Group()))
    return _created(group_json(group), "api.get_group", group_id=group.id)


@bp.get("/groups/<int:group_id>")
@requires("viewer")
def get_group(group_id):
    """One group."""
    return group_json(_row(Group, group_id))


@bp.patch("/groups/<int:group_id>")
def update_group(group_id):
    """Rename a group or change its description."""
    group = _row(Group, group_id)
    form = _validated(GroupForm, {**group_json(group), **_payload()}, group)
    return group_json(_saved(lambda: save_entry(form, group)))


@bp.delete("/groups/<int:group_id>")
def delete_group(group_id):
    """Delete a group; 409 when it is the default one or still holds credentials."""
    group = _row(Group, group_id)
    try:
        delete_entry(group)
    except StillInUse as refused:
        why = "is the default group" if group.is_default else f"still holds {refused.references} credential(s)"
        return {"error": f"{group.name} {why}.", "credential_count": refused.references}, CONFLICT
    return "", 204


# Connection tests.

@bp.post("/connection-tests")
@limiter.limit(lambda: current_app.config["TEST_RATE_LIMIT"], key_func=user_key)
def connection_tests():
    """Test ``{"credential_id": N}`` (with its stored secret; the outcome is recorded) or the settings sent."""
    payload = _payload()
    try:
        if "credential_id" in payload:
            credential = _row(Credential, payload["credential_id"])
            result = test_saved_credential(credential)
            if result is None:
                return {"errors": {credential.login_secret: [UNREADABLE_SECRET]}}, UNPROCESSABLE
            return result.as_dict()
        form = _validated(ConnectionForm, payload)
        if form.missing_secret():
            raise BadRequest(UNPROCESSABLE, {"errors": form.errors})
        result = run_connection_test(probe.Settings(**form.secrets(),
                                                    **field_values(form, ConnectionForm.CONNECTION_FIELDS)))
    except probe.Busy:
        return {"error": TOO_MANY_TESTS}, TOO_MANY_REQUESTS, BUSY_HEADERS
    with db.atomic():
        audit_connection_test(result, None, "settings sent to the API")
    return result.as_dict()
