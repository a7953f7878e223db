"""Reading a connection: service accounts get everything a client needs, the secret included, after the read
is in the audit log; people never; an account outside its grants learns nothing."""

import json
import ssl
import threading

import pytest
from imapclient import IMAPClient
from peewee import OperationalError

import audit
import database
import models
import sealing
from api_spec import matches_spec
from models import AuditEvent, Credential, SecretRead, SecretVersion
from readers import READ, TEST, account, client_of, saved
from services import serving, versions
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET, MAILBOX_USER, holds_canary, recorded_body
from views import serving as serving_views


def reads_of(credential_id):
    with models.db.connection_context():
        return list(AuditEvent.select().where((AuditEvent.action == "secret_read")
                                              & (AuditEvent.entry_id == credential_id)).order_by(AuditEvent.id))


def test_a_service_account_reads_everything_a_client_needs_and_the_read_is_audited(app):
    credential = saved(app, group="Helpdesk")
    helpdesk = account(groups=["Helpdesk"])
    client = client_of(app, helpdesk, address="192.0.2.10")
    response = matches_spec(client.get(f"/api/v1/credentials/{credential.id}/connection"),
                            "/credentials/{row_id}/connection")
    answer = response.get_json()
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert {key: answer[key] for key in ("protocol", "host", "port", "security", "username", "folder", "auth")} == {
        "protocol": "IMAP", "host": "imap.example.com", "port": 993, "security": "ssl_tls",
        "username": "help@example.com", "folder": "INBOX", "auth": "password"}
    assert answer["password"] == CANARY and answer["version"] == 1 and answer["version_state"] == "current"
    assert answer["set_at"].endswith("Z") and "access_token" not in answer and "client_secret" not in answer
    [event] = reads_of(credential.id)
    assert (event.actor, event.entry_name, event.outcome) == ("service:helpdesk", "Support", "ok")
    assert event.details == "current version 1 of the password, with the token tests (#1), from 192.0.2.10"
    with models.db.connection_context():
        assert SecretRead.get().count == 1


def test_a_person_never_reads_a_connection(app, api):
    credential = saved(app)
    account(groups=["Default"])
    for client in (api, app.test_client()):
        response = client.get(f"/api/v1/credentials/{credential.id}/connection")
        assert response.status_code in (401, 403) and CANARY not in response.get_data(as_text=True)
    assert api.get(f"/api/v1/credentials/{credential.id}/connection").status_code == 403
    assert "no person" in api.get(f"/api/v1/credentials/{credential.id}/connection").get_json()["error"]
    assert reads_of(credential.id) == []


def test_an_account_outside_its_grants_learns_nothing_of_what_exists(app):
    inside = saved(app, name="Inside", group="Helpdesk", username="in@example.com")
    outside = saved(app, name="Outside", group="Billing", username="out@example.com")
    single = saved(app, name="Single", group="Billing", username="single@example.com")
    client = client_of(app, account(groups=["Helpdesk"], credentials=[single]))
    assert client.get(f"/api/v1/credentials/{inside.id}/connection").status_code == 200
    assert client.get(f"/api/v1/credentials/{single.id}/connection").status_code == 200  # granted by itself
    hidden, missing = (client.get(f"/api/v1/credentials/{row_id}/connection") for row_id in (outside.id, 999))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json()["error"].replace(str(outside.id), "N") == missing.get_json()["error"].replace("999", "N")
    assert reads_of(outside.id) == []


def test_an_alias_answers_its_credential_and_where_its_mail_goes_by_id_or_address(app):
    credential = saved(app, group="Helpdesk")
    with models.db.connection_context():
        alias = models.Alias.create(address="support@example.com", credential=credential, workspace="Helpdesk",
                                    project_type="Ticket", client="ACME")
        models.Alias.create(address="other@example.com", credential=saved(app, name="Other", group="Billing",
                                                                          username="o@example.com"))
    client = client_of(app, account(groups=["Helpdesk"]))
    by_id = matches_spec(client.get(f"/api/v1/aliases/{alias.id}/connection"), "/aliases/{row_id}/connection")
    by_address = matches_spec(client.get("/api/v1/aliases/by-address/Support@Example.COM/connection"),
                              "/aliases/by-address/{address}/connection")
    assert by_id.get_json() == by_address.get_json()
    assert by_id.get_json()["alias"] == {"id": alias.id, "address": "support@example.com", "workspace": "Helpdesk",
                                         "project_type": "Ticket", "client": "ACME"}
    assert by_id.get_json()["password"] == CANARY and by_id.get_json()["credential_id"] == credential.id
    assert client.get("/api/v1/aliases/by-address/other@example.com/connection").status_code == 404
    assert client.get("/api/v1/aliases/by-address/nobody@example.com/connection").status_code == 404
    assert "through the alias support@example.com" in reads_of(credential.id)[0].details
    too_long = client.get(f"/api/v1/aliases/by-address/{'a' * 321}/connection")
    assert too_long.status_code == 404


