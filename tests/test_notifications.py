"""Notification channels as admins meet them (the Notifications page and the API), the SMTP relay with its
write-only password, the test email, expiry and rotation warnings, and what a notification says."""

import json
import re
import ssl
from datetime import date, datetime, timedelta, timezone

import pytest

import health
import models
import notifications
from clients import signed_in
from models import AuditEvent, Credential, DeliveryAttempt, NotificationChannel, NotificationEvent, SmtpRelay
from services import scheduler
from smtp_server import SmtpServer
from test_api import matches_spec
from testdata import CANARY, stored_credential
from webhook_receiver import WebhookReceiver

NOW = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


@pytest.fixture
def app_config(app_config, certificates):
    """Mailkeep trusts the CA of the tests' purpose-built TLS servers (the SMTP relay's)."""
    app_config["CA_FILE"] = str(certificates[0])
    return app_config


def test_the_notifications_page_logs_each_delivery_attempt_with_its_time_error_and_duration(app, client, db):
    with WebhookReceiver() as working, WebhookReceiver("error") as failing, app.test_request_context():
        _, working.secret = notifications.create_channel("webhook", "Works", url=working.url, actor="admin")
        _, failing.secret = notifications.create_channel("webhook", "Fails", url=failing.url, actor="admin")
        notifications.publish("test", details={"message": "hello"}, actor="admin", at=NOW)
        notifications.deliver_due(NOW)
        notifications.deliver_due(NOW + timedelta(seconds=30))
    html = client.get("/notifications/").get_data(as_text=True)
    attempts = list(DeliveryAttempt.select().order_by(DeliveryAttempt.id))
    assert [(attempt.ok, attempt.status_code) for attempt in attempts] == [(True, 204), (False, 500), (False, 500)]
    for attempt in attempts:
        said = "ok (HTTP 204)" if attempt.ok else "HTTP 500 (HTTP 500)"
        assert f"{attempt.at:%Y-%m-%d %H:%M:%S}: {said}, {attempt.duration_ms} ms" in html
    retry = NOW + timedelta(seconds=30 + 60)  # the second failure waits twice as long as the first
    assert f"next try {retry:%H:%M:%S}" in html and html.count('class="badge ok">Delivered') == 1


def test_a_webhook_channel_made_through_the_api_answers_its_signing_secret_once(api, app):
    made = matches_spec(api.post("/api/v1/notification-channels", json={
        "kind": "webhook", "name": "Ops", "url": "https://hooks.example.com/mailkeep"}),
        "/notification-channels", "POST")
    assert made.status_code == 201 and made.get_json()["signing_secret"].startswith("whsec_")
    listed = matches_spec(api.get("/api/v1/notification-channels"), "/notification-channels", "GET").get_json()
    assert listed["total"] == 1 and "signing_secret" not in listed["items"][0]
    one = matches_spec(api.get(made.headers["Location"]), "/notification-channels/{row_id}", "GET").get_json()
    assert made.get_json()["signing_secret"] not in str(one)
    turned_off = api.patch(made.headers["Location"], json={"enabled": False})
    assert matches_spec(turned_off, "/notification-channels/{row_id}", "PATCH").get_json()["enabled"] is False
    refused = api.post("/api/v1/notification-channels", json={"kind": "webhook", "name": "Bad", "url": "ftp://x"})
    assert refused.status_code == 422 and "url" in refused.get_json()["errors"]
    assert api.post("/api/v1/notification-channels", json={
        "kind": "email", "name": "Mail", "recipients": ["ops@example.test"], "groups": [999]}).status_code == 422
    assert api.delete(made.headers["Location"]).status_code == 204
    with models.db.connection_context():
        assert NotificationChannel.select().count() == 0
        assert AuditEvent.select().where(AuditEvent.action.startswith("channel_")).count() == 3


