"""Which scheduled check runs when, with an injected clock and no network: at most 2 checks at once against
one host across every way they are claimed (scheduler.claim_due, scheduler.claim_for_run,
worker.claim_one), and at most MAILKEEP_CHECK_CONCURRENCY at once in one worker; a group's own interval;
and MAILKEEP_CHECK_INTERVAL=0, which schedules, claims and runs nothing."""

from datetime import datetime, timedelta, timezone

import pytest
from peewee import fn

import health
import models
import worker
from models import Credential, CredentialCheck, Group
from services import checks, scheduler
from testdata import stored_credential

T0 = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
CONCURRENCY = 3
# The credentials of ``spread``, oldest due first: two hosts with more than 2 each, one with 1.
HOSTS = ["a.example.test"] * 3 + ["b.example.test"] * 3 + ["c.example.test"]


@pytest.fixture
def app_config(app_config):
    app_config.update(CHECK_CONCURRENCY=CONCURRENCY, CHECK_INTERVAL=900)
    return app_config


@pytest.fixture
def spread(app, db):
    """The ids of seven credentials on HOSTS, all due before T0 in that order."""
    ids = []
    for number, host in enumerate(HOSTS):
        credential = stored_credential(app.extensions["mailkeep.keyring"], name=f"Box {number}", host=host,
                                       username=f"box{number}@example.test")
        Credential.update(check_due_at=T0 - timedelta(seconds=60 - number)).where(
            Credential.id == credential.id).execute()
        ids.append(credential.id)
    return ids


def held_by_host(now):
    """{host: claims held at `now`}: the checks running then (a claim lasts from before a check to its record)."""
    return dict(Credential.select(Credential.host, fn.COUNT(Credential.id))
                .where(Credential.check_claimed_until >= now).group_by(Credential.host).tuples())


def record_pass(credential_id, now, actor=checks.SCHEDULER, run_id=None):
    """Record a passed check of a credential at `now`, as the end of a check does (its claim dropped, its next
    check scheduled). Read first, then write: on SQLite a transaction that reads and then writes fails at once
    when another thread wrote meanwhile."""
    credential = Credential.get_by_id(credential_id)
    with models.db.atomic():
        checks.record(credential, ok=True, actor=actor, run_id=run_id, now=now)


def due_at(credential_id):
    return Credential.get_by_id(credential_id).check_due_at


def test_due_checks_are_claimed_at_most_the_limit_at_once_and_two_per_host_across_workers(app, spread):
    with app.app_context():
        first = scheduler.claim_due(T0, CONCURRENCY)
        assert len(first) == CONCURRENCY and held_by_host(T0) == {"a.example.test": 2, "b.example.test": 1}
        # Another worker's claims count: its own limit has room, the hosts do not.
        other = scheduler.claim_due(T0, 10)
        assert len(other) == 2 and set(first).isdisjoint(other)
        assert held_by_host(T0) == {"a.example.test": 2, "b.example.test": 2, "c.example.test": 1}
        assert scheduler.claim_due(T0, 10) == []
        record_pass(first[0], T0)  # a check of a.example.test ends: the host has room for one more
        assert scheduler.claim_due(T0, 10) == [spread[2]]


def test_a_test_all_run_is_claimed_at_most_the_limit_at_once_and_two_per_host(app, spread):
    with app.app_context():
        run = scheduler.start_run(spread, actor="admin", now=T0)
        first = scheduler.claim_for_run(run.id, T0, CONCURRENCY)
        assert len(first) == CONCURRENCY
        assert len(scheduler.claim_for_run(run.id, T0, 10)) == 2
        assert held_by_host(T0) == {"a.example.test": 2, "b.example.test": 2, "c.example.test": 1}
        assert scheduler.claim_for_run(run.id, T0, 10) == []


def test_the_worker_claims_a_credential_only_while_its_host_has_fewer_than_two_checks(app, spread):
    with app.app_context():
        answers = [worker.claim_one(credential_id, T0) for credential_id in spread]
        assert answers == ["claimed", "claimed", "busy", "claimed", "claimed", "busy", "claimed"]
        assert worker.claim_one(spread[0], T0) == "skip"  # held already: never twice
        record_pass(spread[0], T0)
        assert worker.claim_one(spread[2], T0) == "claimed"


