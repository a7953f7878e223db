"""The background worker: huey's queue and schedule, and the tasks that run Mailkeep's scheduled checks,
"Test all" runs, notification deliveries, reminders and pruning.

Run it with ``.venv/bin/python worker.py`` (``-w N`` for N threads; default
MAILKEEP_CHECK_CONCURRENCY); run it again (on this machine or another sharing the
database and, for several machines, MAILKEEP_REDIS_URL) for more workers. The
queue is huey's (https://huey.readthedocs.io): a SQLite file in the instance
folder (``huey.db``) by default, Redis when MAILKEEP_REDIS_URL is set, so the
web server's "Test all" reaches the workers of every instance.

huey decides *when* a task runs; the database decides *who* runs a check
(services.scheduler's claims), so a task enqueued twice, by two workers' clocks
or a restart, still checks a credential once per due time.

Tasks (each in an application context):

- ``tick`` every minute (and at start): the heartbeat, reminders and expiry
  warnings (scheduler.sweep), due times for new credentials, one ``check`` task
  per credential due within the next minute (scheduled at its due time), a
  ``run`` task for each unfinished "Test all", and a delivery pass;
- ``check(credential_id)``: claims and checks one credential, then any other due
  credential it can claim (a check held back by its host's limit of 2 is taken
  by the check that frees the host); schedules each one's next check when that
  comes within the minute (short intervals);
- ``run(run_id)``: a "Test all" run;
- ``deliver``: notifications.deliver_due (also after a check that published);
- ``prune`` every hour: retention (MAILKEEP_CHECK_RETENTION_DAYS);
- ``keep_alive`` every hour: OAuth2 sign-ins unused so long that their refresh
  token would lapse are refreshed (services.oauth_tokens.refresh_due).
"""

import argparse
import logging
import os
import time
from datetime import datetime, timedelta

from huey import RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from huey.exceptions import TaskLockedException

import database
import notifications
from database import db, exclusive
from models import Credential, NotificationEvent, utcnow
from services import checks, oauth_tokens, scheduler

log = logging.getLogger(__name__)

HORIZON = timedelta(seconds=60)
TASK_MODULE = "mailkeep"
# How much lower than the web server's the worker's processor priority is (nice(2)).
NICENESS = 19
# Seconds before trying again a check that found its host's limit reached or no slot free.
RETRY_SECONDS = 2
# Seconds a check task goes on checking other due credentials before it ends (the next tick starts more).
DRAIN_SECONDS = 60
# huey runs a scheduled task in the second of its time, perhaps before the moment: a check that finds its
# credential due within this margin comes back just after.
EARLY_MARGIN = timedelta(seconds=1.5)


def make_huey(app):
    """The huey instance for `app`'s configuration, with Mailkeep's tasks registered on it; also kept in
    ``app.extensions["mailkeep.huey"]``, with the tasks in ``app.extensions["mailkeep.tasks"]``."""
    name = "mailkeep"
    if app.config["REDIS_URL"]:
        queue = RedisHuey(name, url=app.config["REDIS_URL"], utc=True, results=False)
    else:
        path = os.path.join(app.instance_path, "huey.db")
        database.keep_private(path)  # 0600, and so its -wal and -shm files: like the database, for its owner only
        queue = SqliteHuey(name, filename=path, utc=True, results=False)
    app.extensions["mailkeep.huey"] = queue
    app.extensions["mailkeep.tasks"] = _register(queue, app)
    return queue


