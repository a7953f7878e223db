"""services.oauth_tokens: the one way to get an access token for a credential (what served connections and
scheduled checks call), and the keep-alive that refreshes sign-ins before their provider's inactivity limit,
on an injected clock."""

import json
import ssl
from datetime import timedelta

import pytest
from imapclient import IMAPClient

import health
import models
import worker
from models import AuditEvent, Credential, CredentialCheck, NotificationEvent, OAuthApp
from probe import protocols
from readers import account, client_of
from services import checks, oauth_tokens, scheduler
from sign_in import credential_form, registered_app, signed_in_credential, start, stored_refresh_token
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET, MAILBOX_USER, holds_canary, stored_credential

NOW = models.utcnow().replace(microsecond=0)


@pytest.fixture
def context(app):
    with app.test_request_context(), models.db.connection_context():
        yield


def token_requests(token_server):
    return len([entry for entry in token_server.requests if entry["path"] == "/token"])


def client_credentials(app, token_server):
    with models.db.connection_context():
        return models.Credential().store(app.extensions["mailkeep.keyring"], dict(
            name="App-only", description="Shared mailbox", group=models.Group.default(), protocol="IMAP",
            host="localhost", port=993, security="ssl_tls", username=MAILBOX_USER, folder="INBOX",
            auth=protocols.OAUTH2, client_id=CLIENT_ID, token_url=token_server.token_url, scope="mail"),
            {"client_secret": CLIENT_SECRET})


def test_client_credentials_get_a_token_which_is_handed_out_again_until_near_its_end(app, token_server, context):
    credential = client_credentials(app, token_server)
    asked = token_requests(token_server)
    first = oauth_tokens.access_token_for(credential.id)
    assert first.token.startswith("at-") and first.expires_at is not None
    assert oauth_tokens.access_token_for(credential) == first  # cached in this process
    assert token_requests(token_server) == asked + 1
    assert oauth_tokens.access_token_for(credential.id, fresh=True) != first
    near_the_end = first.expires_at.replace(tzinfo=None) - timedelta(seconds=60)
    assert oauth_tokens.access_token_for(credential.id, now=near_the_end).token != first.token
    assert CANARY not in repr(first)


