"""Which check runs when, and by whom: the scheduled checks, "Test all" runs, and the daily sweeps.

Every due check runs exactly once across all workers and instances because a
worker must *claim* a credential before it checks it: a compare-and-set
``UPDATE credential SET check_claimed_until = <lease> WHERE id = ? AND
check_due_at <= now AND (check_claimed_until IS NULL OR check_claimed_until <
now)``, under the "check-claims" lock (database.exclusive: SQLite's write lock,
PostgreSQL's advisory lock), which also keeps at most PER_HOST_LIMIT claims per
host. Whoever's UPDATE changed the row checks it; recording the check
(services.checks.record) moves ``check_due_at`` on and drops the claim in the
same transaction. A worker that dies mid-check loses its claim when the lease
ends. The queue (huey, worker.py) only says *when* to try; the database says
*who*.

Checks run through services.connection_tests, the one path, with the
"scheduled-checks" slots (MAILKEEP_CHECK_CONCURRENCY), never the slots of tests
people start by hand.
"""

import concurrent.futures
import logging
from datetime import timedelta

from flask import current_app
from peewee import fn

import audit
import health
import logins
import notifications
from database import db, exclusive
from models import (
    CheckRun,
    CheckRunItem,
    Credential,
    CredentialCheck,
    DeliveryAttempt,
    Group,
    NotificationDelivery,
    NotificationEvent,
    OAuthApp,
    Setting,
    utcnow,
)
from services import checks, connection_tests

log = logging.getLogger(__name__)

PER_HOST_LIMIT = 2
HEARTBEAT = "worker.heartbeat"
# Seconds a worker holds a claim beyond the test deadline.
LEASE_MARGIN = 60
BUSY = "busy"


def lease(now):
    """Until when a claim made at `now` holds: the longest a check can take, and a margin."""
    return now + timedelta(seconds=current_app.config["CONNECTION_TEST_DEADLINE"] + LEASE_MARGIN)


def check_slots():
    """The scheduled checks' own slots (slots.make(..., name="scheduled-checks"), made by create_app)."""
    return current_app.extensions["mailkeep.check_slots"]


def schedule_new(now):
    """Give every credential without a due time one, spread over its interval (health.first_check); return
    how many. A no-op when scheduled checks are off."""
    if not checks.scheduled_checks_on():
        return 0
    rows = list(Credential.select(Credential.id, Credential.uid, Credential.group)
                .where(Credential.check_due_at.is_null()).limit(5000))
    intervals = {group.id: group.check_interval for group in Group.select(Group.id, Group.check_interval)}
    for row in rows:
        due = health.first_check(now, checks.group_interval(intervals.get(row.group_id)), row.uid)
        Credential.update(check_due_at=due).where(
            (Credential.id == row.id) & Credential.check_due_at.is_null()).execute()
    return len(rows)


def _free(now):
    return Credential.check_claimed_until.is_null() | (Credential.check_claimed_until < now)


def claim_due(now, limit, *, when_off=False):
    """Claim up to `limit` credentials whose scheduled check is due (not paused), oldest due first, at most
    PER_HOST_LIMIT held per host across all workers; return their ids. Nothing while scheduled checks are off
    (MAILKEEP_CHECK_INTERVAL=0), unless `when_off` (a run of every credential asked for by hand)."""
    if not (when_off or checks.scheduled_checks_on()) or limit <= 0:
        return []
    with exclusive("check-claims"):
        held = dict(Credential.select(Credential.host, fn.COUNT(Credential.id))
                    .where(Credential.check_claimed_until >= now).group_by(Credential.host).tuples())
        candidates = (Credential.select(Credential.id, Credential.host)
                      .where((Credential.check_paused == False) & (Credential.check_due_at <= now)  # noqa: E712
                             & _free(now))
                      .order_by(Credential.check_due_at).limit(limit * 4).tuples())
        claimed = []
        for credential_id, host in candidates:
            if held.get(host, 0) >= PER_HOST_LIMIT:
                continue
            taken = Credential.update(check_claimed_until=lease(now)).where(
                (Credential.id == credential_id) & (Credential.check_due_at <= now) & _free(now)).execute()
            if taken:
                claimed.append(credential_id)
                held[host] = held.get(host, 0) + 1
                if len(claimed) >= limit:
                    break
        return claimed


