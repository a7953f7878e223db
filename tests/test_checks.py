"""Checks as people and other tools meet them: every check is kept (page, API, command line, scheduler),
"Test all" and its progress, the list's summary and filters, the history section, pausing, the command line
for cron, two worker processes on one database, /metrics and /healthz."""

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import peewee
import pytest

import database
import health
import models
import notifications
from clients import HTMX, signed_in
from models import CheckRun, Credential, CredentialCheck, HealthChange, utcnow
from servers import SocketServer, never_greet
from services import checks, scheduler
from testdata import CANARY, MAILBOX_USER, stored_credential
from webhook_receiver import WebhookReceiver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def app_config(app_config):
    app_config.update(GREETING_TIMEOUT=0.5)
    return app_config


def _dovecot_credential(app, dovecot, **fields):
    with models.db.connection_context():
        values = dict(host="localhost", port=dovecot.imaps_port, username=MAILBOX_USER)
        return stored_credential(app.extensions["mailkeep.keyring"], **{**values, **fields})


def test_every_check_is_kept_whoever_starts_it(app, client, api, dovecot):
    credential = _dovecot_credential(app, dovecot)
    client.post(f"/credentials/{credential.id}/test", headers=HTMX)
    api.post("/api/v1/connection-tests", json={"credential_id": credential.id})
    result = app.test_cli_runner().invoke(args=["credentials", "test", str(credential.id)])
    assert result.exit_code == 0
    with app.app_context(), models.db.connection_context():
        scheduler.run_due(everything=True)
        rows = list(CredentialCheck.of(credential.id))
    assert sorted(row.actor for row in rows) == sorted(["admin", "admin", "(command line)", "(scheduler)"])
    assert all(row.ok and row.duration_ms > 0 and row.certificate_not_after for row in rows)
    assert {row.certificate_issuer for row in rows} != {""}
    page = api.get(f"/api/v1/credentials/{credential.id}/checks?per_page=2").get_json()
    assert page["total"] == 4 and len(page["items"]) == 2 and page["items"][0]["actor"] == "(scheduler)"
    assert page["items"][0]["certificate"]["issuer"]


def test_a_test_of_the_values_on_screen_is_no_check_of_the_credential(app, client, dovecot):
    credential = _dovecot_credential(app, dovecot)
    client.post(f"/credentials/{credential.id}/test-form", data={
        "name": "x", "description": "x", "protocol": "IMAP", "host": "localhost", "port": dovecot.imaps_port,
        "security": "ssl_tls", "username": MAILBOX_USER, "password": CANARY, "folder": "Archive"})
    with models.db.connection_context():
        assert CredentialCheck.select().count() == 0


def test_the_credential_page_shows_its_history_chart_uptime_and_changes(app, client, dovecot):
    credential = _dovecot_credential(app, dovecot, password="wrong")
    with app.app_context(), models.db.connection_context():
        scheduler.run_due(now=utcnow() - timedelta(hours=2), everything=True)
        fixed = Credential.get_by_id(credential.id)
        fixed.seal(app.extensions["mailkeep.keyring"], "password", CANARY)
        fixed.save()
        scheduler.run_due(now=utcnow() - timedelta(hours=1), everything=True)
    html = client.get(f"/credentials/{credential.id}").get_data(as_text=True)
    assert "Health history" in html and "<svg" in html and 'class="chart-bar failed"' in html
    assert 'class="chart-bar ok"' in html and "style=" not in html
    assert "Uptime, 24 h" in html and "Never checked → Failing (auth_failed)" in html
    assert "Failing → OK" in html and "(scheduler)" in html


def test_people_pause_and_resume_scheduled_checks_and_it_is_logged(app, client, dovecot):
    credential = _dovecot_credential(app, dovecot)
    assert client.post(f"/credentials/{credential.id}/pause").status_code == 303
    with models.db.connection_context():
        assert Credential.get_by_id(credential.id).check_paused is True
    swapped = client.post(f"/credentials/{credential.id}/resume", headers=HTMX)
    assert "Pause scheduled checks" in swapped.get_data(as_text=True)
    with models.db.connection_context():
        assert Credential.get_by_id(credential.id).check_paused is False
        assert [change.to_state for change in HealthChange.select().order_by(HealthChange.id)] == [
            health.PAUSED, "resumed"]
        assert models.AuditEvent.select().where(models.AuditEvent.action == "check_pause").count() == 1
    assert signed_in(app, "viewer").post(f"/credentials/{credential.id}/pause").status_code == 403


