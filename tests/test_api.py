"""The JSON API: POST /api/v1/connection-tests with settings or a saved credential's id."""

import json
import re
import threading

import models
import openapi
from api_spec import matches_spec
from models import Credential
from testdata import CANARY, MAILBOX_USER, stored_credential

URL = "/api/v1/connection-tests"


def dovecot_settings(dovecot, **overrides):
    return {"protocol": "IMAP", "host": "localhost", "port": dovecot.imaps_port, "security": "ssl_tls",
            "username": MAILBOX_USER, "password": CANARY, "folder": "INBOX", **overrides}


def test_settings_in_result_out(dovecot, api):
    response = api.post(URL, json=dovecot_settings(dovecot))
    body = response.get_json()
    assert response.status_code == 200
    assert body["ok"] is True and body["message_count"] == 3 and body["cause"] is None
    assert [step["name"] for step in body["steps"]] == [
        "resolve", "connect", "tls", "greeting", "authenticate", "folder", "logout"]
    assert {"name", "title", "outcome", "duration_ms", "details"} <= set(body["steps"][0])
    assert "password" not in body["settings"] and body["settings"]["host"] == "localhost"


def test_a_failure_names_code_field_step_and_reply(dovecot, api):
    body = api.post(URL, json=dovecot_settings(dovecot, password="not-it")).get_json()
    assert body["ok"] is False and body["failed_step"] == "authenticate"
    assert body["cause"]["code"] == "auth_failed" and body["cause"]["field"] == "password"
    assert "AUTHENTICATIONFAILED" in body["cause"]["server_reply"]


def test_a_saved_credential_is_tested_with_its_stored_password_and_recorded(app, dovecot, api):
    with models.db.connection_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"], host="localhost",
                                       port=dovecot.imaps_port, username=MAILBOX_USER)
    body = api.post(URL, json={"credential_id": credential.id}).get_json()
    assert body["ok"] is True
    with models.db.connection_context():
        assert Credential.get_by_id(credential.id).last_test_ok is True
    assert api.post(URL, json={"credential_id": 999}).status_code == 404


def test_invalid_settings_are_refused_field_by_field(api):
    response = api.post(URL, json={"protocol": "IMAP", "host": "bad host", "port": 0, "username": "a@"})
    errors = response.get_json()["errors"]
    assert response.status_code == 422
    assert set(errors) >= {"host", "port", "username"}
    missing = api.post(URL, json={"protocol": "IMAP", "host": "imap.example.com", "port": 993,
                                     "security": "ssl_tls", "username": "a@example.com", "folder": "INBOX"})
    assert missing.get_json()["errors"] == {"password": ["Enter the password."]}


def test_only_json_objects_are_accepted(api):
    assert api.post(URL, data="host=x").status_code == 415
    assert api.post(URL, json=[1, 2]).status_code == 400