def claim_for_run(run_id, now, limit):
    """Claim up to `limit` credentials of "Test all" run `run_id` not yet checked in it (whatever their due
    time), with the same lease and per-host limit; return their ids."""
    with exclusive("check-claims"):
        held = dict(Credential.select(Credential.host, fn.COUNT(Credential.id))
                    .where(Credential.check_claimed_until >= now).group_by(Credential.host).tuples())
        candidates = (Credential.select(Credential.id, Credential.host).join(
            CheckRunItem, on=(CheckRunItem.credential == Credential.id))
            .where((CheckRunItem.run == run_id) & (CheckRunItem.done == False) & _free(now))  # noqa: E712
            .order_by(Credential.id).limit(limit * 4).tuples())
        claimed = []
        for credential_id, host in candidates:
            if held.get(host, 0) >= PER_HOST_LIMIT:
                continue
            if Credential.update(check_claimed_until=lease(now)).where(
                    (Credential.id == credential_id) & _free(now)).execute():
                claimed.append(credential_id)
                held[host] = held.get(host, 0) + 1
                if len(claimed) >= limit:
                    break
        return claimed


def release(credential_id):
    """Give up a claim without checking (no slot was free): the credential stays due."""
    Credential.update(check_claimed_until=None).where(Credential.id == credential_id).execute()


def check_claimed(credential_id, *, actor=checks.SCHEDULER, run_id=None, now=None):
    """Check a credential this worker has claimed, through the connection-test service with the scheduled
    checks' slots; return True (it works), False (it fails), BUSY (no slot: the claim is given back) or None
    (the credential is gone)."""
    with db.connection_context():
        credential = Credential.get_or_none(Credential.id == credential_id)
        if credential is None:
            return None
        outcome = connection_tests.test_saved(credential, actor=actor, slots=check_slots(), run_id=run_id, now=now,
                                              audited=False)
        if outcome.busy:
            release(credential_id)
            return BUSY
        if outcome.ask_secret:  # nothing stored to log in with (or never signed in): a failure people must fix
            summary = logins.SECRETS[outcome.ask_secret].enter or checks.MISSING_SECRET_SUMMARY
            with db.atomic():
                credential.record_test(False, summary, at=now)
                checks.record(credential, ok=False, cause_code=checks.SECRET_MISSING, summary=summary, actor=actor,
                              run_id=run_id, now=now)
            return False
        return bool(credential.check_state == health.OK)


def run_due(now=None, *, clock=None, everything=False):
    """Run every check due now (with `everything`, every credential not paused, even while scheduled checks
    are off: ``flask checks run --all`` from cron), with MAILKEEP_CHECK_CONCURRENCY threads, until none is
    left to claim; return {"ok", "failing", "busy"} counts. `clock` (a function answering naive UTC) gives
    each check's time; `now` fixes it."""
    clock = clock or (lambda: now or utcnow())
    counts = {"ok": 0, "failing": 0, "busy": 0}
    if everything:
        start = clock()
        with db.atomic():
            Credential.update(check_due_at=start).where(Credential.check_paused == False).execute()  # noqa: E712
    schedule_new(clock())
    concurrency = current_app.config["CHECK_CONCURRENCY"]
    app = current_app._get_current_object()

    def one(credential_id):
        with app.app_context():
            return check_claimed(credential_id, now=clock() if now else None)

    with concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="check") as pool:
        while claimed := claim_due(clock(), concurrency, when_off=everything):
            answers = list(pool.map(one, claimed))
            for answer in answers:
                _count(counts, answer)
            if all(answer is BUSY for answer in answers):  # every slot is taken: the rest waits for later
                break
    return counts


def _count(counts, answer):
    if answer is BUSY:
        counts["busy"] += 1
    elif answer is not None:
        counts["ok" if answer else "failing"] += 1