def test_the_summary_counts_each_state_and_each_count_filters_the_list(app, client, dovecot):
    _dovecot_credential(app, dovecot, name="Works")
    _dovecot_credential(app, dovecot, name="Wrong", password="wrong", folder="Archive")
    _dovecot_credential(app, dovecot, name="Never", folder="Team Inbox")
    with app.app_context(), models.db.connection_context():
        Credential.update(check_due_at=utcnow()).where(Credential.name != "Never").execute()
        Credential.update(check_due_at=utcnow() + timedelta(hours=1)).where(Credential.name == "Never").execute()
        scheduler.run_due()
        scheduler.schedule_new(utcnow())
    html = client.get("/credentials/").get_data(as_text=True)
    assert re.search(r"<strong[^>]*>1</strong> OK", html) and re.search(r"<strong[^>]*>1</strong> Failing", html)
    assert re.search(r"<strong[^>]*>1</strong> Never checked", html)
    assert re.search(r"<strong[^>]*>0</strong> Paused", html)
    assert re.search(r"<strong[^>]*>0</strong> Expiring soon", html)  # the test Dovecot's certificate ends in 30 days
    app.config["EXPIRY_WARNING_DAYS"] = (45, 7)
    assert re.search(r"<strong[^>]*>2</strong> Expiring soon", client.get("/credentials/").text)
    failing = client.get("/credentials/?health=failing", headers=HTMX).get_data(as_text=True)
    assert "Wrong" in failing and "Works" not in failing and "Never" not in failing


def test_the_health_summary_over_the_api(app, api, dovecot):
    _dovecot_credential(app, dovecot, password="wrong")
    with app.app_context(), models.db.connection_context():
        scheduler.run_due(everything=True)
    body = api.get("/api/v1/health").get_json()
    assert body["counts"] == {"ok": 0, "failing": 1, "expiring": 0, "unchecked": 0, "paused": 0}
    assert body["worker_heartbeat"] is None


def test_test_all_checks_the_listed_credentials_and_shows_its_progress(app, client, api, dovecot):
    for number in range(3):
        _dovecot_credential(app, dovecot, name=f"Alpha {number}", folder=["INBOX", "Archive", "Team Inbox"][number])
    _dovecot_credential(app, dovecot, name="Other", username="other@example.test")
    # No worker runs here: the run waits in the queue, and this test does the worker's part.
    started = client.post("/checks/runs", data={"q": "alpha"}, headers=HTMX)
    assert "0 of 3 checked" in started.get_data(as_text=True) and 'hx-trigger="every 1s"' in started.text
    with app.app_context(), models.db.connection_context():
        run = CheckRun.select().order_by(CheckRun.id.desc()).first()
        assert scheduler.unfinished_runs() == [run.id]
        scheduler.work_on_run(run.id)
        assert scheduler.unfinished_runs() == []
    progress = client.get(f"/checks/runs/{run.id}", headers=HTMX).get_data(as_text=True)
    assert "3 of 3 checked (3 OK, 0 failing). Done." in progress and "every 1s" not in progress
    through_api = api.post("/api/v1/check-runs", json={"credential_ids": [1, 2]})
    assert through_api.status_code == 202 and through_api.get_json()["total"] == 2
    followed = api.get(through_api.headers["Location"]).get_json()
    assert followed["total"] == 2 and followed["finished"] is False
    assert signed_in(app, "viewer").post("/checks/runs", data={}).status_code == 403


def test_checks_run_on_the_command_line_runs_what_is_due_once(app, dovecot):
    credential = _dovecot_credential(app, dovecot)
    runner = app.test_cli_runner()
    with models.db.connection_context():
        Credential.update(check_due_at=utcnow() - timedelta(seconds=1)).execute()
    first = runner.invoke(args=["checks", "run"])
    assert first.exit_code == 0 and first.output.startswith("1 ok, 0 failing"), first.output
    assert runner.invoke(args=["checks", "run"]).output.startswith("0 ok, 0 failing")  # not due again
    assert runner.invoke(args=["checks", "run", "--all"]).output.startswith("1 ok, 0 failing")
    with models.db.connection_context():
        assert CredentialCheck.select().where(CredentialCheck.credential == credential.id).count() == 2