def _register(queue, app):
    """Declare the tasks on `queue`, each running inside an application context of `app`."""

    def in_app(function):
        def wrapped(*args, **kwargs):
            with app.app_context(), db.connection_context():
                return function(*args, **kwargs)
        wrapped.__name__ = function.__name__
        wrapped.__doc__ = function.__doc__
        # huey names a task after its function's module: the same name whether this file runs as the worker
        # (``__main__``) or is imported by the web server that enqueues.
        wrapped.__module__ = TASK_MODULE
        return wrapped

    @queue.task(name="mailkeep.check")
    @in_app
    def check(credential_id):
        """Claim and check one credential if it is due, then go on with any other due credential this worker
        can claim (services.scheduler), for at most DRAIN_SECONDS: a check held back by its host's limit is
        picked up by the check that frees the host, not retried on a timer."""
        now = utcnow()
        state = claim_one(credential_id, now)
        if isinstance(state, datetime):  # huey's schedule runs to the second: it came a moment early
            check.schedule((credential_id,), eta=state + EARLY_MARGIN)
            return None
        if state == "claimed":
            _check_and_follow(credential_id)
        ends = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < ends and (claimed := scheduler.claim_due(utcnow(), 1)):
            if _check_and_follow(claimed[0]) is scheduler.BUSY:
                break
        if NotificationEvent.select().where(NotificationEvent.fanned_out == False).exists():  # noqa: E712
            deliver()
        return None

    def _check_and_follow(credential_id):
        """Check a claimed credential; schedule its next check when that comes within the minute."""
        answer = scheduler.check_claimed(credential_id)
        due = Credential.select(Credential.check_due_at).where(Credential.id == credential_id).scalar()
        if answer is not scheduler.BUSY and due is not None and due - utcnow() < HORIZON:
            check.schedule((credential_id,), eta=due)
        return answer

    @queue.task(name="mailkeep.run")
    @in_app
    def run(run_id):
        """Check every credential of a "Test all" run; come back in a moment for those another worker held."""
        scheduler.work_on_run(run_id)
        if run_id in scheduler.unfinished_runs():
            run.schedule((run_id,), delay=RETRY_SECONDS)
        deliver()

    @queue.task(name="mailkeep.deliver")
    @in_app
    def deliver():
        """Deliver the notifications that are due."""
        return notifications.deliver_due()

    @queue.periodic_task(crontab(), name="mailkeep.tick")
    @in_app
    def tick():
        """Once a minute: the heartbeat and sweeps, and the checks due within the minute."""
        now = utcnow()
        scheduler.sweep(now)
        scheduler.schedule_new(now)
        if checks.scheduled_checks_on():
            due = (Credential.select(Credential.id, Credential.check_due_at)
                   .where((Credential.check_paused == False) & (Credential.check_due_at <= now + HORIZON))  # noqa: E712
                   .tuples())
            for credential_id, due_at in due:
                check.schedule((credential_id,), eta=max(due_at, now))
        for run_id in scheduler.unfinished_runs():
            run(run_id)
        deliver()

    @queue.periodic_task(crontab(minute="0"), name="mailkeep.prune")
    @in_app
    def prune():
        """Once an hour: drop history older than the retention."""
        return scheduler.prune()

    @queue.periodic_task(crontab(minute="30"), name="mailkeep.keep_alive")
    @in_app
    def keep_alive():
        """Once an hour: refresh the OAuth2 sign-ins about to lapse unused (services.oauth_tokens.refresh_due),
        in one worker at a time (huey's lock, kept in the queue's storage; a worker that finds it taken skips)."""
        try:
            with queue.lock_task("mailkeep.keep_alive"):
                return len(oauth_tokens.refresh_due())
        except TaskLockedException:
            return None

    return {"check": check, "run": run, "deliver": deliver, "tick": tick, "prune": prune, "keep_alive": keep_alive}


def claim_one(credential_id, now):
    """Claim one credential for a scheduled check: "claimed", "busy" (its host has PER_HOST_LIMIT checks
    running), its due time when that is a moment away (less than EARLY_MARGIN), or "skip" (not due, paused,
    gone, another worker holds it, or scheduled checks are off: a task queued before they were turned off)."""
    if not checks.scheduled_checks_on():
        return "skip"
    with exclusive("check-claims"):
        row = (Credential.select(Credential.host, Credential.check_due_at, Credential.check_paused,
                                 Credential.check_claimed_until).where(Credential.id == credential_id).first())
        if row is not None and row.check_due_at is not None and now < row.check_due_at < now + EARLY_MARGIN \
                and not row.check_paused:
            return row.check_due_at
        if row is None or row.check_paused or row.check_due_at is None or row.check_due_at > now:
            return "skip"
        if row.check_claimed_until is not None and row.check_claimed_until >= now:
            return "skip"
        held = Credential.select().where((Credential.host == row.host)
                                         & (Credential.check_claimed_until >= now)).count()
        if held >= scheduler.PER_HOST_LIMIT:
            return "busy"
        taken = Credential.update(check_claimed_until=scheduler.lease(now)).where(
            (Credential.id == credential_id) & (Credential.check_due_at <= now) & scheduler._free(now)).execute()
        return "claimed" if taken else "skip"


def start_run(app, run_id):
    """Hand "Test all" run `run_id` to the workers (from the web server)."""
    app.extensions["mailkeep.tasks"]["run"](run_id)


def main(argv=None):
    """Run the huey consumer for this instance until Ctrl-C (SIGINT) or SIGTERM."""
    from app import create_app

    parser = argparse.ArgumentParser(description="Mailkeep's background worker (scheduled checks, notifications).")
    parser.add_argument("-w", "--workers", type=int, default=None,
                        help="threads running tasks (default: MAILKEEP_CHECK_CONCURRENCY)")
    arguments = parser.parse_args(argv)
    # Background work yields the processor to the web server on a busy machine: pages first, checks after.
    os.nice(NICENESS)
    app = create_app()
    queue = make_huey(app)
    workers = arguments.workers or app.config["CHECK_CONCURRENCY"]
    log.info("Mailkeep worker: %d threads, checks every %s s, queue in %s", workers,
             app.config["CHECK_INTERVAL"] or "(off)", "Redis" if app.config["REDIS_URL"] else "instance/huey.db")
    app.extensions["mailkeep.tasks"]["tick"]()  # at once, not at the next full minute
    # flush_locks: a worker that died holding the keep-alive's lock (huey keeps it in the queue's storage,
    # without expiry on SQLite) must not stop the keep-alive for good.
    consumer = Consumer(queue, workers=workers, worker_type="thread", periodic=True, check_worker_health=True,
                        flush_locks=True)
    consumer.run()


if __name__ == "__main__":
    main()