def start_run(credential_ids, *, actor, now=None):
    """Start a "Test all" run of `credential_ids`; return the CheckRun (its items are checked by the worker,
    or by ``work_on_run``)."""
    now = now or utcnow()
    ids = list(dict.fromkeys(credential_ids))
    with db.atomic():
        run = CheckRun.create(started_at=now, actor=actor, total=len(ids))
        for start in range(0, len(ids), 500):
            CheckRunItem.insert_many([{"run": run.id, "credential": credential_id}
                                      for credential_id in ids[start:start + 500]]).execute()
        audit.record("check_run", actor=actor, details=f"Test all: {len(ids)} credentials")
    return run


def work_on_run(run_id, *, now=None):
    """Check the credentials of run `run_id` not yet checked, with MAILKEEP_CHECK_CONCURRENCY threads; return
    the counts (see ``run_due``)."""
    run = CheckRun.get_or_none(CheckRun.id == run_id)
    counts = {"ok": 0, "failing": 0, "busy": 0}
    if run is None:
        return counts
    concurrency = current_app.config["CHECK_CONCURRENCY"]
    app = current_app._get_current_object()

    def one(credential_id):
        with app.app_context():
            return check_claimed(credential_id, actor=run.actor, run_id=run.id, now=now)

    with concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="check-run") as pool:
        while claimed := claim_for_run(run.id, now or utcnow(), concurrency):
            answers = list(pool.map(one, claimed))
            for answer in answers:
                _count(counts, answer)
            if all(answer is BUSY for answer in answers):
                break
    return counts


def unfinished_runs():
    """The ids of runs with credentials not yet checked, oldest first."""
    return [run_id for (run_id,) in CheckRunItem.select(CheckRunItem.run).where(CheckRunItem.done == False)  # noqa: E712
            .distinct().order_by(CheckRunItem.run).tuples()]


def sweep(now=None):
    """What the worker does besides checks, once a minute: reminders for credentials that stay failing,
    client-secret expiry and password-age warnings, the heartbeat; return what it published (a dict)."""
    now = now or utcnow()
    config = checks.settings()
    published = {"reminders": 0, "secrets": 0, "rotations": 0}
    # Read, then write: on SQLite the write lock is taken first (a read transaction that later writes fails at
    # once, without waiting, when another writer holds the lock).
    with exclusive("sweep"):
        for credential in Credential.select().where(
                (Credential.check_state == health.FAILING) & (Credential.check_paused == False)):  # noqa: E712
            if health.reminder_due(credential.check_state, credential.check_paused, credential.check_noticed_at,
                                   now, config["reminder_hours"]):
                notifications.publish(health.CREDENTIAL_FAILING, credential=credential, actor=checks.SCHEDULER,
                                      at=now, details={"state": health.FAILING, "reminder": True,
                                                       "cause": credential.check_cause,
                                                       "summary": credential.last_test_summary or "",
                                                       "failing_since": _iso(credential.check_state_since)})
                Credential.update(check_noticed_at=now).where(Credential.id == credential.id).execute()
                published["reminders"] += 1
        horizon = now + timedelta(days=max(config["warning_days"]))
        for credential in Credential.select().where(Credential.client_secret_expires_on.is_null(False)
                                                    & (Credential.client_secret_expires_on <= horizon.date())):
            expires = _midnight(credential.client_secret_expires_on)
            warn_at = health.expiry_warning(expires, now, config["warning_days"], credential.secret_warned_days)
            if warn_at is not None:
                notifications.publish(health.SECRET_EXPIRING, credential=credential, actor=checks.SCHEDULER, at=now,
                                      details={"expires_on": credential.client_secret_expires_on.isoformat(),
                                               "warning_days": warn_at, "field": "client_secret",
                                               "message": "The OAuth2 client secret expires on "
                                                          f"{credential.client_secret_expires_on:%Y-%m-%d}."})
                Credential.update(secret_warned_days=warn_at).where(Credential.id == credential.id).execute()
                published["secrets"] += 1
        published["secrets"] += _warn_of_app_secrets(now, horizon, config["warning_days"])
        for group in Group.select().where(Group.password_max_age_days.is_null(False)):
            cutoff = now - timedelta(days=group.password_max_age_days)
            for credential in Credential.select().where((Credential.group == group.id)
                                                        & (Credential.secret_set_at <= cutoff)):
                needed = logins.login_for(credential.auth).secret
                # A sign-in's refresh token is the provider's to renew (the keep-alive), not people's to rotate.
                if needed.typed and health.rotation_due(credential.secret_set_at, group.password_max_age_days,
                                                        credential.rotation_warned_at):
                    notifications.publish(health.ROTATION_DUE, credential=credential, actor=checks.SCHEDULER, at=now,
                                          details={"secret_set_at": _iso(credential.secret_set_at),
                                                   "field": needed.name, "max_age_days": group.password_max_age_days,
                                                   "message": f"The {needed.noun} was set more than "
                                                              f"{group.password_max_age_days} days ago."})
                    Credential.update(rotation_warned_at=now).where(Credential.id == credential.id).execute()
                    published["rotations"] += 1
        beat(now)
    return published