@pytest.mark.runs_long
def test_two_worker_processes_on_one_database_run_each_due_check_once(app, app_config, dovecot, tmp_path):
    """Two processes (the command line's ``checks run``, whose claims the huey tasks share) start at once on
    one database; each due check runs once, however their claims interleave. On SQLite and PostgreSQL."""
    keyring = app.extensions["mailkeep.keyring"]
    with SocketServer(never_greet) as silent:
        with models.db.connection_context():
            for number in range(12):  # half a second each (the greeting budget), at most 2 at once per host
                stored_credential(keyring, name=f"Silent {number}", host="127.0.0.1", port=silent.port,
                                  username=f"box{number}@example.test")
            for number, folder in enumerate(["INBOX", "Archive", "Team Inbox"]):
                stored_credential(keyring, name=f"Dovecot {number}", host="localhost", port=dovecot.imaps_port,
                                  username=MAILBOX_USER, folder=folder)
            Credential.update(check_due_at=utcnow() - timedelta(seconds=1)).execute()
        environment = {**os.environ, **{f"MAILKEEP_{name}": str(value) for name, value in app_config.items()
                                        if name not in ("TESTING", "WTF_CSRF_ENABLED")},
                       "MAILKEEP_CA_FILE": str(dovecot.ca_file)}
        processes = [subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "checks", "run"], cwd=ROOT,
            env={**environment, "MAILKEEP_INSTANCE_PATH": str(tmp_path / f"worker-{number}")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for number in range(2)]
        outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    done = [sum(int(n) for n in re.match(r"(\d+) ok, (\d+) failing", out).groups()) for out, _ in outputs]
    assert sum(done) == 15
    with models.db.connection_context():
        counts = [CredentialCheck.select().where(CredentialCheck.credential == credential.id).count()
                  for credential in Credential.select()]
    assert counts == [1] * 15


def test_metrics_need_a_token_or_an_allowed_network(app, api, dovecot):
    _dovecot_credential(app, dovecot, password="wrong")
    with app.app_context(), models.db.connection_context():
        scheduler.run_due(everything=True)
        scheduler.beat()
    anonymous = app.test_client().get("/metrics")
    assert anonymous.status_code == 401
    text = api.get("/metrics").get_data(as_text=True)
    assert 'mailkeep_credentials{state="failing"} 1.0' in text
    assert 'mailkeep_checks_total{cause="auth_failed",outcome="failed"} 1.0' in text
    assert "mailkeep_check_duration_seconds_bucket" in text and "mailkeep_worker_heartbeat_age_seconds" in text
    app.config["METRICS_NETWORKS"] = (ipaddress.ip_network("127.0.0.0/8"),)
    assert app.test_client().get("/metrics").status_code == 200


def test_metrics_count_notification_deliveries_by_outcome_and_refuse_addresses_outside_the_networks(app, api):
    now = utcnow()
    with WebhookReceiver() as receiver, app.test_request_context(), models.db.connection_context():
        _, receiver.secret = notifications.create_channel("webhook", "Hook", url=receiver.url, actor="admin")
        notifications.create_channel("webhook", "Metadata", url="http://169.254.169.254/latest", actor="admin")
        notifications.publish("test", details={"message": "hello"}, actor="admin", at=now)
        assert notifications.deliver_due(now) == {"delivered": 1, "retrying": 1, "failed": 0}
        text = api.get("/metrics").get_data(as_text=True)
        assert 'mailkeep_notification_deliveries{status="delivered"} 1.0' in text
        assert 'mailkeep_notification_deliveries{status="pending"} 1.0' in text
        assert notifications.deliver_due(now + timedelta(hours=24))["failed"] == 1  # its retries are over
    text = api.get("/metrics").get_data(as_text=True)
    assert 'mailkeep_notification_deliveries{status="failed"} 1.0' in text and 'status="pending"' not in text
    app.config["METRICS_NETWORKS"] = (ipaddress.ip_network("10.0.0.0/8"),)
    assert app.test_client().get("/metrics").status_code == 401  # the test client is 127.0.0.1
    assert app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert api.get("/metrics").status_code == 200


