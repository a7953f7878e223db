"""The JSON API, version 1: credentials, aliases, groups and connection tests for other tools.

Requests carry a personal API token (``Authorization: Bearer <token>``) and act
with its user's role; reading needs a viewer, changing an editor. Input is
validated by the same forms as the pages (forms.validated), so the same rules
and messages apply. Secrets (``password``, ``client_secret``) are accepted,
never returned: a credential says only ``password_set`` and ``client_secret_set``.
The OpenAPI document at ``/api/v1/openapi.json`` describes all of it.

Each kind of entry is one MethodView (Flask's pattern for a REST resource):
``GET /<kind>`` lists, ``POST /<kind>`` creates, and ``GET``, ``PATCH``,
``DELETE /<kind>/<id>`` read, change and delete one entry.
"""

from flask import Blueprint, current_app, request, url_for
from flask.views import MethodView
from peewee import IntegrityError
from playhouse.shortcuts import model_to_dict

import logins
import openapi
from access import PUBLIC, actor_name, limits_connection_tests, requires, serves, service_caller
from database import is_missing_reference
from forms import (
    AliasForm,
    ConnectionForm,
    CredentialForm,
    GroupForm,
    Invalid,
    SecretForm,
    credential_form_data,
    validated,
)
from models import Alias, Credential, Group, StaleRevision
from services import connection_tests, serving
from services.entries import StillInUse, change_secret, delete_entry, save_credential, save_entry
from web import BUSY_HEADERS, CONFLICT, LARGEST_ID, TOO_MANY_REQUESTS, UNPROCESSABLE, etag_of, expected_revisions, stale

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PER_PAGE = 100


class ApiError(Exception):
    """The request cannot be handled as sent; `status` (an HTTP status) and `body` (JSON-ready) say why."""

    def __init__(self, status, body):
        super().__init__(body)
        self.status = status
        self.body = body


def answers_api_errors(blueprint):
    """Register on `blueprint` how every JSON API blueprint answers its refusals: ApiError as its status and
    body, Invalid as 422 with the errors by field, models.StaleRevision as 412 (web.stale)."""
    blueprint.register_error_handler(ApiError, lambda error: (error.body, error.status))
    blueprint.register_error_handler(Invalid, lambda error: ({"errors": error.errors}, UNPROCESSABLE))
    # A check-and-set (If-Match) that names a revision the credential has moved on from.
    blueprint.register_error_handler(StaleRevision, stale)


answers_api_errors(bp)


@bp.get("/openapi.json")
@requires(PUBLIC)
def openapi_document():
    """The OpenAPI 3.1 description of this API."""
    return openapi.document()


def _payload():
    """The JSON object in the body; raises ApiError (415, 400) for anything else."""
    if not request.is_json:
        raise ApiError(415, {"error": "Send a JSON object with Content-Type: application/json."})
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError(400, {"error": "Send a JSON object."})
    return payload


def _find(model, row_id):
    """The row of `model` with id `row_id` (from a URL or a JSON body), or ApiError 404."""
    if isinstance(row_id, int) and not isinstance(row_id, bool) and 0 < row_id <= LARGEST_ID:
        row = model.get_or_none(model.id == row_id)
        if row is not None:
            return row
    raise ApiError(404, {"error": f"No {model.__name__.lower()} with id {row_id!r}."})


