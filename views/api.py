"""The JSON API, version 1: what other tools call. For now, connection tests.

``POST /api/v1/connection-tests`` takes either ``{"credential_id": N}`` (test
the saved credential and record the outcome) or the settings themselves
(``protocol``, ``host``, ``port``, ``security``, ``username``, ``folder``,
``auth``, ``password`` or ``client_id``/``client_secret``/``token_url``/``scope``)
and answers ``probe.Result.as_dict()``. Secrets are accepted, never returned.
"""

from flask import Blueprint, request
from werkzeug.datastructures import MultiDict

import probe
from forms import ConnectionForm, field_values
from models import Credential

from services import TOO_MANY_TESTS, UNREADABLE_SECRET, run_connection_test, test_saved_credential

from . import TOO_MANY_REQUESTS, UNPROCESSABLE

bp = Blueprint("api", __name__, url_prefix="/api/v1")

RETRY_AFTER_SECONDS = 5


@bp.post("/connection-tests")
def connection_tests():
    """Run a connection test for the settings or the saved credential in the JSON body; answer the result."""
    if not request.is_json:
        return {"error": "Send a JSON object with Content-Type: application/json."}, 415
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return {"error": "Send a JSON object."}, 400
    try:
        if "credential_id" in payload:
            return _test_saved(payload["credential_id"])
        return _test_settings(payload)
    except probe.Busy:
        return {"error": TOO_MANY_TESTS}, TOO_MANY_REQUESTS, {"Retry-After": str(RETRY_AFTER_SECONDS)}


def _test_saved(credential_id):
    credential = Credential.get_or_none(Credential.id == credential_id) if isinstance(credential_id, int) else None
    if credential is None:
        return {"error": f"No credential with id {credential_id!r}."}, 404
    result = test_saved_credential(credential)
    if result is None:
        return {"errors": {credential.login_secret: [UNREADABLE_SECRET]}}, UNPROCESSABLE
    return result.as_dict()


def _test_settings(payload):
    formdata = MultiDict({name: str(value) for name, value in payload.items() if value is not None})
    form = ConnectionForm(formdata=formdata, meta={"csrf": False})
    if not form.validate() or form.missing_secret():
        return {"errors": form.errors}, UNPROCESSABLE
    settings = probe.Settings(**form.secrets(), **field_values(form, ConnectionForm.CONNECTION_FIELDS))
    return run_connection_test(settings).as_dict()