def test_scopes_networks_and_expiry_are_checked_before_anything_is_looked_up(app):
    credential = saved(app)
    url = f"/api/v1/credentials/{credential.id}/connection"
    tester = client_of(app, account("tester", scopes=(TEST,), groups=["Default"]))
    assert tester.get(url).status_code == 403 and "connection:read" in tester.get(url).get_json()["error"]
    office = account("office", groups=["Default"], networks="10.0.0.0/8, 2001:db8::/32")
    assert client_of(app, office, address="10.1.2.3").get(url).status_code == 200
    assert client_of(app, office, address="::ffff:10.1.2.3").get(url).status_code == 200
    assert client_of(app, office, address="2001:db8::5").get(url).status_code == 200
    elsewhere = client_of(app, office, address="192.0.2.1").get(url)
    assert elsewhere.status_code == 403 and "192.0.2.1" in elsewhere.get_json()["error"]
    expired = client_of(app, account("old", groups=["Default"]), expired=True).get(url)
    assert expired.status_code == 401 and "expired" in expired.get_json()["error"]
    assert client_of(app, token="mks_not-a-token").get(url).status_code == 401
    assert [event.actor for event in reads_of(credential.id)] == ["service:office"] * 3


def test_a_service_account_is_refused_on_every_route_for_people(app):
    client = client_of(app, account(scopes=(READ, TEST), groups=["Default"]))
    for url in ("/api/v1/credentials", "/api/v1/service-accounts", "/api/v1/groups"):
        response = client.get(url)
        assert response.status_code == 403 and "for people" in response.get_json()["error"]
    assert client.get("/credentials/").status_code == 302  # a page knows no service token


def test_a_service_account_tests_only_the_saved_credentials_it_may_read(app, dovecot):
    inside = saved(app, group="Helpdesk", host="localhost", port=dovecot.imaps_port, username=MAILBOX_USER)
    outside = saved(app, name="Outside", group="Billing", host="localhost", port=dovecot.imaps_port,
                    username="someone@example.test")
    client = client_of(app, account(scopes=(TEST,), groups=["Helpdesk"]))
    tested = client.post("/api/v1/connection-tests", json={"credential_id": inside.id})
    assert tested.status_code == 200 and tested.get_json()["ok"] is True
    assert client.post("/api/v1/connection-tests", json={"credential_id": outside.id}).status_code == 404
    assert client.post("/api/v1/connection-tests", json={"credential_id": True}).status_code == 404
    settings = client.post("/api/v1/connection-tests", json={"host": "localhost", "port": 993})
    assert settings.status_code == 422 and "saved credentials only" in settings.get_json()["error"]
    with models.db.connection_context():
        event = AuditEvent.select().where(AuditEvent.action == "connection_test").get()
        assert event.actor == "service:helpdesk" and Credential.get_by_id(inside.id).last_test_ok is True


# The audit event is written and committed before the answer with the secret is built.

def test_a_read_that_cannot_be_audited_sends_no_secret(app, monkeypatch):
    credential = saved(app)
    client = client_of(app, account(groups=["Default"]))
    record = audit.record

    def failing(action, *args, **kwargs):
        if action == "secret_read":
            raise OperationalError("disk I/O error")
        return record(action, *args, **kwargs)

    unsealed = []
    monkeypatch.setattr(audit, "record", failing)
    # Every stored secret (a credential's, a version's) is opened through sealing.Sealed.unseal.
    monkeypatch.setattr(sealing.Sealed, "unseal", lambda self, *args, **kwargs: unsealed.append(self) or CANARY)
    response = client.get(f"/api/v1/credentials/{credential.id}/connection")
    assert response.status_code == 503 and "no secret was sent" in response.get_json()["error"]
    assert set(response.get_json()) == {"error"} and unsealed == []
    assert reads_of(credential.id) == []
    with models.db.connection_context():
        assert SecretRead.select().count() == 0  # the count went with the event


def test_the_read_is_committed_before_the_secret_is_read(app, monkeypatch):
    credential = saved(app)
    client = client_of(app, account(groups=["Default"]))
    seen_by_another_connection = []
    unseal = sealing.Sealed.unseal

    def look_first(self, *args, **kwargs):
        # What another connection sees now is what is committed: the read must be there already.
        thread = threading.Thread(target=lambda: seen_by_another_connection.append(len(reads_of(credential.id))))
        thread.start()
        thread.join()
        return unseal(self, *args, **kwargs)

    monkeypatch.setattr(sealing.Sealed, "unseal", look_first)
    assert client.get(f"/api/v1/credentials/{credential.id}/connection").status_code == 200
    assert seen_by_another_connection == [1]