def _page_of(query, total, to_json):
    """One page of `query` as ``{"items", "page", "pages", "total"}``, `total` being how many rows the query
    finds in all; ``page`` and ``per_page`` come from the URL. `to_json` turns the page's rows (a list) into
    JSON-ready items."""
    per_page = min(max(request.args.get("per_page", current_app.config["PAGE_SIZE"], type=int), 1), MAX_PER_PAGE)
    pages = max((total + per_page - 1) // per_page, 1)
    page = min(max(request.args.get("page", 1, type=int), 1), pages)
    return {"items": to_json(list(query.paginate(page, per_page))), "page": page, "pages": pages, "total": total}


def _renamed(values, api_name, form_name):
    """`values` with the API's `api_name` (e.g. ``group_id``) under the form's `form_name` (``group``)."""
    values = dict(values)
    if api_name in values:
        values[form_name] = values.pop(api_name)
    return values


class Entries(MethodView):
    """One kind of entry. Subclasses say how a row looks (``to_json``), how a payload becomes the form's
    values (``to_input``), how a validated form is stored (``save``), which rows are listed (``listed``)
    and why a delete was refused (``refusal``)."""

    init_every_request = False
    model = None
    form_class = None
    endpoint = ""

    @requires("viewer")
    def get(self, row_id=None):
        """A page of the entries, or one entry."""
        if row_id is None:
            query, total = self.listed()
            return _page_of(query, total, self.page_to_json)
        return self.to_json(_find(self.model, row_id))

    @requires("editor")
    def post(self):
        """Add an entry; answers it, with its new id, and 201."""
        form = validated(self.form_class, self.to_input(None, _payload()))
        row = self._saved(form, None)
        return self.to_json(row), 201, {"Location": url_for(f"api.{self.endpoint}", row_id=row.id, _method="GET")}

    @requires("editor")
    def patch(self, row_id):
        """Change the fields sent; the others stay."""
        row = _find(self.model, row_id)
        form = validated(self.form_class, self.to_input(row, _payload()), row)
        return self.to_json(self._saved(form, row))

    @requires("editor")
    def delete(self, row_id):
        """Delete an entry, unless something still needs it (409, saying what)."""
        row = _find(self.model, row_id)
        try:
            delete_entry(row, actor=actor_name())
        except StillInUse as refused:
            return self.refusal(row, refused), CONFLICT
        return "", 204

    def _saved(self, form, row):
        """``save``, with what a concurrent request changed meanwhile answered 409: a row this one refers to
        deleted, or a unique name or address taken."""
        try:
            return self.save(form, row)
        except IntegrityError as error:
            if is_missing_reference(error):
                raise ApiError(CONFLICT, {"error": "What this entry refers to (its credential or group) was "
                                                   "deleted meanwhile."}) from None
            raise ApiError(CONFLICT, {"error": "Another request took this name or address meanwhile."}) from None

    def to_json(self, row):
        raise NotImplementedError

    def page_to_json(self, rows):
        """A page of rows as JSON items (a subclass fetches what every row needs in one query)."""
        return [self.to_json(row) for row in rows]

    def to_input(self, row, payload):
        """The form's values: the row's (when changing one) with the payload's on top; null leaves a field."""
        return {**(self.to_json(row) if row else {}), **{k: v for k, v in payload.items() if v is not None}}

    def save(self, form, row):
        return save_entry(row or self.model(), form.values(), actor=actor_name())

    def listed(self):
        """(the query listing the entries the URL asks for, how many it finds)."""
        raise NotImplementedError

    def refusal(self, row, refused):
        return {"error": f"{row.audit_name} is still in use: {refused.why}."}


class Credentials(Entries):
    """``/credentials``: secrets go in, never out."""

    model = Credential
    form_class = CredentialForm
    endpoint = "credentials"

    def to_json(self, credential):
        return credential_json(credential)

    def to_input(self, credential, payload):
        base = credential_form_data(credential) if credential else {"group": Group.default().id}
        return _renamed({**base, **{k: v for k, v in payload.items() if v is not None}}, "group_id", "group")

    @requires("viewer")
    def get(self, row_id=None):
        """A page of credentials, or one credential with its ETag (its revision, for If-Match)."""
        answer = super().get(row_id)
        return answer if row_id is None else (answer, {"ETag": etag_of(_find(Credential, row_id))})

    @requires("editor")
    def patch(self, row_id):
        """Change the fields sent; with If-Match, only if the credential is still at that revision (else 412)."""
        answer = super().patch(row_id)
        return answer, {"ETag": etag_of(_find(Credential, row_id))}

    def save(self, form, credential):
        return save_credential(credential or Credential(), form.values(), form.login_secrets().changes(),
                               form.custom_data_pairs(), actor=actor_name(),
                               expected_revision=expected_revisions() if credential else None)

    def page_to_json(self, credentials):
        return [credential_json(credential) for credential in Credential.fetch_custom_data(credentials)]

    def listed(self):
        """Credentials, filtered like the page: ``q`` (text), ``group`` (id), ``protocol``, ``auth``."""
        group = request.args.get("group", type=int)
        matching = (request.args.get("q", "").strip(), group if group and 0 < group <= LARGEST_ID else None,
                    request.args.get("protocol") or None, request.args.get("auth") or None)
        return Credential.search(*matching), Credential.count_matching(*matching)

    def refusal(self, credential, refused):
        return {
            "error": f"{credential.name} is still used by {len(refused.references)} alias(es).",
            "aliases": [{"id": alias.id, "address": alias.address} for alias in refused.references],
        }


def credential_json(credential):
    """A credential as the API shows it: no secret, only whether each is set; for OAuth2 sign-in, who signed
    in with which OAuth app, when, and the scopes granted (``sign_in``, else null)."""
    return {
        **{name: getattr(credential, name) for name in Credential.EDITABLE if name != "group"},
        "client_secret_expires_on": credential.client_secret_expires_on.isoformat()
        if credential.client_secret_expires_on else None,
        "id": credential.id,
        "group_id": credential.group_id,
        **{f"{name}_set": credential.has_secret(name) for name in Credential.secret_fields()},
        "custom_data": [{"key": key, "value": value} for key, value in credential.custom_data],
        "created_at": credential.created_at.isoformat() + "Z",
        "updated_at": credential.updated_at.isoformat() + "Z",
        "last_test": None if credential.last_test_at is None else {
            "at": credential.last_test_at.isoformat() + "Z", "ok": credential.last_test_ok,
            "summary": credential.last_test_summary,
        },
        "sign_in": None if credential.oauth_app_id is None else {
            "oauth_app_id": credential.oauth_app_id, "account": credential.oauth_account,
            "scopes": credential.oauth_scopes,
            "signed_in_at": credential.oauth_signed_in_at and credential.oauth_signed_in_at.isoformat() + "Z",
            "refresh_token_used_at": credential.oauth_used_at and credential.oauth_used_at.isoformat() + "Z",
        },
    }


class Aliases(Entries):
    """``/aliases``."""

    model = Alias
    form_class = AliasForm
    endpoint = "aliases"

    def to_json(self, alias):
        data = model_to_dict(alias, recurse=False, only=[getattr(Alias, name) for name in AliasForm.FIELDS])
        credential_id = data.pop("credential")  # answered as credential_id only, as it is sent
        return {"id": alias.id, **data, "credential_id": credential_id}

    def to_input(self, alias, payload):
        return _renamed(super().to_input(alias, payload), "credential_id", "credential")

    def listed(self):
        text = request.args.get("q", "").strip()
        return Alias.search(text), Alias.count_matching(text)


class Groups(Entries):
    """``/groups``, each with how many credentials it holds."""

    model = Group
    form_class = GroupForm
    endpoint = "groups"

    def to_json(self, group):
        return {"id": group.id, "name": group.name, "description": group.description,
                "is_default": group.is_default, "check_interval": group.check_interval,
                "password_max_age_days": group.password_max_age_days,
                "credential_count": getattr(group, "credential_count", None) or group.credentials.count()}

    def listed(self):
        return Group.with_counts(), Group.select().count()

    def refusal(self, group, refused):
        why = "is the default group" if group.is_default else f"still holds {refused.references} credential(s)"
        return {"error": f"{group.name} {why}.", "credential_count": refused.references}


for resource in (Credentials, Aliases, Groups):
    view = resource.as_view(resource.endpoint)
    bp.add_url_rule(f"/{resource.endpoint}/<id:row_id>", view_func=view, methods=["GET", "PATCH", "DELETE"])
    bp.add_url_rule(f"/{resource.endpoint}", view_func=view, methods=["GET", "POST"])


@bp.put(f"/credentials/<id:row_id>/secrets/<any({', '.join(logins.TYPED_SECRETS)}):name>")
@requires("editor")
def put_secret(row_id, name):
    """Replace a credential's stored secret `name` (``password``, ``client_secret``) with ``{"value": "..."}``.

    The one way to change a stored secret over the API (a PATCH that sends one is refused while it serves):
    logged as secret_change; answers 204 and never the value. 422 for an empty value or control characters.
    """
    credential = _find(Credential, row_id)
    form = validated(SecretForm, _payload())
    change_secret(credential, name, form.value.data, actor=actor_name(), expected_revision=expected_revisions())
    return "", 204, {"ETag": etag_of(credential)}


def _readable_by(caller, payload):
    """The saved credential a service account's test names (``{"credential_id": N}``, nothing else), if it may
    read it; else ApiError 422 (other fields) or 404 (no such credential, or not one it may read)."""
    if set(payload) != {"credential_id"}:
        raise ApiError(422, {"error": 'A service account tests saved credentials only: send {"credential_id": N}.'})
    credential_id = payload["credential_id"]
    if isinstance(credential_id, bool) or not isinstance(credential_id, int) or not 0 < credential_id <= LARGEST_ID:
        raise ApiError(404, {"error": f"No credential {credential_id!r} that this service account may read."})
    try:
        return serving.credential_for(caller, credential_id)
    except serving.NotReadable as refused:
        raise ApiError(404, {"error": str(refused)}) from None


@bp.post("/connection-tests")
@serves("connection:test")
@limits_connection_tests
def test_connection():
    """Test ``{"credential_id": N}`` (with its stored secret; the outcome is recorded) or the settings sent.
    A service account (scope connection:test) tests only saved credentials it may read (404 for others)."""
    payload = _payload()
    if (caller := service_caller()) is not None:
        credential = _readable_by(caller, payload)
    elif "credential_id" in payload:
        credential = _find(Credential, payload["credential_id"])
    else:
        credential = None
    if credential is not None:
        outcome = connection_tests.test_saved(credential, actor=actor_name())
        login = logins.LoginSecrets(credential, credential.connection_values())
    else:
        form = validated(ConnectionForm, payload)
        login = form.login_secrets()
        outcome = connection_tests.test(form.values(), login.typed, actor=actor_name())
    if outcome.ask_secret:  # a secret typed nowhere, or a sign-in still to come
        raise Invalid({outcome.ask_secret: [login.missing()]})
    if outcome.busy:
        return {"error": connection_tests.TOO_MANY_TESTS}, TOO_MANY_REQUESTS, BUSY_HEADERS
    if outcome.result is None:
        raise Invalid({name: [message] for name, message in outcome.blamed.items()})
    return outcome.result.as_dict()
