"""The real worker (worker.py: huey's consumer) checks credentials on its own, with its queue in the instance
folder (SQLite) or in Redis, and says it is alive; Ctrl-C (SIGINT) stops it."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import models
from models import CredentialCheck, utcnow
from services import scheduler
from testdata import MAILBOX_USER, stored_credential

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How long the worker may take to start and run its first checks (its first tick runs at start).
START_SECONDS = 60


@pytest.fixture
def database_kind():
    return "sqlite"


@pytest.mark.parametrize("queue", ["sqlite", "redis"])
def test_the_worker_checks_due_credentials_on_its_own_and_beats(app, app_config, dovecot, tmp_path, queue, request):
    with models.db.connection_context():
        credential = stored_credential(app.extensions["mailkeep.keyring"], host="localhost", port=dovecot.imaps_port,
                                       username=MAILBOX_USER)
        models.Credential.update(check_due_at=utcnow() - timedelta(seconds=1)).execute()
    environment = {**os.environ, **{f"MAILKEEP_{name}": str(value) for name, value in app_config.items()
                                    if name not in ("TESTING", "WTF_CSRF_ENABLED")},
                   "MAILKEEP_CA_FILE": str(dovecot.ca_file), "MAILKEEP_CHECK_INTERVAL": "5",
                   "MAILKEEP_INSTANCE_PATH": str(tmp_path / "worker")}
    if queue == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        environment["MAILKEEP_REDIS_URL"] = redis.url
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 (closed below)
    worker = subprocess.Popen([sys.executable, "worker.py", "-w", "2"], cwd=ROOT, env=environment,
                              stdout=log, stderr=subprocess.STDOUT)
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
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    assert worker.returncode is not None
