"""Scheduled checks and notifications end to end with an injected clock: real Dovecot for the checks, a
real SMTP server (aiosmtpd) for the emails and a real HTTP receiver verifying the webhooks' signatures.

The issue's "done when": a wrong password gives one credential.failing webhook and one email; a silent
server none until its third failure; fixing the password gives credential.recovered."""

from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest

import health
import notifications
from models import Credential, CredentialCheck, HealthChange, NotificationDelivery, NotificationEvent
from servers import SocketServer, never_greet
from services import entries, scheduler
from smtp_server import SmtpServer
from testdata import CANARY, MAILBOX_USER, stored_credential
from webhook_receiver import WebhookReceiver

T0 = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


@pytest.fixture
def app_config(app_config):
    # A silent server is named after half a second instead of five.
    app_config.update(GREETING_TIMEOUT=0.5, CHECK_INTERVAL=900)
    return app_config


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def channels(app, db, receiver, smtp):
    """A webhook channel to the receiver (which learns its signing secret) and an email channel, through a
    relay on loopback."""
    with app.test_request_context():
        _, receiver.secret = notifications.create_channel("webhook", "Ops hook", url=receiver.url, actor="admin")
        notifications.create_channel("email", "Ops mail", recipients="ops@example.test", actor="admin")
        notifications.save_relay(host="127.0.0.1", port=smtp.port, security="none", username="",
                                 sender="mailkeep@example.test", actor="admin")


def at(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.mark.runs_long
def test_a_wrong_password_alerts_at_once_a_silent_server_at_its_third_failure_and_a_fix_recovers(
        app, db, dovecot, channels, receiver, smtp):
    keyring = app.extensions["mailkeep.keyring"]
    with SocketServer(never_greet) as silent, app.app_context():
        wrong = stored_credential(keyring, password="not-the-password", name="Billing", host="localhost",
                                  port=dovecot.imaps_port, username=MAILBOX_USER)
        quiet = stored_credential(keyring, name="Quiet", host="127.0.0.1", port=silent.port, username="q@example.test")

        assert scheduler.run_due(now=at(0), everything=True) == {"ok": 0, "failing": 2, "busy": 0}
        notifications.deliver_due(at(1))
        assert receiver.kinds() == [health.CREDENTIAL_FAILING]
        assert receiver.received[0]["payload"]["data"]["credential"]["name"] == "Billing"
        assert receiver.received[0]["payload"]["data"]["cause"] == "auth_failed"
        assert receiver.received[0]["payload"]["data"]["field"] == "password"
        link = receiver.received[0]["payload"]["data"]["credential"]["url"]
        assert link.endswith(f"/credentials/{wrong.id}/edit#password")
        assert [message["Subject"] for _, message in smtp.messages] == ["[Mailkeep] Billing is failing"]
        assert "The server rejected the username or password." in smtp.messages[0][1].get_content()
        assert receiver.rejected == []

        quiet = Credential.get_by_id(quiet.id)
        assert (quiet.check_state, quiet.check_failures) == (health.UNKNOWN, 1)
        assert quiet.check_due_at == at(0) + timedelta(seconds=60)  # retried after a minute
        assert scheduler.run_due(now=at(59)) == {"ok": 0, "failing": 0, "busy": 0}  # nothing due yet
        assert scheduler.run_due(now=at(61))["failing"] == 1
        notifications.deliver_due(at(62))
        assert Credential.get_by_id(quiet.id).check_failures == 2 and len(receiver.received) == 1
        assert Credential.get_by_id(quiet.id).check_due_at == at(61) + timedelta(seconds=120)
        assert scheduler.run_due(now=at(182))["failing"] == 1  # the third failure
        notifications.deliver_due(at(183))
        assert receiver.kinds() == [health.CREDENTIAL_FAILING] * 2
        assert receiver.received[1]["payload"]["data"]["credential"]["name"] == "Quiet"
        assert receiver.received[1]["payload"]["data"]["cause"] == "greeting_timeout"
        assert len(smtp.messages) == 2

        entries.change_secret(Credential.get_by_id(wrong.id), "password", CANARY, actor="editor")
        assert scheduler.run_due(now=at(200), everything=True)["ok"] == 1
        notifications.deliver_due(at(201))
        # The new password is announced to the tools that use it (services.versions), then its recovery.
        assert receiver.kinds() == [health.CREDENTIAL_FAILING] * 2 + ["secret.rotated", health.CREDENTIAL_RECOVERED]
        assert smtp.messages[-1][1]["Subject"] == "[Mailkeep] Billing works again"
        assert notifications.deliver_due(at(300)) == {"delivered": 0, "retrying": 0, "failed": 0}
        changes = [(change.from_state, change.to_state) for change in
                   HealthChange.select().where(HealthChange.credential == wrong.id).order_by(HealthChange.id)]
        assert changes == [(health.UNKNOWN, health.FAILING), (health.FAILING, health.OK)]
        assert CredentialCheck.select().where(CredentialCheck.credential == quiet.id).count() == 4


def test_a_failing_credential_is_reminded_of_once_a_day_and_never_while_paused(app, db, dovecot, channels, receiver):
    with app.app_context():
        wrong = stored_credential(app.extensions["mailkeep.keyring"], password="nope", host="localhost",
                                  port=dovecot.imaps_port, username=MAILBOX_USER)
        scheduler.run_due(now=at(0), everything=True)
        assert scheduler.sweep(at(3600))["reminders"] == 0
        assert scheduler.sweep(at(24 * 3600))["reminders"] == 1
        assert scheduler.sweep(at(24 * 3600 + 60))["reminders"] == 0
        from services import checks
        checks.set_paused(Credential.get_by_id(wrong.id), True, actor="editor")
        assert scheduler.sweep(at(3 * 24 * 3600))["reminders"] == 0
        notifications.deliver_due(at(3 * 24 * 3600))
        assert receiver.kinds() == [health.CREDENTIAL_FAILING] * 2
        assert receiver.received[1]["payload"]["data"]["reminder"] is True


def test_paused_credentials_are_not_checked_on_schedule(app, db, dovecot):
    with app.app_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"], host="localhost", port=dovecot.imaps_port,
                                       username=MAILBOX_USER)
        from services import checks
        checks.set_paused(credential, True, actor="editor")
        assert scheduler.run_due(now=at(0), everything=True) == {"ok": 0, "failing": 0, "busy": 0}
        checks.set_paused(Credential.get_by_id(credential.id), False, actor="editor")
        assert scheduler.run_due(now=at(1), everything=True)["ok"] == 1
        assert Credential.get_by_id(credential.id).check_state == health.OK


