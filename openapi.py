"""The OpenAPI 3.1 document of the JSON API (served at /api/v1/openapi.json), and the schemas tests check
the API's answers against."""

import identity_providers
import logins
from config import MINIMUM_CHECK_INTERVAL
from probe import causes, protocols

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def _nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties, required=None, closed=True):
    """An object with `properties` (a name: schema mapping), `required` (all of them unless given); `closed`
    says it has no other properties (the API answers exactly what it documents)."""
    return {"type": "object", "properties": properties, "required": list(required or properties),
            "additionalProperties": not closed}


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


CREDENTIAL_FIELDS = {
    "name": STRING,
    "description": STRING,
    "protocol": {"enum": list(protocols.PROTOCOLS)},
    "host": STRING,
    "port": {"type": "integer", "minimum": 1, "maximum": 65535,
             "description": "Left out: the standard port of protocol and security (993, 143, 995, 110)."},
    "security": {"enum": list(protocols.SECURITY_LABELS)},
    "username": STRING,
    "folder": STRING,
    "auth": {"enum": list(protocols.AUTHENTICATION_LABELS)},
    "client_id": STRING,
    "token_url": {"type": "string", "description": "OAuth2 client credentials at Microsoft 365: a tenant id (or its "
                                                   "onmicrosoft.com domain) stands for that tenant's token endpoint, "
                                                   "with Exchange Online's app-only scope when scope is empty."},
    "scope": STRING,
    "group_id": INTEGER,
    "custom_data": {"type": "array", "items": _object({"key": STRING, "value": STRING})},
    "client_secret_expires_on": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}],
                                 "description": "When the OAuth2 client secret expires (optional); warned of before."},
}
SECRETS = {
    "password": {"type": "string", "writeOnly": True},
    "client_secret": {"type": "string", "writeOnly": True},
}
ALIAS_FIELDS = {"address": STRING, "credential_id": INTEGER, "workspace": STRING, "project_type": STRING,
                "client": STRING, "description": STRING}
GROUP_FIELDS = {"name": STRING, "description": STRING,
                "check_interval": {"anyOf": [{"type": "integer", "minimum": MINIMUM_CHECK_INTERVAL}, {"type": "null"}],
                                   "description": "Seconds between scheduled checks of its credentials; null: the "
                                                  "instance's MAILKEEP_CHECK_INTERVAL."},
                "password_max_age_days": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
                                          "description": "Days after which a password set is due for rotation."}}
DATE = {"type": "string", "format": "date"}
OAUTH_APP_FIELDS = {
    "name": STRING,
    "kind": {"enum": list(identity_providers.KINDS)},
    "tenant": {"type": "string", "description": "Microsoft: a tenant id or domain; organizations when left out."},
    "issuer": {"type": "string", "description": "Custom: an OpenID Connect issuer whose discovery document gives "
                                                "the endpoints left out."},
    "authorization_url": STRING,
    "token_url": STRING,
    "client_id": STRING,
    "scopes": {"type": "string", "description": "Custom: the mail scopes, space-separated."},
    "client_secret_expires_on": _nullable(DATE),
    "idle_days": _nullable(INTEGER),
}