def test_the_credential_page_shows_uptime_over_24_hours_7_and_30_days(app, client):
    """Failing from 20 days ago, OK from 5 days ago: up all of the last 24 hours, 5 of the last 7 days, and 5 of
    the 20 days of the last 30 that checks tell of."""
    now = utcnow()
    with app.app_context(), models.db.connection_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"])
        for at, ok in ((now - timedelta(days=20), False), (now - timedelta(days=5), True)):
            checked = Credential.get_by_id(credential.id)
            with models.db.atomic():
                checks.record(checked, ok=ok, cause_code="" if ok else "auth_failed", actor=checks.SCHEDULER, now=at)
    html = client.get(f"/credentials/{credential.id}").get_data(as_text=True)
    assert "<dt>Uptime, 24 h</dt><dd>100.0 %</dd>" in html
    assert "<dt>Uptime, 7 days</dt><dd>71.4 %</dd>" in html
    assert "<dt>Uptime, 30 days</dt><dd>25.0 %</dd>" in html


def test_healthz_says_which_part_failed_and_nothing_more(app):
    client = app.test_client()
    stale = client.get("/healthz")
    assert stale.status_code == 503 and stale.get_json() == {"status": "failing",
                                                             "problems": ["worker: no recent heartbeat"]}
    with app.app_context(), models.db.connection_context():
        scheduler.beat()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    with app.app_context(), models.db.connection_context():
        scheduler.beat(utcnow() - timedelta(minutes=10))
    assert client.get("/healthz").status_code == 503


def _unreachable(database_kind, database_url, tmp_path):
    """A URL of `database_kind` that no connection can be opened to: a SQLite file whose folder is gone, or
    the test's PostgreSQL database at a loopback port nothing listens on. Binds ``database.db`` to it."""
    if database_kind == "sqlite":
        folder = tmp_path / "gone"
        folder.mkdir()
        database.bind(f"sqlite:///{folder / 'mailkeep.db'}")  # makes the file, which goes with its folder
        shutil.rmtree(folder)
        return
    with socket.create_server(("127.0.0.1", 0)) as listener:
        closed = listener.getsockname()[1]
    parts = urlsplit(database_url)
    database.bind(parts._replace(netloc=f"{parts.username}@127.0.0.1:{closed}").geturl())


def test_healthz_names_the_database_when_none_can_be_reached_and_other_routes_still_fail(
        app, database_kind, database_url, tmp_path):
    """The process's first request finds the database unreachable: /healthz answers 503 naming it (not a 500
    page); every other route fails as before, never answered without its database."""
    _unreachable(database_kind, database_url, tmp_path)
    client = app.test_client()
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json() == {"status": "failing", "problems": ["database: not answering"]}
    with pytest.raises(peewee.OperationalError):
        client.get("/metrics")


def test_old_history_is_pruned_after_the_retention(app, dovecot):
    credential = _dovecot_credential(app, dovecot)
    with app.app_context(), models.db.connection_context():
        scheduler.run_due(now=utcnow() - timedelta(days=100), everything=True)
        scheduler.run_due(now=utcnow() - timedelta(days=1), everything=True)
        assert scheduler.prune() == 1
        assert CredentialCheck.select().where(CredentialCheck.credential == credential.id).count() == 1


def test_scheduled_checks_never_take_the_slots_of_tests_people_start(app, client, dovecot):
    """Every hand-started slot taken: scheduled checks still run; every scheduled slot taken: Test still works."""
    credential = _dovecot_credential(app, dovecot)
    app.extensions["mailkeep.test_slots"] = threading.BoundedSemaphore(1)
    assert app.extensions["mailkeep.test_slots"].acquire(blocking=False)
    with app.app_context(), models.db.connection_context():
        assert scheduler.run_due(everything=True)["ok"] == 1
    app.extensions["mailkeep.test_slots"].release()
    app.extensions["mailkeep.check_slots"] = threading.BoundedSemaphore(1)
    assert app.extensions["mailkeep.check_slots"].acquire(blocking=False)
    assert client.post(f"/credentials/{credential.id}/test", headers=HTMX).status_code == 200
    with app.app_context(), models.db.connection_context():
        assert scheduler.run_due(everything=True) == {"ok": 0, "failing": 0, "busy": 1}
        assert Credential.get_by_id(credential.id).check_claimed_until is None  # given back, still due


def test_scheduled_checks_fill_the_history_not_the_audit_log(app, client, dovecot):
    credential = _dovecot_credential(app, dovecot)
    with app.app_context(), models.db.connection_context():
        scheduler.run_due(everything=True)
        assert models.AuditEvent.select().where(models.AuditEvent.action == "connection_test").count() == 0
    client.post(f"/credentials/{credential.id}/test", headers=HTMX)
    with models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "connection_test").count() == 1
        assert CredentialCheck.select().count() == 2