def test_a_signed_in_credential_gets_a_token_and_its_refresh_token_is_kept(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    before = stored_refresh_token(app, credential.id)
    with app.test_request_context(), models.db.connection_context():
        token = oauth_tokens.access_token_for(credential.id, now=NOW)
        assert token.token.startswith("at-")
        assert Credential.get_by_id(credential.id).oauth_used_at == NOW
    after = stored_refresh_token(app, credential.id)
    assert after != before and token_server.refresh_token_works(after) and not token_server.refresh_token_works(before)


def test_consent_gone_password_logins_and_missing_sign_ins_are_named(app, client, token_server, dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    token_server.revoke_consent(MAILBOX_USER)
    with app.test_request_context(), models.db.connection_context():
        with pytest.raises(oauth_tokens.ConsentRequired) as refused:
            oauth_tokens.access_token_for(credential.id, fresh=True)
        assert refused.value.code == "oauth_consent_required"
        assert refused.value.cause.server_reply == "invalid_grant: The user has withdrawn consent."
        password = stored_credential(app.extensions["mailkeep.keyring"], name="Password", username="p@example.com")
        with pytest.raises(oauth_tokens.TokenUnavailable) as not_oauth:
            oauth_tokens.access_token_for(password)
        assert not_oauth.value.code == "no_token_login"
        Credential.update(auth=protocols.OAUTH2_SIGN_IN).where(Credential.id == password.id).execute()
        with pytest.raises(oauth_tokens.TokenUnavailable) as unsigned:
            oauth_tokens.access_token_for(password)
        assert unsigned.value.code == "not_signed_in" and "Sign in first" in unsigned.value.reason


def used_on(credential_id, moment):
    with models.db.connection_context():
        Credential.update(oauth_used_at=moment).where(Credential.id == credential_id).execute()


def test_refresh_due_refreshes_only_sign_ins_about_to_lapse(app, client, token_server, dovecot):
    """The test provider's refresh tokens lapse after 90 days unused; with a 14-day margin the keep-alive
    refreshes those unused for 76 days or more, and no other."""
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    used_on(credential.id, NOW - timedelta(days=75))
    with app.test_request_context(), models.db.connection_context():
        assert oauth_tokens.refresh_due(NOW) == []
        before = stored_refresh_token(app, credential.id)
        later = NOW + timedelta(days=2)  # 77 days unused now
        done = oauth_tokens.refresh_due(later)
        assert [(kept.credential_id, kept.ok) for kept in done] == [(credential.id, True)]
        assert Credential.get_by_id(credential.id).oauth_used_at == later
        assert oauth_tokens.refresh_due(later + timedelta(days=1)) == []  # used a day ago: not due
        event = AuditEvent.select().where(AuditEvent.action == "oauth_refresh").get()
        assert (event.actor, event.outcome) == (oauth_tokens.KEEP_ALIVE, "ok")
    after = stored_refresh_token(app, credential.id)
    assert after != before and token_server.refresh_token_works(after)


def test_the_margin_is_configurable_and_unknown_limits_are_left_alone(app, client, token_server, dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    used_on(credential.id, NOW - timedelta(days=50))
    with app.test_request_context(), models.db.connection_context():
        assert oauth_tokens.refresh_due(NOW) == []
        app.config["OAUTH_KEEPALIVE_MARGIN_DAYS"] = 45
        assert [kept.ok for kept in oauth_tokens.refresh_due(NOW)] == [True]
        used_on(credential.id, NOW - timedelta(days=400))
        OAuthApp.update(idle_days=None).execute()
        assert oauth_tokens.refresh_due(NOW) == []


def test_a_lapsed_sign_in_found_by_the_keep_alive_shows_as_failing(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    used_on(credential.id, NOW - timedelta(days=89))
    token_server.fail_next_refresh("invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity.")
    with app.test_request_context(), models.db.connection_context():
        done = oauth_tokens.refresh_due(NOW)
        assert [(kept.ok, kept.code) for kept in done] == [(False, "oauth_consent_required")]
        failing = Credential.get_by_id(credential.id)
        assert failing.last_test_ok is False and failing.last_test_at == NOW
        assert "The provider no longer accepts this sign-in" in failing.last_test_summary
        event = AuditEvent.select().where(AuditEvent.action == "oauth_refresh").get()
        assert event.outcome == "oauth_consent_required"
        # In the check history, and failing at once (a cause that never passes on its own), with a notice.
        check = CredentialCheck.of(credential.id).where(CredentialCheck.actor == oauth_tokens.KEEP_ALIVE).get()
        assert (check.ok, check.cause_code, check.at) == (False, "oauth_consent_required", NOW)
        assert (failing.check_state, failing.check_cause) == (health.FAILING, "oauth_consent_required")
        notice = NotificationEvent.get(NotificationEvent.kind == health.CREDENTIAL_FAILING)
        assert notice.credential_id == credential.id and not holds_canary(notice.details.encode())
        # Only a new sign-in mends it: the next hour's keep-alive leaves it alone.
        assert oauth_tokens.refresh_due(NOW + timedelta(hours=1)) == []


def test_a_service_account_reads_a_signed_in_connection_as_an_access_token_and_the_refresh_token_moves_on(
        app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    before = stored_refresh_token(app, credential.id)
    response = client_of(app, account(groups=["Default"])).get(f"/api/v1/credentials/{credential.id}/connection")
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["auth"] == protocols.OAUTH2_SIGN_IN and answer["access_token"].startswith("at-")
    assert "refresh_token" not in answer and "client_secret" not in answer and "password" not in answer
    after = stored_refresh_token(app, credential.id)
    assert after != before and token_server.refresh_token_works(after)
    with IMAPClient("localhost", port=dovecot.imaps_port,
                    ssl_context=ssl.create_default_context(cafile=str(dovecot.ca_file))) as imap:
        imap.oauth2_login(MAILBOX_USER, answer["access_token"])


def test_the_providers_inactivity_limits(app, context):
    microsoft = OAuthApp(name="M", kind="microsoft", client_id="c")
    google = OAuthApp(name="G", kind="google", client_id="c")
    assert (microsoft.idle_limit_days, google.idle_limit_days) == (90, 180)
    assert OAuthApp(name="C", kind="custom", client_id="c", idle_days=30).idle_limit_days == 30


def test_a_cached_token_is_not_handed_out_once_the_login_changed(app, token_server, context):
    credential = client_credentials(app, token_server)
    assert oauth_tokens.access_token_for(credential.id).token
    Credential.update(client_id="someone-else").where(Credential.id == credential.id).execute()
    with pytest.raises(oauth_tokens.TokenUnavailable) as changed:  # asked again, as the other client
        oauth_tokens.access_token_for(credential.id)
    assert changed.value.code == "token_request_failed" and changed.value.cause.field == "client_secret"


def test_the_worker_keeps_sign_ins_alive_in_one_worker_at_a_time(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    used_on(credential.id, models.utcnow() - timedelta(days=89))
    queue = worker.make_huey(app)
    keep_alive = app.extensions["mailkeep.tasks"]["keep_alive"]
    with queue.lock_task("mailkeep.keep_alive"):
        assert keep_alive.call_local() is None  # another worker is at it
    assert keep_alive.call_local() == 1
    assert keep_alive.call_local() == 0  # used just now: not due again


def test_a_scheduled_check_that_works_stores_the_refresh_token_the_provider_replaced(
        app, client, token_server, dovecot):
    """``flask checks run`` (the worker's checks too: services.scheduler) refreshes with the stored refresh
    token and keeps the one the provider answered, so the next check is not refused as a used-up token."""
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    before = stored_refresh_token(app, credential.id)
    with models.db.connection_context():
        used_before = Credential.get_by_id(credential.id).oauth_used_at
    runner = app.test_cli_runner()
    first = runner.invoke(args=["checks", "run", "--all"])
    assert first.exit_code == 0 and first.output.startswith("1 ok, 0 failing"), first.output
    after = stored_refresh_token(app, credential.id)
    assert after != before
    assert token_server.refresh_token_works(after) and not token_server.refresh_token_works(before)
    with models.db.connection_context():
        check = CredentialCheck.of(credential.id).get()
        assert (check.ok, check.actor) == (True, checks.SCHEDULER)
        assert Credential.get_by_id(credential.id).oauth_used_at > used_before
    again = runner.invoke(args=["checks", "run", "--all"])
    assert again.output.startswith("1 ok, 0 failing"), again.output
    assert stored_refresh_token(app, credential.id) not in (before, after)


def test_a_scheduled_check_of_a_sign_in_whose_consent_is_gone_alerts_at_once(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    token_server.revoke_consent()
    with app.test_request_context(), models.db.connection_context():
        assert scheduler.run_due(everything=True)["failing"] == 1
        failing = Credential.get_by_id(credential.id)
        assert (failing.check_state, failing.check_cause) == (health.FAILING, "oauth_consent_required")
        notice = NotificationEvent.get(NotificationEvent.kind == health.CREDENTIAL_FAILING)
        assert json.loads(notice.details)["field"] == "refresh_token"
        assert not holds_canary(notice.details.encode())


def test_a_sign_ins_refresh_token_is_replaced_by_signing_in_again_never_rotated_by_hand(
        app, client, api, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    refused = api.post(f"/api/v1/credentials/{credential.id}/secret-versions", json={"client_secret": "typed"})
    assert refused.status_code == 422 and "Sign in again" in refused.get_json()["errors"]["refresh_token"][0]
    page = client.get(f"/credentials/{credential.id}").text
    assert "Sign in again on the credential" in page and "Test and rotate" not in page


def test_a_scheduled_check_of_a_sign_in_never_made_says_to_sign_in_at_its_field(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    start(client, credential_form(dovecot, name="Not yet"), oauth_app)  # saved, then the person walked away
    with app.test_request_context(), models.db.connection_context():
        assert scheduler.run_due(everything=True)["failing"] == 1
        waiting = Credential.get(Credential.name == "Not yet")
        assert (waiting.check_state, waiting.check_cause) == (health.FAILING, "secret_missing")
        assert waiting.last_test_summary.startswith("Sign in first")
        details = json.loads(NotificationEvent.get(NotificationEvent.kind == health.CREDENTIAL_FAILING).details)
        assert details["field"] == "refresh_token" and details["message"].startswith("Sign in first")