SCHEMAS = {
    "Credential": _object({
        "id": INTEGER, **CREDENTIAL_FIELDS, "password_set": BOOLEAN, "client_secret_set": BOOLEAN,
        "refresh_token_set": BOOLEAN, "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
        "last_test": _nullable(_object({"at": TIMESTAMP, "ok": BOOLEAN, "summary": STRING})),
        # OAuth2 sign-in: who signed in, with which app, when; the refresh token itself is never answered.
        "sign_in": _nullable(_object({"oauth_app_id": INTEGER, "account": STRING, "scopes": STRING,
                                      "signed_in_at": _nullable(TIMESTAMP),
                                      "refresh_token_used_at": _nullable(TIMESTAMP)})),
    }),
    "OAuthApp": _object({
        "id": INTEGER, **OAUTH_APP_FIELDS, "client_secret_set": BOOLEAN, "authorization_endpoint": STRING,
        "token_endpoint": STRING, "redirect_uri": STRING, "credential_count": INTEGER, "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }),
    "OAuthAppInput": {"type": "object", "properties": {
        **OAUTH_APP_FIELDS, "client_secret": {"type": "string", "writeOnly": True, "maxLength": 4096}}},
    "CredentialInput": {"type": "object", "properties": {**CREDENTIAL_FIELDS, **SECRETS}},
    "Alias": _object({"id": INTEGER, **ALIAS_FIELDS}),
    "AliasInput": {"type": "object", "properties": ALIAS_FIELDS},
    "Group": _object({"id": INTEGER, **GROUP_FIELDS, "is_default": BOOLEAN, "credential_count": INTEGER}),
    "GroupInput": {"type": "object", "properties": GROUP_FIELDS},
    "SecretInput": _object({"value": {"type": "string", "writeOnly": True, "minLength": 1, "maxLength": 4096}}),
    "ConnectionTestInput": {
        "type": "object",
        "properties": {"credential_id": INTEGER, **{k: v for k, v in CREDENTIAL_FIELDS.items()
                                                    if k not in ("name", "description", "group_id", "custom_data",
                                                                 "client_secret_expires_on")},
                       **SECRETS},
    },
    "ConnectionTestResult": _object({
        "ok": BOOLEAN,
        "summary": STRING,
        "elapsed_ms": INTEGER,
        "message_count": _nullable(INTEGER),
        "folders": {"type": "array", "items": STRING},
        "settings": {"type": "object"},
        "steps": {"type": "array", "items": _object({
            "name": STRING, "title": STRING, "outcome": {"enum": ["ok", "failed", "skipped"]},
            "duration_ms": INTEGER, "details": STRING,
        })},
        "failed_step": _nullable(STRING),
        "cause": _nullable(_object({
            "code": {"enum": list(causes.CATALOGUE)}, "field": _nullable(STRING), "message": STRING,
            "hint": STRING, "server_reply": STRING,
            "detail": {"type": "string", "description": "Narrows the code: for token_request_failed the endpoint's "
                       "OAuth2 error (invalid_client), http_<status>, timeout or unreachable; else empty."},
        })),
        # The server certificate seen when TLS was used (its names and expiry), else null.
        "certificate": _nullable(_object({"subject": STRING, "issuer": STRING, "not_after": TIMESTAMP})),
    }),
    # A refused delete adds what is in the way (aliases, credential_count) to its error.
    "Error": _object({"error": STRING}, closed=False),
    "ValidationErrors": _object({"errors": {"type": "object", "additionalProperties": {
        "type": "array", "items": STRING}}}),
}

# Watching credentials (views/api_watch.py).
SCHEMAS.update({
    "Check": _object({
        "id": INTEGER, "at": TIMESTAMP, "ok": BOOLEAN, "cause": _nullable(STRING), "cause_detail": _nullable(STRING),
        "summary": STRING, "duration_ms": INTEGER, "actor": STRING, "run_id": _nullable(INTEGER),
        "certificate": _nullable(_object({"not_after": TIMESTAMP, "issuer": STRING})),
    }),
    "Health": _object({
        "counts": _object({name: INTEGER for name in ("ok", "failing", "expiring", "unchecked", "paused")}),
        "worker_heartbeat": _nullable(TIMESTAMP), "check_interval": INTEGER,
    }),
    "CheckRunInput": {"type": "object", "properties": {
        "credential_ids": {"type": "array", "items": INTEGER}, "q": STRING, "group": INTEGER,
        "protocol": STRING, "auth": STRING,
        "health": {"enum": ["ok", "failing", "expiring", "unchecked", "paused"]}}},
    "CheckRunStarted": _object({"id": INTEGER, "total": INTEGER}),
    "CheckRun": _object({"id": INTEGER, "started_at": TIMESTAMP, "actor": STRING, "total": INTEGER, "done": INTEGER,
                         "ok": INTEGER, "failing": INTEGER, "finished": BOOLEAN}),
    "NotificationChannel": _object({
        "id": INTEGER, "name": STRING, "kind": {"enum": ["webhook", "email"]}, "url": _nullable(STRING),
        "recipients": {"type": "array", "items": STRING}, "enabled": BOOLEAN,
        "groups": _nullable({"type": "array", "items": INTEGER}), "created_at": TIMESTAMP,
    }),
    "NewNotificationChannel": _object({
        "id": INTEGER, "name": STRING, "kind": {"enum": ["webhook", "email"]}, "url": _nullable(STRING),
        "recipients": {"type": "array", "items": STRING}, "enabled": BOOLEAN,
        "groups": _nullable({"type": "array", "items": INTEGER}), "created_at": TIMESTAMP,
        "signing_secret": {"type": "string", "description": "Webhooks only, shown this once (whsec_...)."},
    }, required=["id", "name", "kind", "url", "recipients", "enabled", "groups", "created_at"]),
    "NotificationChannelInput": {"type": "object", "required": ["kind", "name"], "properties": {
        "kind": {"enum": ["webhook", "email"]}, "name": STRING, "url": STRING,
        "recipients": {"type": "array", "items": STRING}, "groups": {"type": "array", "items": INTEGER}}},
    "NotificationChannelChange": _object({"enabled": BOOLEAN}),
})

for _name in ("Credential", "Alias", "Group", "Check", "NotificationChannel", "OAuthApp"):
    SCHEMAS[f"{_name}Page"] = _object({"items": {"type": "array", "items": _ref(_name)}, "page": INTEGER,
                                        "pages": INTEGER, "total": INTEGER})


def _json(schema_name, description):
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


ERRORS = {
    "401": _json("Error", "No valid API token."),
    "403": _json("Error", "The token's user lacks the role."),
}
WRITE_ERRORS = {
    **ERRORS,
    "400": _json("Error", "The body is not a JSON object."),
    "409": _json("Error", "Another request took this name or address meanwhile."),
    "415": _json("Error", "The body is not JSON."),
    "422": _json("ValidationErrors", "Invalid values, per field."),
}
NOT_FOUND = {"404": _json("Error", "No such entry.")}
PAGING = [{"name": "page", "in": "query", "schema": INTEGER}, {"name": "per_page", "in": "query", "schema": INTEGER}]


def _collection(name, plural, extra_parameters=(), noun=None):
    """The paths of one entry type: list and create, then get, update and delete by id. `noun` is how the
    summaries call one entry (the schema's name in lower case unless given)."""
    item = f"/{plural}/{{row_id}}"
    noun = noun or name.lower()
    article = "an" if noun[:1].lower() in "aeiou" else "a"
    id_parameter = [{"name": "row_id", "in": "path", "required": True, "schema": INTEGER}]
    body = {"required": True, "content": {"application/json": {"schema": _ref(f"{name}Input")}}}
    return {
        f"/{plural}": {
            "get": {"summary": f"List {plural}", "parameters": PAGING + list(extra_parameters),
                    "responses": {"200": _json(f"{name}Page", f"A page of {plural}."), **ERRORS}},
            "post": {"summary": f"Add {article} {noun}", "requestBody": body,
                     "responses": {"201": _json(name, f"The new {noun}, with its id."), **WRITE_ERRORS}},
        },
        item: {
            "parameters": id_parameter,
            "get": {"summary": f"One {noun}", "responses": {"200": _json(name, name), **ERRORS, **NOT_FOUND}},
            "patch": {"summary": f"Change {article} {noun}: the fields sent", "requestBody": body,
                      "responses": {"200": _json(name, f"The changed {noun}."), **WRITE_ERRORS, **NOT_FOUND}},
            "delete": {"summary": f"Delete {article} {noun}",
                       "responses": {"204": {"description": "Deleted."}, **ERRORS, **NOT_FOUND,
                                     "409": _json("Error", "Still in use; nothing was deleted.")}},
        },
    }


def document():
    """The OpenAPI document as a dict, the routes of views/serving.py included (openapi_serving)."""
    import openapi_serving  # noqa: PLC0415 (it builds on this module's blocks, so it is imported when they exist)

    filters = [{"name": "q", "in": "query", "schema": STRING}, {"name": "group", "in": "query", "schema": INTEGER},
               {"name": "protocol", "in": "query", "schema": {"enum": list(protocols.PROTOCOLS)}},
               {"name": "auth", "in": "query", "schema": {"enum": list(protocols.AUTHENTICATION_LABELS)},
                "description": "How the credential logs in."}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mailkeep API", "version": "1",
                 "description": "Credentials, aliases, groups and connection tests. Secrets are write-only."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "A personal API token, made on the API tokens page."},
                                "serviceToken": {"type": "http", "scheme": "bearer",
                                                 "description": "A service account's token (mks_...), made on the "
                                                                "Service accounts page."}},
            "schemas": {**SCHEMAS, **openapi_serving.SCHEMAS},
        },
        "paths": {
            **openapi_serving.paths(),
            **_collection("Credential", "credentials", filters),
            **_collection("Alias", "aliases"),
            **_collection("Group", "groups"),
            # Administrators only.
            **_collection("OAuthApp", "oauth-apps", noun="OAuth app"),
            "/credentials/{row_id}/secrets/{name}": {
                "parameters": [{"name": "row_id", "in": "path", "required": True, "schema": INTEGER},
                               {"name": "name", "in": "path", "required": True,
                                "schema": {"enum": list(logins.TYPED_SECRETS)}}],
                "put": {
                    "summary": "Change a credential's stored password or client secret (logged; never answered)",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": _ref("SecretInput")}}},
                    "responses": {"204": {"description": "Changed."}, **ERRORS, **NOT_FOUND,
                                  **{code: WRITE_ERRORS[code] for code in ("400", "415")},
                                  "422": _json("ValidationErrors", "An empty value, or one with control characters.")},
                },
            },
            "/connection-tests": {"post": {
                "summary": "Test a saved credential (credential_id) or the settings sent; a service account "
                           "(connection:test) tests only saved credentials it may read",
                "security": [{"token": []}, {"serviceToken": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("ConnectionTestInput")}}},
                "responses": {"200": _json("ConnectionTestResult", "The test's steps and, on failure, its cause."),
                              **WRITE_ERRORS, **NOT_FOUND,
                              "429": _json("Error", "Too many tests at once, or by this user; see Retry-After.")},
            }},
            **_watch_paths(),
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "The OpenAPI document."}}}},
        },
    }