def test_a_rotation_between_reading_the_credential_and_its_versions_sends_the_version_it_names(app, monkeypatch):
    credential = saved(app)
    client = client_of(app, account(groups=["Default"]))
    serving_version = versions.serving

    def rotated_in_between(read, which, at=None):
        # Another request's rotation commits after `read` (the credential's row) was read, before its versions.
        versions.change_secret(Credential.get_by_id(read.id), "password", "rotated in between", actor="admin")
        return serving_version(read, which, at)

    monkeypatch.setattr(versions, "serving", rotated_in_between)
    answer = client.get(f"/api/v1/credentials/{credential.id}/connection").get_json()
    with models.db.connection_context():
        second = SecretVersion.get((SecretVersion.credential == credential.id) & (SecretVersion.number == 2))
    assert (answer["version"], answer["set_at"], answer["password"]) == (
        2, second.created_at.isoformat() + "Z", "rotated in between")
    assert reads_of(credential.id)[0].details.startswith("current version 2 of the password")


def test_a_version_forgotten_after_the_read_was_logged_is_logged_as_not_sent(app, monkeypatch):
    credential = saved(app)
    client = client_of(app, account(groups=["Default"]))
    serving_version = versions.serving

    def forgotten_after(read, which, at=None):
        served = serving_version(read, which, at)
        SecretVersion.delete().where(SecretVersion.id == served.version.id).execute()  # pruned by another request
        return served

    monkeypatch.setattr(versions, "serving", forgotten_after)
    answer = client.get(f"/api/v1/credentials/{credential.id}/connection")
    assert answer.status_code == 410 and "password" not in answer.get_json()
    assert [event.outcome for event in reads_of(credential.id)] == ["ok", "gone"]  # logged, then not sent


def test_reads_are_rate_limited_per_service_account(app):
    app.config["SERVICE_READ_RATE_LIMIT"] = "2 per minute"
    credential = saved(app)
    busy, other = account("busy", groups=["Default"]), account("other", groups=["Default"])
    first, second = client_of(app, busy), client_of(app, busy, address="192.0.2.7")  # another token, elsewhere
    assert [first.get(f"/api/v1/credentials/{credential.id}/connection").status_code for _ in range(2)] == [200, 200]
    refused = second.get("/api/v1/aliases/by-address/x@example.com/connection")  # the routes share the count
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert client_of(app, other).get(f"/api/v1/credentials/{credential.id}/connection").status_code == 200


def test_a_secret_that_cannot_be_read_is_an_error_without_it(app):
    credential = saved(app)
    with models.db.connection_context():  # the stored secret and its version alike
        Credential.update(password_ciphertext="mk1$0000000000000000$AAAA").where(
            Credential.id == credential.id).execute()
        SecretVersion.update(value_ciphertext="mk1$0000000000000000$AAAA").where(
            SecretVersion.credential == credential.id).execute()
    response = client_of(app, account(groups=["Default"])).get(f"/api/v1/credentials/{credential.id}/connection")
    assert response.status_code == 500 and "cannot be read" in response.get_json()["error"]
    assert [event.outcome for event in reads_of(credential.id)] == ["ok", "failed"]


def test_a_credential_without_its_secret_has_nothing_to_serve(app):
    with models.db.connection_context():
        credential = Credential.create(name="Empty", description="x", group=models.Group.default(),
                                       host="imap.example.com", port=993, username="e@example.com")
    response = client_of(app, account(groups=["Default"])).get(f"/api/v1/credentials/{credential.id}/connection")
    assert response.status_code == 409 and reads_of(credential.id) == []


# OAuth2: a fresh access token that works, never the client secret.

def oauth2_credential(app, dovecot, token_server, client_id=CLIENT_ID):
    return saved(app, name="Integration", host="localhost", port=dovecot.imaps_port, username=MAILBOX_USER,
                 auth="oauth2_client_credentials", client_id=client_id, token_url=token_server.token_url,
                 password=CLIENT_SECRET)


