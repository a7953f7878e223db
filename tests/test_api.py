"""The JSON API: POST /api/v1/connection-tests with settings or a saved credential's id."""

import threading

import models
from models import Credential, Group
from testdata import CANARY, MAILBOX_USER

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
        credential = Credential().store(
            app.extensions["mailkeep.keyring"], {"password": CANARY}, (), name="Support", description="x",
            group=Group.default(), protocol="IMAP", host="localhost", port=dovecot.imaps_port, security="ssl_tls",
            username=MAILBOX_USER, folder="INBOX",
        )
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
