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
from access import DEFAULT_ROLE, PUBLIC, limits_connection_tests, requires
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
    """A form of `form_class` filled from JSON `values`; raises BadRequest 422 with the messages when invalid.

    ``custom_data`` must be a list of ``{"key", "value"}`` objects.
    """
    formdata = MultiDict()
    for name, value in values.items():
        if name == "custom_data":
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise BadRequest(UNPROCESSABLE, {"errors": {"custom_data": ["Send a list of {key, value} objects."]}})
            for index, item in enumerate(value):
                formdata.update({f"custom_data-{index}-{key}": str(item.get(key, "")) for key in ("key", "value")})
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


def _saved(save):
    """Run `save`; a unique index that a concurrent request won answers 409."""
    try:
        return save()
    except IntegrityError:
        raise BadRequest(CONFLICT, {"error": "Another request took this name or address meanwhile."}) from None


class Entries:
    """One kind of entry under ``/<plural>``: list (GET), create (POST, 201 with the new id), and by id
    get (GET), update (PATCH, the fields sent) and delete (DELETE, 204, or 409 with what still needs it).

    `to_json` shows a row; `to_input(row, payload)` turns a JSON payload into the form's values (`row` is
    None when creating); `save(form, row)` stores a validated form into `row` (or a new one) and returns
    it; `refusal(row, references)` says why a delete was refused; `query()` lists the rows.
    """

    def __init__(self, name, plural, model, form_class, to_json, to_input, save, query, refusal=None):
        self.name, self.model, self.form_class = name, model, form_class
        self.to_json, self.to_input, self.save, self.query, self.refusal = to_json, to_input, save, query, refusal
        item = f"/{plural}/<int:row_id>"
        for rule, endpoint, view, method, role in (
            (f"/{plural}", f"list_{plural}", self.list, "GET", "viewer"),
            (f"/{plural}", f"create_{name}", self.create, "POST", DEFAULT_ROLE),
            (item, f"get_{name}", self.get, "GET", "viewer"),
            (item, f"update_{name}", self.update, "PATCH", DEFAULT_ROLE),
            (item, f"delete_{name}", self.delete, "DELETE", DEFAULT_ROLE),
        ):
            bp.add_url_rule(rule, endpoint, requires(role)(_function(view)), methods=[method])

    def list(self):
        """A page of the entries."""
        return _page_of(self.query(), self.to_json)

    def create(self):
        """Add an entry; answers it, with its new id, and 201."""
        form = _validated(self.form_class, self.to_input(None, _payload()))
        row = _saved(lambda: self.save(form, None))
        return self.to_json(row), 201, {"Location": url_for(f"api.get_{self.name}", row_id=row.id)}

    def get(self, row_id):
        """One entry."""
        return self.to_json(_row(self.model, row_id))

    def update(self, row_id):
        """Change the fields sent; the others stay."""
        row = _row(self.model, row_id)
        form = _validated(self.form_class, self.to_input(row, _payload()), row)
        return self.to_json(_saved(lambda: self.save(form, row)))

    def delete(self, row_id):
        """Delete an entry, unless something still needs it."""
        row = _row(self.model, row_id)
        try:
            delete_entry(row)
        except StillInUse as refused:
            return self.refusal(row, refused.references), CONFLICT
        return "", 204


def _function(method):
    """A plain function calling a bound method, so ``requires`` can mark it."""
    def view(**values):
        return method(**values)
    view.__doc__ = method.__doc__
    return view


def _renamed(values, api_name, form_name):
    """`values` with the API's `api_name` (e.g. ``group_id``) under the form's `form_name` (``group``)."""
    values = dict(values)
    if api_name in values:
        values[form_name] = values.pop(api_name)
    return values


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


def _credentials():
    """Credentials, filtered like the page: ``q`` (text), ``group`` (id), ``protocol``."""
    group = request.args.get("group", type=int)
    return Credential.search(request.args.get("q", "").strip(), group if group and group <= LARGEST_ID else None,
                             request.args.get("protocol") or None)


Entries(
    "credential", "credentials", Credential, CredentialForm, credential_json,
    to_input=lambda row, payload: _renamed(
        {**(credential_data(row) if row else {"group": Group.default().id}),
         **{name: value for name, value in payload.items() if value is not None}},  # null leaves a field as it is
        "group_id", "group"),
    save=save_credential,
    query=_credentials,
    refusal=lambda credential, aliases: {
        "error": f"{credential.name} is still used by {len(aliases)} alias(es).",
        "aliases": [{"id": alias.id, "address": alias.address} for alias in aliases],
    },
)


def alias_json(alias):
    """An alias as the API shows it."""
    data = model_to_dict(alias, recurse=False, only=[getattr(Alias, name) for name in AliasForm.FIELDS])
    return {"id": alias.id, **data, "credential_id": data.pop("credential")}


Entries(
    "alias", "aliases", Alias, AliasForm, alias_json,
    to_input=lambda row, payload: _renamed(
        {**(alias_json(row) if row else {}), **payload}, "credential_id", "credential"
    ),
    save=lambda form, row: save_entry(form, row or Alias()),
    query=Alias.ordered,
)


def group_json(group):
    """A group as the API shows it, with how many credentials it holds."""
    return {"id": group.id, "name": group.name, "description": group.description, "is_default": group.is_default,
            "credential_count": group.credentials.count()}


Entries(
    "group", "groups", Group, GroupForm, group_json,
    to_input=lambda row, payload: {**(group_json(row) if row else {}), **payload},
    save=lambda form, row: save_entry(form, row or Group()),
    query=lambda: Group.select().order_by(Group.name_key),
    refusal=lambda group, count: {
        "error": f"{group.name} "
                 f"{'is the default group' if group.is_default else f'still holds {count} credential(s)'}.",
        "credential_count": count,
    },
)


# Connection tests.

@bp.post("/connection-tests")
@limits_connection_tests
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