def _watch_paths():
    """The paths of watching credentials: a credential's checks, the health summary, "Test all" runs and the
    notification channels."""
    row = [{"name": "row_id", "in": "path", "required": True, "schema": INTEGER}]
    admin = {**ERRORS, "403": _json("Error", "Only admins manage notification channels.")}
    return {
        "/credentials/{row_id}/checks": {"parameters": row, "get": {
            "summary": "A credential's checks, newest first (scheduled, by hand, API, command line)",
            "parameters": PAGING, "responses": {"200": _json("CheckPage", "A page of checks."), **ERRORS,
                                                **NOT_FOUND}}},
        "/health": {"get": {"summary": "How many credentials are OK, failing, expiring soon, never checked, paused",
                            "responses": {"200": _json("Health", "The counts and the worker's heartbeat."),
                                          **ERRORS}}},
        "/check-runs": {"post": {
            "summary": "Test all: check these credentials (or those the filters match, or all) in the background",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CheckRunInput")}}},
            "responses": {"202": _json("CheckRunStarted", "The run's id; follow it at /check-runs/{id}."),
                          **WRITE_ERRORS}}},
        "/check-runs/{run_id}": {
            "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": INTEGER}],
            "get": {"summary": "How far a run is", "responses": {"200": _json("CheckRun", "Its progress."),
                                                                 **ERRORS, **NOT_FOUND}}},
        "/notification-channels": {
            "get": {"summary": "Notification channels (admins)", "parameters": PAGING,
                    "responses": {"200": _json("NotificationChannelPage", "A page of channels."), **admin}},
            "post": {"summary": "Add a webhook or email channel; a webhook's signing secret is answered once",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": _ref("NotificationChannelInput")}}},
                     "responses": {"201": _json("NewNotificationChannel", "The channel (and its signing secret)."),
                                   **WRITE_ERRORS, **admin}}},
        "/notification-channels/{row_id}": {
            "parameters": row,
            "get": {"summary": "One channel", "responses": {"200": _json("NotificationChannel", "The channel."),
                                                            **admin, **NOT_FOUND}},
            "patch": {"summary": "Turn a channel on or off",
                      "requestBody": {"required": True, "content": {"application/json": {
                          "schema": _ref("NotificationChannelChange")}}},
                      "responses": {"200": _json("NotificationChannel", "The channel."), **WRITE_ERRORS, **admin,
                                    **NOT_FOUND}},
            "delete": {"summary": "Delete a channel with its deliveries",
                       "responses": {"204": {"description": "Deleted."}, **admin, **NOT_FOUND}}},
    }
