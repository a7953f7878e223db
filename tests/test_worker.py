"""The real worker (worker.py: huey's consumer) checks credentials on its own, with its queue in the instance
folder (SQLite) or in Redis, and says it is alive; Ctrl-C (SIGINT) stops it. Two of them on one database
check each due credential once."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import models
from models import Credential, CredentialCheck, utcnow
from servers import SocketServer, never_greet
from services import scheduler
from testdata import MAILBOX_USER, stored_credential

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.runs_long  # real worker processes, waited for
# How long the worker may take to start and run its first checks (its first tick runs at start).
START_SECONDS = 60


@pytest.fixture
def database_kind():
    return "sqlite"


def _environment(app_config, folder, **settings):
    """The environment of a worker process for the application under test (`app_config`), its instance folder
    (and so its huey queue, without Redis) in `folder`; `settings` are more MAILKEEP_* values, by name."""
    values = {**app_config, **settings, "INSTANCE_PATH": folder}
    return {**os.environ, **{f"MAILKEEP_{name}": str(value) for name, value in values.items()
                             if name not in ("TESTING", "WTF_CSRF_ENABLED") and value is not None}}


def _start(environment, log_path, threads=2):
    """Start ``worker.py -w <threads>`` with `environment`, its output to `log_path`; return the Popen."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "worker.py", "-w", str(threads)], cwd=ROOT, env=environment,
                                stdout=log, stderr=subprocess.STDOUT)


def _stop(worker):
    """Stop a worker with Ctrl-C (SIGINT); kill it when it has not stopped within 20 seconds."""
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@pytest.mark.parametrize("queue", ["sqlite", "redis"])
def test_the_worker_checks_due_credentials_on_its_own_and_beats(app, app_config, dovecot, tmp_path, queue, request):
    with models.db.connection_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"], host="localhost", port=dovecot.imaps_port,
                                       username=MAILBOX_USER)
        models.Credential.update(check_due_at=utcnow() - timedelta(seconds=1)).execute()
    settings = {"CA_FILE": dovecot.ca_file, "CHECK_INTERVAL": 5}
    if queue == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        settings["REDIS_URL"] = redis.url
    worker = _start(_environment(app_config, tmp_path / "worker", **settings), tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + START_SECONDS
        checked = 0
        while time.monotonic() < deadline and checked < 2:
            time.sleep(0.5)
            with models.db.connection_context():
                checked = CredentialCheck.select().where(CredentialCheck.credential == credential.id).count()
        with models.db.connection_context():
            beat = scheduler.last_beat()
            actors = {row.actor for row in CredentialCheck.select()}
        assert checked >= 2, (tmp_path / "worker.log").read_text()[-3000:]  # the second 5 s after the first
        assert actors == {"(scheduler)"} and beat is not None
    finally:
        _stop(worker)
    assert worker.returncode is not None


def _all_checked_and_released(count):
    """True when each of the `count` credentials has been checked and is neither claimed nor due again soon:
    no worker can check any of them again before its next due time (a claim needs it due)."""
    soon = utcnow() + timedelta(minutes=5)
    with models.db.connection_context():
        settled = Credential.select().where(Credential.check_claimed_until.is_null()
                                            & (Credential.check_due_at > soon)).count()
    return settled == count


@pytest.mark.parametrize("database_kind", ["sqlite", "postgresql"])
def test_two_worker_processes_on_one_database_run_each_due_check_once(app, app_config, tmp_path):
    """Two real workers (worker.py, each with its own huey queue in its own instance folder: nothing shared but
    the database) start at once with the same credentials due; each tick schedules a check task for every
    one of them in both workers, and each due check still runs once (worker.claim_one, scheduler.claim_due).
    The checks are of a silent server (half a second each) under two names, so the workers' four threads
    check four at once (2 per host) and their claims of the same credentials overlap. On SQLite and
    PostgreSQL."""
    count = 8
    with SocketServer(never_greet) as silent:
        with models.db.connection_context():
            for number in range(count):
                stored_credential(app.extensions["mailkeep.keyring"], name=f"Silent {number}",
                                  host=("127.0.0.1", "localhost")[number % 2], port=silent.port,
                                  username=f"box{number}@example.test")
            Credential.update(check_due_at=utcnow() - timedelta(seconds=1)).execute()
        # The first failure counts (no retry a minute later): each credential is due again in 15 minutes.
        settings = {"GREETING_TIMEOUT": 0.5, "CHECK_FAILURES_BEFORE_ALERT": 1, "CHECK_INTERVAL": 900}
        workers = [_start(_environment(app_config, tmp_path / f"worker-{number}", **settings),
                          tmp_path / f"worker-{number}.log") for number in range(2)]
        try:
            deadline = time.monotonic() + START_SECONDS
            while time.monotonic() < deadline and not _all_checked_and_released(count) \
                    and all(worker.poll() is None for worker in workers):
                time.sleep(0.2)
            with models.db.connection_context():
                checks = [CredentialCheck.select().where(CredentialCheck.credential == credential.id).count()
                          for credential in Credential.select().order_by(Credential.id)]
        finally:
            for worker in workers:
                _stop(worker)
    logs = "\n".join((tmp_path / f"worker-{number}.log").read_text()[-2000:] for number in range(2))
    assert checks == [1] * count, logs
    assert [worker.returncode for worker in workers] == [0, 0], logs