def test_the_notifications_page_shows_a_new_webhooks_secret_once_and_the_relay_password_never(app, client):
    page = client.post("/notifications/channels", data={
        "kind": "webhook", "name": "Ops", "url": "https://hooks.example.com/mailkeep", "scope": "all"})
    html = page.get_data(as_text=True)
    secret = html.split('<code class="channel-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    assert secret not in client.get("/notifications/").get_data(as_text=True)
    saved = client.post("/notifications/relay", data={
        "host": "smtp.example.com", "port": "587", "security": "starttls", "username": "mailer",
        "password": CANARY, "sender": "mailkeep@example.com"})
    assert saved.status_code == 303
    page = client.get("/notifications/").get_data(as_text=True)
    assert "Stored encrypted, never shown" in page
    with models.db.connection_context():
        relay = SmtpRelay.current()
        assert relay.unseal(app.extensions["mailkeep.keyring"], "password") == CANARY
    client.post("/notifications/relay", data={"host": "smtp.example.com", "port": "587", "security": "starttls",
                                              "username": "mailer", "password": "", "sender": "mailkeep@example.com"})
    with models.db.connection_context():  # an empty field keeps the stored password
        assert SmtpRelay.current().unseal(app.extensions["mailkeep.keyring"], "password") == CANARY
    plain = client.post("/notifications/relay", data={"host": "smtp.example.com", "port": "25", "security": "none",
                                                      "sender": "mailkeep@example.com"})
    assert "Without TLS only a relay on this machine" in plain.get_data(as_text=True)
    assert signed_in(app, "editor").get("/notifications/").status_code == 403


def test_a_channel_the_page_refuses_says_why_at_the_field_and_keeps_what_was_typed(app, client):
    with models.db.connection_context():
        customers = models.Group.create(name="Customers")
    long_name = "Operations " * 10  # 110 characters
    refused = client.post("/notifications/channels", data={
        "kind": "webhook", "name": long_name, "url": "https://hooks.example.com/mailkeep", "scope": "chosen",
        "groups": [str(customers.id)]})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200
    assert '<small id="channel-name-error">Give the channel a name of at most 100 characters.</small>' in html
    assert 'aria-describedby="channel-name-error" aria-invalid="true" id="channel-name"' in html
    assert f'value="{long_name}"' in html and 'value="https://hooks.example.com/mailkeep"' in html
    assert re.search(r'<input checked [^>]*name="scope" type="radio" value="chosen">', html)
    assert re.search(rf'<input checked [^>]*name="groups" type="checkbox" value="{customers.id}">', html)
    too_long = client.post("/notifications/channels", data={
        "kind": "webhook", "name": "Hook", "url": "https://hooks.example.com/" + "a" * 2000,
        "recipients": "ops@example.test", "scope": "all"}).get_data(as_text=True)
    assert '<small id="channel-url-error">Give the webhook&#39;s https:// URL.</small>' in too_long
    assert 'value="ops@example.test"' in too_long and 'value="Hook"' in too_long
    with models.db.connection_context():
        assert NotificationChannel.select().count() == 0
    # A channel keeps only what its kind uses: an email channel never stores a URL typed beside it.
    assert client.post("/notifications/channels", data={
        "kind": "email", "name": "Mail", "url": "https://hooks.example.com/" + "a" * 2000,
        "recipients": "ops@example.test", "scope": "all"}).status_code == 303
    with models.db.connection_context():
        assert [(channel.url, channel.recipients) for channel in NotificationChannel.select()] == [
            ("", "ops@example.test")]
    # A channel for chosen groups names them in its row.
    assert client.post("/notifications/channels", data={
        "kind": "email", "name": "Customers' mail", "recipients": "ops@example.test", "scope": "chosen",
        "groups": [str(customers.id)]}).status_code == 303
    assert '<td data-label="Groups">Customers</td>' in client.get("/notifications/").get_data(as_text=True)


def test_a_relay_the_page_refuses_keeps_what_was_typed_but_never_the_password(app, client):
    keyring = app.extensions["mailkeep.keyring"]
    settings = {"host": "smtp.example.com", "port": "587", "security": "starttls", "username": "mailer",
                "sender": "mailkeep@example.com"}
    assert client.post("/notifications/relay", data={**settings, "password": CANARY}).status_code == 303
    typed = f"typed-{CANARY}"
    refused = client.post("/notifications/relay", data={
        **settings, "host": "smtp2.example.com", "port": "99999", "username": "other", "password": typed})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200
    assert '<small id="relay-port-error">The port is a number from 1 to 65535.</small>' in html
    assert 'value="smtp2.example.com"' in html and 'value="99999"' in html and 'value="other"' in html
    assert CANARY not in html  # neither the password typed nor the stored one
    assert "Forget the stored password" in html
    with models.db.connection_context():
        relay = SmtpRelay.current()
        assert (relay.host, relay.username, relay.unseal(keyring, "password")) == ("smtp.example.com", "mailer",
                                                                                    CANARY)
    assert client.post("/notifications/relay", data={**settings, "password": "", "forget_password": "y"}
                       ).status_code == 303
    with models.db.connection_context():
        assert not SmtpRelay.current().has_secret("password")
    assert "Forget the stored password" not in client.get("/notifications/").get_data(as_text=True)


def test_a_test_email_goes_to_one_address_and_a_refused_one_stays_in_its_field(app, client):
    refused = client.post("/notifications/test-email", data={"address": "a@example.test, b@example.test"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and "Sent a test email" not in html and "was not sent" not in html
    assert 'aria-describedby="test-address-error" aria-invalid="true" id="test-address"' in html
    assert 'value="a@example.test, b@example.test"' in html
    empty = client.post("/notifications/test-email", data={"address": " "}).get_data(as_text=True)
    assert '<small id="test-address-error">Give one email address.</small>' in empty


def test_the_test_email_goes_through_a_relay_that_wants_starttls_and_a_password(app, client, certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates[1], certificates[2])
    with SmtpServer(username="mailer", password=CANARY, tls=context) as smtp:
        client.post("/notifications/relay", data={
            "host": "127.0.0.1", "port": str(smtp.port), "security": "starttls", "username": "mailer",
            "password": CANARY, "sender": "mailkeep@example.test"})
        sent = client.post("/notifications/test-email", data={"address": "me@example.test"})
        assert "Sent a test email to me@example.test." in sent.get_data(as_text=True)
        assert [(to, message["Subject"]) for to, message in smtp.messages] == [
            (["me@example.test"], "[Mailkeep] Test email")]
        client.post("/notifications/relay", data={
            "host": "127.0.0.1", "port": str(smtp.port), "security": "starttls", "username": "mailer",
            "password": "not-it", "sender": "mailkeep@example.test"})
        refused = client.post("/notifications/test-email", data={"address": "me@example.test"})
        assert "the SMTP relay refused the username or password" in refused.get_data(as_text=True)


def test_a_channel_for_chosen_groups_hears_only_about_them(app, db):
    keyring = app.extensions["mailkeep.keyring"]
    with WebhookReceiver() as everyone, WebhookReceiver() as customers_only, app.test_request_context():
        customers = models.Group.create(name="Customers")
        _, everyone.secret = notifications.create_channel("webhook", "All", url=everyone.url, actor="admin")
        _, customers_only.secret = notifications.create_channel("webhook", "Customers", url=customers_only.url,
                                                                group_ids=[customers.id], actor="admin")
        inside = stored_credential(keyring, name="Inside", group=customers)
        outside = stored_credential(keyring, name="Outside", username="other@example.com")
        for credential in (inside, outside):
            notifications.publish(health.CREDENTIAL_FAILING, credential=credential, details={"cause": "auth_failed"})
        notifications.deliver_due()
        assert sorted(item["payload"]["data"]["credential"]["name"] for item in everyone.received) == [
            "Inside", "Outside"]
        assert [item["payload"]["data"]["credential"]["name"] for item in customers_only.received] == ["Inside"]


def test_a_client_secret_and_a_password_age_are_warned_of_once_each(app, db):
    keyring = app.extensions["mailkeep.keyring"]
    with app.app_context():
        group = models.Group.create(name="Rotated", password_max_age_days=90)
        credential = stored_credential(keyring, group=group)
        Credential.update(client_secret_expires_on=(NOW + timedelta(days=30)).date(),
                          secret_set_at=NOW - timedelta(days=10)).where(Credential.id == credential.id).execute()
        assert scheduler.sweep(NOW) == {"reminders": 0, "secrets": 0, "rotations": 0}
        assert scheduler.sweep(NOW + timedelta(days=10))["secrets"] == 1  # 20 days left: the 21-day warning
        assert scheduler.sweep(NOW + timedelta(days=11))["secrets"] == 0
        assert scheduler.sweep(NOW + timedelta(days=24))["secrets"] == 1  # 6 days left: the 7-day warning
        assert scheduler.sweep(NOW + timedelta(days=79))["rotations"] == 0
        assert scheduler.sweep(NOW + timedelta(days=81))["rotations"] == 1
        assert scheduler.sweep(NOW + timedelta(days=82))["rotations"] == 0
        kinds = [event.kind for event in NotificationEvent.select().order_by(NotificationEvent.id)]
        assert kinds == [health.SECRET_EXPIRING, health.SECRET_EXPIRING, health.ROTATION_DUE]
        due = json.loads(NotificationEvent.get(NotificationEvent.kind == health.ROTATION_DUE).details)
        assert (due["field"], due["message"]) == ("password", "The password was set more than 90 days ago.")
        # A sign-in's refresh token is renewed by the provider, never due for rotation by people.
        Credential.update(auth="oauth2_sign_in", rotation_warned_at=None).where(
            Credential.id == credential.id).execute()
        assert scheduler.sweep(NOW + timedelta(days=200))["rotations"] == 0
        fresh = Credential.get_by_id(credential.id)  # a new expiry day is warned of afresh
        fresh.client_secret_expires_on = date(2099, 1, 1)
        fresh.save()
        assert Credential.get_by_id(credential.id).secret_warned_days is None


def test_an_email_says_which_credential_what_failed_the_cause_the_field_and_where_to_fix_it(app, db):
    with app.test_request_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"], name="Billing")
        event = notifications.publish(health.CREDENTIAL_FAILING, credential=credential, details={
            "cause": "auth_failed", "message": "The server rejected the username or password.",
            "hint": "Check the Username and the Password.", "field": "password", "summary": "Log in failed."})
        subject, text = notifications.message_of(event)
    assert subject == "[Mailkeep] Billing is failing"
    for words in ("What failed: The server rejected the username or password.", "Field to fix: password",
                  "Cause code: auth_failed", f"Open it: http://127.0.0.1:5000/credentials/{credential.id}/edit#password"):
        assert words in text


@pytest.mark.parametrize("url", ["http://user:pw@hooks.example.com/", "javascript:alert(1)", "https://"])
def test_a_webhook_url_with_credentials_or_no_host_is_refused(app, db, url):
    with app.test_request_context(), pytest.raises(notifications.ChannelError):
        notifications.create_channel("webhook", "Bad", url=url, actor="admin")


def test_an_oauth_apps_client_secret_is_warned_of_once_at_each_warning_with_a_link_to_the_app(app, db):
    with app.test_request_context():
        oauth_app = models.OAuthApp(name="Contoso", kind="custom", authorization_url="https://id.example.com/auth",
                                    token_url="https://id.example.com/token", client_id="mailkeep",
                                    client_secret_expires_on=(NOW + timedelta(days=30)).date())
        oauth_app.save()
        assert scheduler.sweep(NOW)["secrets"] == 0
        assert scheduler.sweep(NOW + timedelta(days=10))["secrets"] == 1  # 20 days left: the 21-day warning
        assert scheduler.sweep(NOW + timedelta(days=11))["secrets"] == 0
        saved = models.OAuthApp.get_by_id(oauth_app.id)
        saved.name = "Contoso mail"  # an edit that keeps the day warns of nothing again
        saved.client_secret_expires_on = saved.client_secret_expires_on
        saved.save()
        assert scheduler.sweep(NOW + timedelta(days=12))["secrets"] == 0
        assert scheduler.sweep(NOW + timedelta(days=24))["secrets"] == 1  # 6 days left: the 7-day warning
        events = list(NotificationEvent.select().where(NotificationEvent.kind == health.SECRET_EXPIRING))
        assert [event.credential_id for event in events] == [None, None]
        details = json.loads(events[-1].details)
        assert details["oauth_app"] == {"id": oauth_app.id, "name": "Contoso mail"} and details["warning_days"] == 7
        subject, text = notifications.message_of(events[-1])
        assert subject == "[Mailkeep] The OAuth app Contoso mail has a client secret that expires soon"
        assert f"/oauth-apps/{oauth_app.id}/edit" in text
        assert notifications.payload_of(events[-1])["data"]["credential"] is None