def test_too_many_tests_at_once_get_429_with_a_retry_time(app, api):
    app.extensions["mailkeep.test_slots"] = threading.BoundedSemaphore(1)
    assert app.extensions["mailkeep.test_slots"].acquire(blocking=False)
    response = api.post(URL, json={"protocol": "IMAP", "host": "imap.example.com", "port": 993,
                                      "security": "ssl_tls", "username": "a@example.com", "password": "x",
                                      "folder": "INBOX"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "Too many connection tests are running; try again in a few seconds."


# Credentials, aliases and groups over the API, each answer checked against the OpenAPI document.


def test_every_api_route_is_documented_and_every_documented_operation_exists(app):
    routes = {(re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1")), method.lower())
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in openapi.document()["paths"].items()
                  for method in item if method != "parameters"}
    assert routes == documented
    served = app.test_client().get("/api/v1/openapi.json").get_json()
    assert served["openapi"] == "3.1.0" and served == json.loads(json.dumps(openapi.document()))


def test_a_credential_is_added_kept_changed_and_deleted(api):
    body = {"name": "Support", "description": "Helpdesk", "host": "imap.example.com", "port": 993,
            "security": "ssl_tls", "username": "help@example.com", "password": CANARY,
            "custom_data": [{"key": "queue", "value": "L1"}]}
    created = matches_spec(api.post("/api/v1/credentials", json=body), "/credentials", "POST")
    assert created.status_code == 201
    credential = created.get_json()
    assert created.headers["Location"] == f"/api/v1/credentials/{credential['id']}"
    assert credential["password_set"] is True and credential["client_secret_set"] is False
    assert "password" not in credential and credential["custom_data"] == [{"key": "queue", "value": "L1"}]
    path = f"/api/v1/credentials/{credential['id']}"
    matches_spec(api.get(path), "/credentials/{row_id}", "GET")
    listed = matches_spec(api.get("/api/v1/credentials?q=helpdesk"), "/credentials", "GET").get_json()
    assert [item["id"] for item in listed["items"]] == [credential["id"]] and listed["total"] == 1
    changed = matches_spec(api.patch(path, json={"description": "Changed"}), "/credentials/{row_id}", "PATCH")
    assert changed.get_json()["description"] == "Changed" and changed.get_json()["password_set"] is True
    moved = matches_spec(api.patch(path, json={"host": "elsewhere.example.com"}), "/credentials/{row_id}", "PATCH")
    assert moved.status_code == 422
    assert moved.get_json()["errors"]["password"] == ["The server or login changed: type the password again for it."]
    assert api.patch(path, json={"host": "elsewhere.example.com", "password": "new"}).status_code == 200
    invalid = matches_spec(api.post("/api/v1/credentials", json={"name": "x"}), "/credentials", "POST")
    assert invalid.status_code == 422 and "host" in invalid.get_json()["errors"]
    assert matches_spec(api.delete(path), "/credentials/{row_id}", "DELETE").status_code == 204
    assert matches_spec(api.get(path), "/credentials/{row_id}", "GET").status_code == 404


def test_custom_data_must_be_a_list_of_objects_and_null_fields_leave_values_alone(api):
    body = {"name": "Support", "description": "Helpdesk", "host": "imap.example.com", "port": 993,
            "security": "ssl_tls", "username": "help@example.com", "password": CANARY}
    for custom_data in ("queue=L1", [["queue", "L1"]], {"key": "queue"}):
        refused = api.post("/api/v1/credentials", json={**body, "custom_data": custom_data})
        assert refused.status_code == 422, custom_data
        assert refused.get_json()["errors"] == {"custom_data": ["Send a list of {key, value} objects."]}
    path = api.post("/api/v1/credentials", json=body).headers["Location"]
    unchanged = api.patch(path, json={"description": None, "folder": None})
    assert unchanged.status_code == 200
    assert (unchanged.get_json()["description"], unchanged.get_json()["folder"]) == ("Helpdesk", "INBOX")


def test_unknown_paths_and_methods_answer_json(api):
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.is_json and "error" in missing.get_json()
    wrong_method = api.put("/api/v1/credentials", json={})
    assert wrong_method.status_code == 405 and wrong_method.is_json and "error" in wrong_method.get_json()


def test_a_credential_in_use_is_not_deleted_and_the_answer_names_its_aliases(api):
    credential = api.post("/api/v1/credentials", json={
        "name": "Support", "description": "x", "host": "imap.example.com", "port": 993, "security": "ssl_tls",
        "username": "help@example.com", "password": "pw"}).get_json()
    alias = matches_spec(api.post("/api/v1/aliases", json={"address": "help@example.com",
                                                           "credential_id": credential["id"], "client": "ACME"}),
                         "/aliases", "POST").get_json()
    refused = matches_spec(api.delete(f"/api/v1/credentials/{credential['id']}"), "/credentials/{row_id}", "DELETE")
    assert refused.status_code == 409
    assert refused.get_json()["aliases"] == [{"id": alias["id"], "address": "help@example.com"}]
    renamed = api.patch(f"/api/v1/aliases/{alias['id']}", json={"client": "Globex"})
    assert matches_spec(renamed, "/aliases/{row_id}", "PATCH").get_json()["client"] == "Globex"
    assert matches_spec(api.get("/api/v1/aliases"), "/aliases", "GET").get_json()["total"] == 1
    assert api.delete(f"/api/v1/aliases/{alias['id']}").status_code == 204
    assert api.delete(f"/api/v1/credentials/{credential['id']}").status_code == 204


def test_groups_over_the_api(api):
    group = matches_spec(api.post("/api/v1/groups", json={"name": "Customers"}), "/groups", "POST").get_json()
    assert group["credential_count"] == 0 and group["is_default"] is False
    duplicate = api.post("/api/v1/groups", json={"name": "customers"})
    assert duplicate.status_code == 422 and duplicate.get_json()["errors"]["name"]
    api.post("/api/v1/credentials", json={"name": "C", "description": "x", "host": "imap.example.com", "port": 993,
                                          "security": "ssl_tls", "username": "c@example.com", "password": "pw",
                                          "group_id": group["id"]})
    held = matches_spec(api.delete(f"/api/v1/groups/{group['id']}"), "/groups/{row_id}", "DELETE")
    assert held.status_code == 409 and held.get_json()["credential_count"] == 1
    default = next(g for g in api.get("/api/v1/groups").get_json()["items"] if g["is_default"])
    assert api.delete(f"/api/v1/groups/{default['id']}").status_code == 409
    renamed = api.patch(f"/api/v1/groups/{group['id']}", json={"name": "Clients"})
    assert matches_spec(renamed, "/groups/{row_id}", "PATCH").get_json()["name"] == "Clients"


def test_odd_ids_are_not_found_rather_than_errors(api):
    for credential_id in (2**70, True, "1", None):
        response = api.post(URL, json={"credential_id": credential_id})
        assert response.status_code == 404, credential_id


def test_the_api_acts_as_the_token_user(api):
    api.post("/api/v1/groups", json={"name": "Customers"})
    with models.db.connection_context():
        event = models.AuditEvent.get(models.AuditEvent.action == "create")
    assert (event.actor, event.entry_name) == ("admin", "Customers")


# Issue "What a new user, a security review and servers other than Dovecot found".

def test_a_duplicate_mailbox_is_named_once_under_entry(api):
    body = {"name": "Support", "description": "x", "host": "imap.example.com", "username": "help@example.com",
            "password": "pw"}
    assert api.post("/api/v1/credentials", json=body).status_code == 201
    refused = matches_spec(api.post("/api/v1/credentials", json={**body, "name": "Second"}), "/credentials", "POST")
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {
        "_entry": ["'Support' already uses this protocol, host, port, username and folder."]}


def test_an_alias_names_its_credential_as_credential_id_only(api):
    credential = api.post("/api/v1/credentials", json={
        "name": "Support", "description": "x", "host": "imap.example.com", "username": "help@example.com",
        "password": "pw"}).get_json()
    alias = api.post("/api/v1/aliases", json={"address": "help@example.com", "credential_id": credential["id"]})
    assert set(alias.get_json()) == {"id", "address", "credential_id", "workspace", "project_type", "client",
                                     "description"}
    listed = matches_spec(api.get("/api/v1/aliases"), "/aliases", "GET").get_json()["items"]
    assert "credential" not in listed[0] and listed[0]["credential_id"] == credential["id"]


def test_a_left_out_port_is_the_standard_port_of_protocol_and_security(api):
    body = {"name": "Support", "description": "x", "host": "imap.example.com", "username": "help@example.com",
            "password": "pw"}
    ports = {}
    for protocol, security in (("IMAP", "ssl_tls"), ("IMAP", "starttls"), ("POP3", "ssl_tls"), ("POP3", "starttls")):
        created = api.post("/api/v1/credentials", json={
            **body, "name": f"{protocol} {security}", "username": f"{protocol}.{security}@example.com",
            "protocol": protocol, "security": security})
        assert created.status_code == 201, created.get_json()
        ports[(protocol, security)] = created.get_json()["port"]
    assert ports == {("IMAP", "ssl_tls"): 993, ("IMAP", "starttls"): 143, ("POP3", "ssl_tls"): 995,
                     ("POP3", "starttls"): 110}
    unknown = api.post("/api/v1/credentials", json={**body, "security": "carrier-pigeon"})
    assert unknown.status_code == 422 and "security" in unknown.get_json()["errors"]


def test_control_characters_are_refused_in_the_api_too(api):
    body = {"name": "Support\r\nINFO forged", "description": "x", "host": "imap.example.com",
            "username": "help@example.com", "password": "pw", "custom_data": [{"key": "a\tb", "value": "1"}]}
    refused = matches_spec(api.post("/api/v1/credentials", json=body), "/credentials", "POST")
    assert refused.status_code == 422
    errors = refused.get_json()["errors"]
    assert errors["name"] == ["Line breaks and other control characters are not allowed here."]
    assert "Row 1, key: Line breaks and other control characters are not allowed here." in errors["custom_data"]
    group = api.post("/api/v1/groups", json={"name": "Team", "description": "one\ntwo"})
    assert group.status_code == 422 and group.get_json()["errors"]["description"]


def test_a_stored_secret_changes_through_its_own_route_only_and_is_never_answered(app, api):
    created = api.post("/api/v1/credentials", json={"name": "Support", "description": "x", "host": "imap.example.com",
                                                    "username": "help@example.com", "password": "first"})
    path = created.headers["Location"]
    typed_over = api.patch(path, json={"password": CANARY})
    assert typed_over.status_code == 422 and "its own step" in typed_over.get_json()["errors"]["password"][0]
    changed = matches_spec(api.put(f"{path}/secrets/password", json={"value": CANARY}),
                           "/credentials/{row_id}/secrets/{name}", "PUT")
    assert changed.status_code == 204 and changed.get_data() == b""
    with models.db.connection_context():
        credential = Credential.get_by_id(created.get_json()["id"])
        assert credential.unseal(app.extensions["mailkeep.keyring"], "password") == CANARY
        event = models.AuditEvent.select().order_by(models.AuditEvent.id.desc()).get()
    assert (event.action, event.actor, event.entry_name, event.details) == (
        "secret_change", "admin", "Support", "password changed")
    for value, message in (("", "Send the new value; it cannot be empty."), (None, "Send the new value"),
                           ("new\r\nA1 LOGOUT", "Line breaks and other control characters are not allowed here.")):
        refused = matches_spec(api.put(f"{path}/secrets/password", json={"value": value}),
                               "/credentials/{row_id}/secrets/{name}", "PUT")
        assert refused.status_code == 422 and refused.get_json()["errors"]["value"][0].startswith(message)
    assert api.put(f"{path}/secrets/pin", json={"value": "x"}).status_code == 404
    assert api.put("/api/v1/credentials/999/secrets/password", json={"value": "x"}).status_code == 404
    assert api.put(f"{path}/secrets/password", data="value=x").status_code == 415
    with models.db.connection_context():
        assert Credential.get_by_id(created.get_json()["id"]).unseal(app.extensions["mailkeep.keyring"],
                                                                     "password") == CANARY


def test_the_list_filters_by_how_a_credential_logs_in(api):
    api.post("/api/v1/credentials", json={"name": "Alpha", "description": "x", "host": "imap.example.com",
                                          "username": "a@example.com", "password": "pw"})
    api.post("/api/v1/credentials", json={"name": "Beta", "description": "x", "host": "imap.example.com",
                                          "username": "b@example.com", "auth": "oauth2_client_credentials",
                                          "client_id": "c", "client_secret": "s",
                                          "token_url": "https://login.example.com/token"})
    for auth, expected in (("password", ["Alpha"]), ("oauth2_client_credentials", ["Beta"]), ("", ["Alpha", "Beta"])):
        listed = matches_spec(api.get(f"/api/v1/credentials?auth={auth}"), "/credentials", "GET").get_json()
        assert [item["name"] for item in listed["items"]] == expected, auth
