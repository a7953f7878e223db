"""The OpenAPI description of the routes of views/serving.py (connections for service accounts, secret
versions, service accounts): ``SCHEMAS`` and ``paths()``, which openapi.document() merges into its own."""

import logins
from config import MAX_GRACE_SECONDS
from models import SCOPES
from openapi import BOOLEAN, INTEGER, STRING, TIMESTAMP, _json, _nullable, _object, _ref
from probe import causes, protocols

CAUSE = _object({
    "code": {"enum": list(causes.CATALOGUE)}, "field": _nullable(STRING), "message": STRING, "hint": STRING,
    "server_reply": STRING,
})
VERSION_STATE = _object({
    "number": INTEGER, "secret": {"enum": list(logins.SECRETS)}, "created_at": TIMESTAMP, "created_by": STRING,
    "note": STRING, "state": {"enum": ["current", "previous", "retired"]}, "readable_until": _nullable(TIMESTAMP),
})
CONNECTION_FIELDS = {
    "credential_id": INTEGER, "name": STRING, "protocol": {"enum": list(protocols.PROTOCOLS)}, "host": STRING,
    "port": INTEGER, "security": {"enum": list(protocols.SECURITY_LABELS)}, "username": STRING, "folder": STRING,
    "auth": {"enum": list(protocols.AUTHENTICATION_LABELS)},
    "version": {**_nullable(INTEGER), "description": "The version of the secret answered; null for a secret "
                                                     "stored before versions were kept and unreadable then."},
    "version_state": _nullable({"enum": ["current", "previous"]}),
    "set_at": _nullable(TIMESTAMP),
    "readable_until": {**_nullable(TIMESTAMP), "description": "For the previous version: the end of its grace "
                                                              "period."},
    "password": {"type": "string", "description": "Password logins: the password."},
    "access_token": {"type": "string", "description": "OAuth2 logins: a fresh access token (SASL XOAUTH2 or "
                                                      "OAUTHBEARER); never the client secret."},
    "token_type": STRING,
    "access_token_expires_at": _nullable(TIMESTAMP),
    "alias": _object({"id": INTEGER, "address": STRING, "workspace": STRING, "project_type": STRING,
                      "client": STRING}),
}
SERVICE_TOKEN = _object({"id": INTEGER, "name": STRING, "created_at": TIMESTAMP, "last_used_at": _nullable(TIMESTAMP),
                         "expires_at": _nullable(TIMESTAMP), "expired": BOOLEAN})
SERVICE_ACCOUNT_FIELDS = {
    "name": STRING, "description": STRING,
    "scopes": {"type": "array", "items": {"enum": list(SCOPES)}},
    "networks": {"type": "array", "items": STRING, "description": "IP networks (CIDR) it may call from; empty: any."},
    "group_ids": {"type": "array", "items": INTEGER}, "credential_ids": {"type": "array", "items": INTEGER},
}

