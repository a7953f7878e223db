"""The JSON API of issue 11: connections served to service accounts, secret versions (list, rotate, roll
back) and service accounts themselves. Under /api/v1 like the rest of the API (views/api.py), described by
the same OpenAPI document (openapi.py, serving paths from openapi_serving.py).

Who may call what is marked on each view: a connection read is for service
accounts only (``requires(SERVICE)``, ``serves("connection:read")``); people
never read a secret back. Versions are read by viewers and changed by
editors; service accounts are admins'. Changes of a credential are
check-and-set with ``If-Match`` (web.expected_revisions): a stale one is 412.
"""

from flask import Blueprint, request, url_for
from flask.views import MethodView

import logins
from access import SERVICE, actor_name, limits_service_reads, requires, serves, service_caller
from forms import Invalid, TokenForm, validated
from models import Credential, ServiceAccount, ServiceToken
from service_forms import RestoreInput, RotationInput, ServiceAccountForm
from services import service_accounts, serving, versions
from views.api import ApiError, _find, _payload, answers_api_errors
from web import etag_of, expected_revisions

bp = Blueprint("serving", __name__, url_prefix="/api/v1")


answers_api_errors(bp)


@bp.errorhandler(serving.ServingError)
@bp.errorhandler(versions.VersionError)
def refused(error):
    """A read or a change of versions that was refused or failed: its status and words (and a cause, if any)."""
    body = {"error": str(error)}
    if getattr(error, "cause", None) is not None:
        cause = error.cause
        body["cause"] = {"code": cause.code, "field": cause.field, "message": cause.message, "hint": cause.hint,
                         "server_reply": cause.server_reply}
    outcome = getattr(error, "outcome", None)
    if outcome is not None and outcome.result is not None:
        body["test"] = outcome.result.as_dict()
    headers = {"Retry-After": "5"} if error.status == 429 else {}
    return body, error.status, headers


# Reading a connection: service accounts only.

# Every answer here may hold a secret: nothing on the way may keep it.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The endpoints whose answers hold a secret (in services.serving.SECRET_FIELDS): the only ones.
CONNECTION_ENDPOINTS = ("serving.credential_connection", "serving.alias_connection", "serving.address_connection")


def _which():
    """The version asked for with ``?version=``: "current" (the default) or "previous"; 400 otherwise."""
    which = request.args.get("version", serving.CURRENT)
    if which not in serving.WHICH:
        raise ApiError(400, {"error": "version must be current or previous."})
    return which


@bp.get("/credentials/<id:row_id>/connection")
@requires(SERVICE)
@serves("connection:read")
@limits_service_reads
def credential_connection(row_id):
    """Everything a program needs to connect to this credential, the secret included (see services.serving)."""
    caller = service_caller()
    which = _which()
    return serving.read(caller, serving.credential_for(caller, row_id), which=which), 200, NO_STORE


@bp.get("/aliases/<id:row_id>/connection")
@requires(SERVICE)
@serves("connection:read")
@limits_service_reads
def alias_connection(row_id):
    """The connection of the credential this alias routes through, and the alias's defaults."""
    caller = service_caller()
    which = _which()
    alias = serving.alias_for(caller, alias_id=row_id)
    return serving.read(caller, alias.credential, which=which, alias=alias), 200, NO_STORE


@bp.get("/aliases/by-address/<string(maxlength=320):address>/connection")
@requires(SERVICE)
@serves("connection:read")
@limits_service_reads
def address_connection(address):
    """The same, found by the alias's address (case ignored): "how do I read mail for support@example.com?"."""
    caller = service_caller()
    which = _which()
    alias = serving.alias_for(caller, address=address)
    return serving.read(caller, alias.credential, which=which, alias=alias), 200, NO_STORE


# Secret versions: listed by viewers (never their values), rotated and rolled back by editors.

class SecretVersions(MethodView):
    """``/credentials/<id>/secret-versions``: the versions a credential keeps, and rotation."""

    init_every_request = False

    @requires("viewer")
    def get(self, row_id):
        """The versions a credential keeps, newest first, with their states; never their values."""
        credential = _find(Credential, row_id)
        return ({"items": [state.as_dict() for state in versions.states(credential)]}, 200,
                {"ETag": etag_of(credential)})

    @requires("editor")
    def post(self, row_id):
        """Rotate the secret: ``{"password" | "client_secret": "...", "note", "grace_seconds", "save_anyway"}``.

        Tested against the server first; refused (422, with the test) when the
        test fails, unless ``save_anyway``. 201 with the new version.
        """
        credential = _find(Credential, row_id)
        payload = _payload()
        save_anyway = payload.pop("save_anyway", False)
        if not isinstance(save_anyway, bool):
            raise Invalid({"save_anyway": ["Send true or false."]})
        form = validated(RotationInput, {"grace_seconds": versions.default_grace_seconds(), **payload})
        needed = logins.login_for(credential.auth).secret
        if not needed.typed:
            raise Invalid({needed.name: [versions.NOT_TYPED.format(noun=needed.noun)]})
        sent = [name for name in logins.TYPED_SECRETS if form[name].data]
        if sent != [needed.name]:
            raise Invalid({needed.name: [f"Send the new {needed.noun} (and no other secret): this credential logs "
                                         f"in with {needed.noun}."]})
        version = versions.rotate(credential, needed.name, form[needed.name].data, actor=actor_name(),
                                  note=form.note.data, grace_seconds=form.grace_seconds.data,
                                  save_anyway=save_anyway, expected_revision=expected_revisions())
        return _version_answer(credential, version)