def test_new_credentials_are_spread_over_the_interval(app, db):
    with app.app_context():
        keyring = app.extensions["mailkeep.keyring"]
        for number in range(20):
            stored_credential(keyring, name=f"Box {number}", username=f"box{number}@example.com")
        scheduler.schedule_new(T0)
        due = sorted(Credential.select(Credential.check_due_at).tuples())
        spread = [(moment - T0).total_seconds() for (moment,) in due]
        assert all(0 <= seconds <= 900 for seconds in spread)
        assert max(spread) - min(spread) > 300  # not all at once


def test_a_certificate_nearing_its_expiry_is_warned_of_at_21_days_and_again_at_7(app, db, dovecot, channels,
                                                                                  receiver):
    with app.app_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"], host="localhost", port=dovecot.imaps_port,
                                       username=MAILBOX_USER)
        scheduler.run_due(now=T0, everything=True)
        not_after = Credential.get_by_id(credential.id).certificate_not_after
        assert not_after is not None and Credential.get_by_id(credential.id).certificate_issuer
        for days_before in (30, 20, 19, 6, 5):
            scheduler.run_due(now=not_after - timedelta(days=days_before), everything=True)
        notifications.deliver_due(not_after)
        warnings = [item["payload"]["data"] for item in receiver.received
                    if item["payload"]["type"] == health.CERTIFICATE_EXPIRING]
        assert [warning["warning_days"] for warning in warnings] == [21, 7]