SCHEMAS = {
    "Connection": {
        **_object(CONNECTION_FIELDS, required=[name for name in CONNECTION_FIELDS
                                               if name not in ("password", "access_token", "token_type",
                                                               "access_token_expires_at", "alias")]),
        "description": "Everything a program needs to connect, the secret included: `password`, or for OAuth2 "
                       "`access_token` with its expiry. Sent with Cache-Control: no-store.",
    },
    "SecretVersion": VERSION_STATE,
    "SecretVersionList": _object({"items": {"type": "array", "items": _ref("SecretVersion")}}),
    "RotationInput": {"type": "object", "properties": {
        "password": {"type": "string", "writeOnly": True}, "client_secret": {"type": "string", "writeOnly": True},
        "note": {"type": "string", "maxLength": 200},
        "grace_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_GRACE_SECONDS, "default": 86400},
        "save_anyway": {"type": "boolean", "default": False}}},
    "RestoreInput": {"type": "object", "properties": {
        "note": {"type": "string", "maxLength": 200},
        "grace_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_GRACE_SECONDS}}},
    "NewVersion": _object({
        "version": _ref("SecretVersion"),
        "last_test": _nullable(_object({"at": TIMESTAMP, "ok": BOOLEAN, "summary": STRING}))}),
    "ServingError": _object({"error": STRING, "cause": CAUSE, "test": _ref("ConnectionTestResult")},
                            required=["error"]),
    "ServiceAccount": _object({"id": INTEGER, **SERVICE_ACCOUNT_FIELDS, "created_at": TIMESTAMP,
                               "tokens": {"type": "array", "items": _ref("ServiceToken")}}),
    "ServiceAccountInput": {"type": "object", "properties": SERVICE_ACCOUNT_FIELDS},
    "ServiceAccountList": _object({"items": {"type": "array", "items": _ref("ServiceAccount")}}),
    "ServiceToken": SERVICE_TOKEN,
    "NewServiceToken": _object({"token": {"type": "string", "description": "Shown this once; only its hash is "
                                                                             "kept."},
                                **SERVICE_TOKEN["properties"]}),
    "ServiceTokenInput": _object({"name": STRING, "expires_on": {"type": "string", "format": "date"}},
                                 required=["name"]),
}

ID = {"in": "path", "required": True, "schema": INTEGER}
ETAG = {"ETag": {"description": "The credential's revision, for If-Match.", "schema": STRING}}
IF_MATCH = {"name": "If-Match", "in": "header", "schema": STRING,
            "description": "The credential's ETag: the change is made only if it is still that revision (else 412)."}
ERRORS = {
    "401": _json("Error", "No valid token (or an expired one)."),
    "403": _json("Error", "Not for this caller: a person or personal token asking for a connection, a service "
                          "account outside its networks, without the scope, or on a route for people."),
}
WRITE = {
    "400": _json("Error", "The body is not a JSON object."),
    "415": _json("Error", "The body is not JSON."),
    "422": _json("ValidationErrors", "Invalid values, per field."),
}
NOT_FOUND = {"404": _json("Error", "No such entry (for a service account: none it may read).")}
STALE = {"412": _json("Error", "If-Match names a revision the credential has moved on from.")}


def _connection(summary, parameters):
    return {
        "parameters": parameters,
        "get": {
            "summary": summary,
            "security": [{"serviceToken": []}],
            "parameters": [{"name": "version", "in": "query", "schema": {"enum": ["current", "previous"]},
                            "description": "previous: the version a rotation replaced, during its grace period."}],
            "responses": {
                "200": {**_json("Connection", "Where and how to connect, with the secret."),
                        "headers": {"Cache-Control": {"schema": {"const": "no-store"}}}},
                "400": _json("Error", "version is neither current nor previous."),
                **ERRORS, **NOT_FOUND,
                "409": _json("ServingError", "The credential stores no secret for its login."),
                "410": _json("ServingError", "No previous version is readable now."),
                "429": _json("Error", "Too many reads by this service account; see Retry-After."),
                "500": _json("ServingError", "The secret cannot be read with the configured keys."),
                "502": _json("ServingError", "The token endpoint gave no access token; `cause` says why."),
                "503": _json("ServingError", "The read could not be recorded in the audit log: no secret sent."),
            },
        },
    }


def paths():
    """The paths of views/serving.py, for openapi.document()."""
    return {
        "/credentials/{row_id}/connection": _connection(
            "Read a credential's connection, secret included (service accounts with connection:read)",
            [{"name": "row_id", **ID}]),
        "/aliases/{row_id}/connection": _connection(
            "Read the connection of the credential an alias routes through, and the alias's defaults",
            [{"name": "row_id", **ID}]),
        "/aliases/by-address/{address}/connection": _connection(
            "The same, by the alias's address (case ignored)",
            [{"name": "address", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 320}}]),
        "/credentials/{row_id}/secret-versions": {
            "parameters": [{"name": "row_id", **ID}],
            "get": {"summary": "The versions a credential keeps, newest first, with their states; never their values",
                    "responses": {"200": {**_json("SecretVersionList", "The versions."), "headers": ETAG},
                                  **ERRORS, **NOT_FOUND}},
            "post": {
                "summary": "Rotate the secret: tested against the server first, refused with the cause unless "
                           "save_anyway",
                "parameters": [IF_MATCH],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RotationInput")}}},
                "responses": {"201": {**_json("NewVersion", "The new current version."), "headers": ETAG},
                              **ERRORS, **NOT_FOUND, **WRITE, **STALE,
                              "422": {"description": "Invalid values (`errors`, per field), or the new secret failed "
                                                     "its test (`error`, with the `test`).",
                                      "content": {"application/json": {"schema": {"anyOf": [
                                          _ref("ValidationErrors"), _ref("ServingError")]}}}},
                              "429": _json("ServingError", "Every test slot is busy; see Retry-After.")},
            },
        },
        "/credentials/{row_id}/secret-versions/{number}/restore": {
            "parameters": [{"name": "row_id", **ID}, {"name": "number", **ID}],
            "post": {
                "summary": "Make a kept version current again, as a new version (rollback)",
                "parameters": [IF_MATCH],
                "requestBody": {"content": {"application/json": {"schema": _ref("RestoreInput")}}},
                "responses": {"201": {**_json("NewVersion", "The new current version."), "headers": ETAG},
                              **ERRORS, **NOT_FOUND, **WRITE, **STALE,
                              "409": _json("ServingError", "That version cannot be made current (current already, "
                                                           "set for another login, unreadable).")},
            },
        },
        "/service-accounts": {
            "get": {"summary": "Every service account (admins)",
                    "responses": {"200": _json("ServiceAccountList", "The service accounts."), **ERRORS}},
            "post": {"summary": "Add a service account (admins)",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": _ref("ServiceAccountInput")}}},
                     "responses": {"201": _json("ServiceAccount", "The new service account."), **ERRORS, **WRITE}},
        },
        "/service-accounts/{row_id}": {
            "parameters": [{"name": "row_id", **ID}],
            "get": {"summary": "One service account",
                    "responses": {"200": _json("ServiceAccount", "It."), **ERRORS, **NOT_FOUND}},
            "patch": {"summary": "Change the fields sent",
                      "requestBody": {"required": True, "content": {"application/json": {
                          "schema": _ref("ServiceAccountInput")}}},
                      "responses": {"200": _json("ServiceAccount", "It, changed."), **ERRORS, **NOT_FOUND, **WRITE}},
            "delete": {"summary": "Delete it with its tokens",
                       "responses": {"204": {"description": "Deleted."}, **ERRORS, **NOT_FOUND}},
        },
        "/service-accounts/{row_id}/tokens": {
            "parameters": [{"name": "row_id", **ID}],
            "post": {"summary": "Make a token, shown this once",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": _ref("ServiceTokenInput")}}},
                     "responses": {"201": _json("NewServiceToken", "The token."), **ERRORS, **NOT_FOUND, **WRITE}},
        },
        "/service-accounts/{row_id}/tokens/{token_id}": {
            "parameters": [{"name": "row_id", **ID}, {"name": "token_id", **ID}],
            "delete": {"summary": "Revoke a token: it stops working at once",
                       "responses": {"204": {"description": "Revoked."}, **ERRORS, **NOT_FOUND}},
        },
    }