def _warn_of_app_secrets(now, horizon, warning_days):
    """Publish secret.expiring for each OAuth app whose client secret expires by `horizon` (naive UTC) and was
    not yet warned of at this many days (`warning_days`, e.g. (21, 7)); return how many. Every sign-in made
    with the app stops working that day, so the event is about the app (no credential; every channel hears
    it) and names how many credentials sign in with it. Called inside the sweep's lock."""
    warned = 0
    for app in OAuthApp.select().where(OAuthApp.client_secret_expires_on.is_null(False)
                                       & (OAuthApp.client_secret_expires_on <= horizon.date())):
        warn_at = health.expiry_warning(_midnight(app.client_secret_expires_on), now, warning_days,
                                        app.secret_warned_days)
        if warn_at is None:
            continue
        users = Credential.select().where(Credential.signing_in_with(app.id)).count()
        notifications.publish(health.SECRET_EXPIRING, actor=checks.SCHEDULER, at=now, details={
            "oauth_app": {"id": app.id, "name": app.name}, "expires_on": app.client_secret_expires_on.isoformat(),
            "warning_days": warn_at, "credentials": users,
            "message": f"The client secret of the OAuth app {app.name} expires on "
                       f"{app.client_secret_expires_on:%Y-%m-%d}; {users} credential(s) sign in with it. Make a new "
                       "secret at the provider and set it on the OAuth apps page."})
        OAuthApp.update(secret_warned_days=warn_at).where(OAuthApp.id == app.id).execute()
        warned += 1
    return warned


def prune(now=None):
    """Delete checks, changes of state and notification events older than MAILKEEP_CHECK_RETENTION_DAYS;
    return how many checks went."""
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["CHECK_RETENTION_DAYS"])
    with db.atomic():
        gone = CredentialCheck.delete().where(CredentialCheck.at < cutoff).execute()
        from models import HealthChange
        HealthChange.delete().where(HealthChange.at < cutoff).execute()
        old = NotificationEvent.select(NotificationEvent.id).where(NotificationEvent.at < cutoff)
        deliveries = NotificationDelivery.select(NotificationDelivery.id).where(NotificationDelivery.event.in_(old))
        DeliveryAttempt.delete().where(DeliveryAttempt.delivery.in_(deliveries)).execute()
        NotificationDelivery.delete().where(NotificationDelivery.event.in_(old)).execute()
        NotificationEvent.delete().where(NotificationEvent.at < cutoff).execute()
        CheckRun.delete().where(CheckRun.started_at < cutoff).execute()
    return gone


def beat(now=None):
    """Record that a worker is alive now (naive UTC): /healthz and /metrics read it."""
    Setting.write(HEARTBEAT, (now or utcnow()).isoformat())


def last_beat():
    """When a worker last said it is alive (naive UTC datetime), or None."""
    from datetime import datetime
    text = Setting.read(HEARTBEAT)
    return datetime.fromisoformat(text) if text else None


def _iso(moment):
    return moment.isoformat() + "Z" if moment else None


def _midnight(day):
    from datetime import datetime
    return datetime(day.year, day.month, day.day)