@pytest.mark.runs_long
def test_a_hostile_webhook_target_costs_only_its_own_retries(app, db, smtp):
    """Slow, failing and redirecting targets each end in bounded time, are retried with backoff for at most a
    day and then given up; the email channel is delivered meanwhile, and the redirect is never followed."""
    app.config["NOTIFICATION_TIMEOUT"] = 0.5
    with WebhookReceiver("slow", delay=5) as slow, WebhookReceiver("error") as failing, \
            WebhookReceiver("redirect") as redirecting, WebhookReceiver("drip", delay=5) as dripping, \
            app.test_request_context():
        for number, target in enumerate((slow, failing, redirecting, dripping)):
            _, target.secret = notifications.create_channel("webhook", f"Hook {number}", url=target.url, actor="a")
        notifications.create_channel("email", "Mail", recipients="ops@example.test", actor="admin")
        notifications.save_relay(host="127.0.0.1", port=smtp.port, security="none", username="",
                                 sender="mailkeep@example.test", actor="admin")
        notifications.publish("test", details={"message": "hello"}, actor="admin", at=T0)
        import time
        started = time.monotonic()
        counts = notifications.deliver_due(T0)
        assert time.monotonic() - started < 10  # each hostile target is cut at its timeout
        assert counts == {"delivered": 1, "retrying": 4, "failed": 0}
        assert len(smtp.messages) == 1
        pending = NotificationDelivery.select().where(NotificationDelivery.status == notifications.PENDING)
        assert {row.next_attempt_at for row in pending} == {T0 + timedelta(seconds=30)}
        assert notifications.deliver_due(T0 + timedelta(seconds=29))["retrying"] == 0  # not before its time
        # The retries are about the backoff, not the cut (proven above): cut the hostile targets off sooner.
        app.config["NOTIFICATION_TIMEOUT"] = 0.25
        moment, rounds = T0, 0
        while NotificationDelivery.select().where(NotificationDelivery.status == notifications.PENDING).exists():
            moment = min(row.next_attempt_at for row in NotificationDelivery.select().where(
                NotificationDelivery.status == notifications.PENDING))
            notifications.deliver_due(moment)
            rounds += 1
            assert rounds < 40
        assert moment - T0 <= timedelta(hours=24)
        statuses = {row.channel.name: row.status for row in NotificationDelivery.select()}
        assert statuses == {"Hook 0": "failed", "Hook 1": "failed", "Hook 2": "failed", "Hook 3": "failed",
                            "Mail": "delivered"}
        assert redirecting.requests == rounds + 1  # one request an attempt: the redirect was never followed
        failed = NotificationDelivery.select().where(NotificationDelivery.status == notifications.FAILED)
        hooks = [row.id for row in failed]
        attempts_by_hook = notifications.attempts_of(hooks)
        assert len(hooks) == len(attempts_by_hook) == 4
        for attempts in attempts_by_hook.values():
            times = [row.at for row in attempts]
            gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
            # 30 s, then each wait twice the one before, up to 2 hours apart.
            assert gaps[:4] == [30, 60, 120, 240] and gaps[-1] == 2 * 3600, gaps
            assert all(later == min(2 * earlier, 2 * 3600) for earlier, later in pairwise(gaps)), gaps


def test_a_webhook_to_a_metadata_or_private_address_is_refused_without_dialling(app, db):
    app.extensions["mailkeep.policy"] = app.extensions["mailkeep.policy"].__class__.parse("993", "")
    with WebhookReceiver() as receiver, app.test_request_context():
        _, receiver.secret = notifications.create_channel("webhook", "Local", url=receiver.url, actor="admin")
        notifications.create_channel("webhook", "Metadata", url="http://169.254.169.254/latest", actor="admin")
        notifications.publish("test", details={}, actor="admin", at=T0)
        notifications.deliver_due(T0)
        errors = {row.channel.name: row.last_error for row in NotificationDelivery.select()}
        assert "private or loopback" in errors["Local"] and "metadata" in errors["Metadata"]
        assert receiver.requests == 0


def test_events_roll_back_with_the_change_that_published_them(app, db):
    from database import db as handle
    with app.app_context():
        with pytest.raises(RuntimeError), handle.atomic():
            notifications.publish("test", details={}, actor="admin")
            raise RuntimeError("the change failed")
        assert NotificationEvent.select().count() == 0
