"""The OpenAPI 3.1 document of the JSON API (served at /api/v1/openapi.json), and the schemas tests check
the API's answers against."""

import identity_providers
import logins

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
}
SECRETS = {
    "password": {"type": "string", "writeOnly": True},
    "client_secret": {"type": "string", "writeOnly": True},
}
ALIAS_FIELDS = {"address": STRING, "credential_id": INTEGER, "workspace": STRING, "project_type": STRING,
                "client": STRING, "description": STRING}
GROUP_FIELDS = {"name": STRING, "description": STRING}
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
                                                    if k not in ("name", "description", "group_id", "custom_data")},
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
        })),
        # The server certificate seen when TLS was used (its names and expiry), else null.
        "certificate": _nullable(_object({"subject": STRING, "issuer": STRING, "not_after": TIMESTAMP})),
    }),
    # A refused delete adds what is in the way (aliases, credential_count) to its error.
    "Error": _object({"error": STRING}, closed=False),
    "ValidationErrors": _object({"errors": {"type": "object", "additionalProperties": {
        "type": "array", "items": STRING}}}),
}

for _name in ("Credential", "Alias", "Group", "OAuthApp"):
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
    """The OpenAPI document as a dict."""
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
                                          "description": "A personal API token, made on the API tokens page."}},
            "schemas": SCHEMAS,
        },
        "paths": {
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
                "summary": "Test a saved credential (credential_id) or the settings sent",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("ConnectionTestInput")}}},
                "responses": {"200": _json("ConnectionTestResult", "The test's steps and, on failure, its cause."),
                              **WRITE_ERRORS, **NOT_FOUND,
                              "429": _json("Error", "Too many tests at once, or by this user; see Retry-After.")},
            }},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "The OpenAPI document."}}}},
        },
    }