def test_an_oauth2_connection_answers_an_access_token_that_logs_in_and_never_the_client_secret(
        app, dovecot, token_server):
    credential = oauth2_credential(app, dovecot, token_server)
    response = matches_spec(client_of(app, account(groups=["Default"])).get(
        f"/api/v1/credentials/{credential.id}/connection"), "/credentials/{row_id}/connection")
    answer = response.get_json()
    assert response.status_code == 200 and answer["auth"] == "oauth2_client_credentials"
    assert "password" not in answer and answer["token_type"] == "Bearer"
    assert answer["access_token_expires_at"].endswith("Z")
    # The test authorization server weaves the canary through its access tokens too: the rest must hold none.
    rest = {name: value for name, value in answer.items() if name != "access_token"}
    assert CLIENT_SECRET not in response.get_data(as_text=True) and not holds_canary(json.dumps(rest).encode())
    with IMAPClient("localhost", port=dovecot.imaps_port,
                    ssl_context=ssl.create_default_context(cafile=str(dovecot.ca_file))) as imap:
        imap.oauth2_login(MAILBOX_USER, answer["access_token"])
        assert imap.select_folder("INBOX", readonly=True)[b"EXISTS"] == 3


def test_an_oauth2_grant_that_fails_says_why_without_a_token(app, dovecot, token_server):
    credential = oauth2_credential(app, dovecot, token_server, client_id="no-such-client")
    response = client_of(app, account(groups=["Default"])).get(f"/api/v1/credentials/{credential.id}/connection")
    body = response.get_json()
    assert response.status_code == 502 and body["cause"]["code"] == "token_request_failed"
    assert "access_token" not in body and not holds_canary(response.get_data())
    assert [event.outcome for event in reads_of(credential.id)] == ["ok", "token_request_failed"]


# The canary check's one exception.

@pytest.mark.parametrize("database_kind", ["sqlite"])
def test_the_canary_may_be_only_in_the_secret_of_a_connection_answer_to_a_service_account(database_kind):
    endpoint = serving_views.CONNECTION_ENDPOINTS[0]
    answer = b'{"host": "imap.example.com", "password": "%s", "username": "help@example.com"}' % CANARY.encode()
    leaky = answer.replace(b"help@", CANARY.encode() + b"@")
    check = {"connection_endpoints": serving_views.CONNECTION_ENDPOINTS, "secret_fields": serving.SECRET_FIELDS}
    assert not holds_canary(recorded_body(answer, endpoint=endpoint, status=200, service_account=object(), **check))
    assert holds_canary(recorded_body(leaky, endpoint=endpoint, status=200, service_account=object(), **check))
    for other in ({"endpoint": endpoint, "status": 200, "service_account": None},
                  {"endpoint": endpoint, "status": 500, "service_account": object()},
                  {"endpoint": "api.credentials", "status": 200, "service_account": object()}):
        assert holds_canary(recorded_body(answer, **other, **check)), other


def test_the_canary_is_nowhere_else_after_reads_of_every_kind(app, tmp_path):
    """After reads (current, previous, by alias id and address) the canary check of this test runs over the
    log, the audit log and the database files: only the connection answers' secret fields may have held it."""
    credential = saved(app)  # the canary is version 1...
    rotated = f"next-{CANARY}"  # ...and in version 2 too, so every read below sends it
    with app.app_context(), models.db.connection_context():
        alias = models.Alias.create(address="support@example.com", credential=credential)
        versions.change_secret(Credential.get_by_id(credential.id), "password", rotated, actor="admin",
                               grace_seconds=3600)
    client = client_of(app, account(groups=["Default"]))
    sent = {}
    for path in (f"/api/v1/credentials/{credential.id}/connection", f"/api/v1/aliases/{alias.id}/connection",
                 "/api/v1/aliases/by-address/support@example.com/connection"):
        for which in ("current", "previous"):
            answer = client.get(f"{path}?version={which}")
            assert answer.status_code == 200, (path, which)
            sent[path, which] = answer.get_json()["version"], answer.get_json()["password"]
    assert set(sent.values()) == {(2, rotated), (1, CANARY)} and len(sent) == 6
    assert [event.details.split(" of ")[0] for event in reads_of(credential.id)] == [
        "current version 2", "previous version 1"] * 3
    with models.db.connection_context():
        details = " ".join(event.details for event in AuditEvent.select())
    assert not holds_canary(details.encode())
    database.wipe_freed_pages()


def test_an_oauth2_read_with_every_outbound_slot_taken_answers_429_without_a_token(
        app, dovecot, token_server, monkeypatch):
    credential = oauth2_credential(app, dovecot, token_server)
    monkeypatch.setitem(app.extensions, "mailkeep.test_slots", threading.Semaphore(0))  # none free
    response = client_of(app, account(groups=["Default"])).get(f"/api/v1/credentials/{credential.id}/connection")
    assert response.status_code == 429 and "access_token" not in response.get_json()
    assert [event.outcome for event in reads_of(credential.id)] == ["ok", "busy"]