def test_a_pass_runs_at_most_the_concurrency_at_once_and_two_per_host(app, spread, monkeypatch):
    """scheduler.run_due with a stand-in for the connection test that notes the claims held while it runs
    (the checks running at once), then records a pass."""
    running = []

    def check_noting_what_runs(credential_id, *, actor=checks.SCHEDULER, run_id=None, now=None):
        with models.db.connection_context():
            running.append(held_by_host(now))
            record_pass(credential_id, now, actor=actor, run_id=run_id)
        return True

    monkeypatch.setattr(scheduler, "check_claimed", check_noting_what_runs)
    with app.app_context():
        assert scheduler.run_due(now=T0) == {"ok": len(HOSTS), "failing": 0, "busy": 0}
    assert max(sum(held.values()) for held in running) == CONCURRENCY  # reached, never passed
    assert max(max(held.values()) for held in running) == scheduler.PER_HOST_LIMIT
    assert CredentialCheck.select().count() == len(HOSTS)


def test_scheduled_checks_have_as_many_slots_as_the_concurrency(app):
    """The cap of a worker's checks (of every process's, with Redis): the scheduled checks' slots."""
    slots = app.extensions["mailkeep.check_slots"]
    assert [slots.acquire(blocking=False) for _ in range(CONCURRENCY + 1)] == [True] * CONCURRENCY + [False]


def test_a_groups_own_interval_set_on_its_form_schedules_its_credentials(app, client, db):
    assert client.post("/groups/", data={"name": "Fast", "check_interval": "60"}).status_code == 303
    fast = Group.get(Group.name == "Fast")
    keyring = app.extensions["mailkeep.keyring"]
    quick = stored_credential(keyring, name="Quick", group=fast)
    usual = stored_credential(keyring, name="Usual", username="usual@example.test")
    with app.app_context():
        assert scheduler.schedule_new(T0) == 2
        assert due_at(quick.id) == health.first_check(T0, 60, quick.uid)  # spread over the group's minute
        assert due_at(usual.id) == health.first_check(T0, 900, usual.uid)
        checked = T0 + timedelta(minutes=5)
        for credential in (quick, usual):
            record_pass(credential.id, checked)
        assert due_at(quick.id) == checked + timedelta(seconds=60)
        assert due_at(usual.id) == checked + timedelta(seconds=900)
    assert client.post(f"/groups/{fast.id}/edit", data={"name": "Fast", "check_interval": "120"}).status_code == 303
    with app.app_context():
        record_pass(quick.id, checked)
    assert due_at(quick.id) == checked + timedelta(seconds=120)


def test_an_interval_of_0_schedules_claims_and_runs_no_check(app_config, request, monkeypatch):
    app_config["CHECK_INTERVAL"] = 0
    app = request.getfixturevalue("app")
    keyring = app.extensions["mailkeep.keyring"]
    with app.app_context(), models.db.connection_context():
        never = stored_credential(keyring, name="Never scheduled")
        # Due from before scheduled checks were turned off (its task may still wait in the queue).
        was_due = stored_credential(keyring, name="Was due", username="was@example.test")
        Credential.update(check_due_at=T0 - timedelta(minutes=1)).where(
            Credential.id == was_due.id).execute()
        assert scheduler.schedule_new(T0) == 0 and due_at(never.id) is None
        assert scheduler.claim_due(T0, 10) == [] and worker.claim_one(was_due.id, T0) == "skip"
        assert scheduler.run_due(now=T0) == {"ok": 0, "failing": 0, "busy": 0}
        app.extensions["mailkeep.tasks"]["tick"].call_local()
        queue = app.extensions["mailkeep.huey"]
        assert [task.name for task in queue.pending()] == ["mailkeep.deliver"] and queue.scheduled_count() == 0
        assert CredentialCheck.select().count() == 0
        record_pass(never.id, T0, actor="admin")  # a test people start is kept, and schedules nothing
        assert due_at(never.id) is None and CredentialCheck.select().count() == 1

        # `flask checks run --all` (from cron) still checks every credential, and schedules none after.
        monkeypatch.setattr(scheduler, "check_claimed", lambda credential_id, now=None, **_: record_pass(
            credential_id, now) or True)
        assert scheduler.run_due(now=T0, everything=True) == {"ok": 2, "failing": 0, "busy": 0}
        assert CredentialCheck.select().count() == 3 and due_at(never.id) is None and due_at(was_due.id) is None