# One rule for both methods, so an id no row can have is 404 for either (never 405).
bp.add_url_rule("/credentials/<id:row_id>/secret-versions", view_func=SecretVersions.as_view("secret_versions"),
                methods=["GET", "POST"])


@bp.post("/credentials/<id:row_id>/secret-versions/<id:number>/restore")
@requires("editor")
def restore(row_id, number):
    """Make a kept version current again, as a new version: ``{"note", "grace_seconds"}``, both optional."""
    credential = _find(Credential, row_id)
    payload = _payload() if request.get_data() else {}
    form = validated(RestoreInput, {"grace_seconds": versions.default_grace_seconds(), **payload})
    version = versions.restore(credential, number, actor=actor_name(), note=form.note.data,
                               grace_seconds=form.grace_seconds.data, expected_revision=expected_revisions())
    return _version_answer(credential, version)


def _version_answer(credential, version):
    """201 with the new version's state and the credential's new ETag."""
    credential = Credential.get_by_id(credential.id)
    state = next(state for state in versions.states(credential) if state.version.id == version.id)
    body = {"version": state.as_dict(),
            "last_test": None if credential.last_test_at is None else {
                "at": credential.last_test_at.isoformat() + "Z", "ok": credential.last_test_ok,
                "summary": credential.last_test_summary}}
    location = url_for("serving.secret_versions", row_id=credential.id)
    return body, 201, {"ETag": etag_of(credential), "Location": location}


# Service accounts: admins only.

def _account_input(account, payload):
    """The form's values: the account's own (when changing one) with the payload's on top."""
    base = service_accounts.json(account) if account else {"description": "", "scopes": [], "networks": [],
                                                            "group_ids": [], "credential_ids": []}
    values = {**{name: base[name] for name in ServiceAccountForm.FIELDS if name in base},
              **{name: value for name, value in payload.items() if value is not None}}
    if isinstance(values.get("networks"), list):
        if not all(isinstance(item, str) for item in values["networks"]):
            raise Invalid({"networks": ["Send the networks as a list of CIDR texts, or one comma-separated text."]})
        values["networks"] = ", ".join(values["networks"])
    unknown = set(payload) - set(ServiceAccountForm.FIELDS)
    if unknown:
        raise Invalid({name: ["Not a field of a service account."] for name in sorted(unknown)})
    if not_lists := [name for name in ("scopes", "group_ids", "credential_ids") if not isinstance(values[name], list)]:
        raise Invalid({name: ["Send a list."] for name in not_lists})
    return values


@bp.route("/service-accounts", methods=["GET", "POST"])
@requires("admin")
def service_accounts_collection():
    """Every service account, by name, with its tokens (never their text); or add one (201 with it)."""
    if request.method == "GET":
        return {"items": [service_accounts.json(account) for account in ServiceAccount.by_name()]}
    form = validated(ServiceAccountForm, _account_input(None, _payload()))
    account = service_accounts.create(form.values(), actor=actor_name())
    return service_accounts.json(account), 201, {
        "Location": url_for("serving.service_account", row_id=account.id, _method="GET")}


@bp.route("/service-accounts/<id:row_id>", methods=["GET", "PATCH", "DELETE"])
@requires("admin")
def service_account(row_id):
    """One service account: read it, change the fields sent, or delete it (with its tokens)."""
    account = _find(ServiceAccount, row_id)
    if request.method == "DELETE":
        service_accounts.delete(account, actor=actor_name())
        return "", 204
    if request.method == "PATCH":
        form = validated(ServiceAccountForm, _account_input(account, _payload()), account)
        account = service_accounts.update(account, form.values(), actor=actor_name())
    return service_accounts.json(account)


@bp.post("/service-accounts/<id:row_id>/tokens")
@requires("admin")
def service_token_create(row_id):
    """Make a token: ``{"name", "expires_on": "YYYY-MM-DD"}``; 201 with the token, shown this once."""
    account = _find(ServiceAccount, row_id)
    form = validated(TokenForm, _payload())
    row, token = service_accounts.issue_token(account, form.name.data, form.expires_at(), actor=actor_name())
    return {"token": token, **service_accounts.token_json(row)}, 201


@bp.delete("/service-accounts/<id:row_id>/tokens/<id:token_id>")
@requires("admin")
def service_token_revoke(row_id, token_id):
    """Revoke one of a service account's tokens: it stops working at once."""
    token = ServiceToken.get_or_none((ServiceToken.id == token_id) & (ServiceToken.service_account == row_id))
    if token is None:
        raise ApiError(404, {"error": f"Service account {row_id} has no token {token_id}."})
    service_accounts.revoke_token(token, actor=actor_name())
    return "", 204

