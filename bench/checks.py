"""``make bench`` (scheduled checks): one full pass of 1,000 credentials against the test Dovecot, through the
real worker, and what it does to the credentials list.

1. starts the test Dovecot (tests/dovecot.py) with USERS accounts, each with its three folders, so every one
   of the SIZE credentials logs in for real (a distinct mailbox each);
2. seeds a fresh SQLite instance (``Credential().store``: each password encrypted for its row), an admin, and
   serves it with gunicorn as ``make run`` does (2 workers, 16 threads);
3. times the credentials list (GET /credentials/, signed in) ROUNDS times while nothing else runs: idle p50;
4. starts the worker (``worker.py``, MAILKEEP_CHECK_CONCURRENCY at its default of 4 threads), makes every
   credential due and waits for one full pass (checks per second, the time from the first check to the last);
5. makes them all due again and reads the list without pause while this second pass runs: the list's p50
   during a pass against idle (target: within TARGET_RATIO), and how long the pass took under that load.

All the credentials are on one host, so the rule "at most 2 checks at a time against one host" bounds the
pass, whatever the concurrency: the table says so. It prints the table as Markdown and writes it to
bench/checks.md; it does not fail on a miss. Everything it started is stopped on the way out.

Usage::

    .venv/bin/python bench/checks.py [--size 1000] [--rounds 60] [--output bench/checks.md]
"""

import argparse
import os
import pathlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import httpx2

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import database  # noqa: E402
import encryption  # noqa: E402
import models  # noqa: E402
from dovecot import FOLDERS, Dovecot, MailUser  # noqa: E402

SIZE = 1000
ROUNDS = 60
TARGET_RATIO = 1.5
PASSWORD = "bench-password"
ADMIN, ADMIN_PASSWORD = "bench", "a long bench password"
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def free_port():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


def seed(environment, size, dovecot):
    """SIZE credentials, one per (user, folder), and the admin; through the app's own factory and models."""
    os.environ.update(environment)
    from app import create_app

    app = create_app()
    keyring = app.extensions["mailkeep.keyring"]
    with models.db.connection_context():
        models.User.add(ADMIN, ADMIN_PASSWORD, "admin")
        group = models.Group.default()
        with models.db.atomic():
            for number in range(size):
                user, folder = divmod(number, len(FOLDERS))
                models.Credential().store(keyring, dict(
                    name=f"Mailbox {number:04d}", description="bench", group=group, protocol="IMAP", host="localhost",
                    port=dovecot.imaps_port, security="ssl_tls", username=f"user{user}@example.test",
                    folder=FOLDERS[folder]), {"password": PASSWORD})
        models.Credential.update(check_due_at=datetime(2100, 1, 1)).execute()
    database.unbind()


def signed_in(base):
    client = httpx2.Client(base_url=base, timeout=30)
    token = CSRF.search(client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text[-300:]
    return client


def time_list(client, rounds=None, until=None):
    """Milliseconds of GET /credentials/ each, `rounds` times or until `until()` is true."""
    taken = []
    while (rounds is not None and len(taken) < rounds) or (until is not None and not until()):
        started = time.perf_counter()
        answer = client.get("/credentials/")
        taken.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200
        if until is not None and len(taken) > 10_000:
            break
    return taken


def wait_for(url, process, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server stopped")
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def passed(started_at, size):
    """True once every credential has been checked since `started_at`."""
    with models.db.connection_context():
        return models.Credential.select().where(models.Credential.last_test_at >= started_at).count() >= size


def one_pass(size, start_worker, meanwhile=None):
    """Make every credential due now, start a worker (``start_worker()``) and wait until it has checked them
    all, running `meanwhile(started_at)` in the meantime; return (checks, failed checks, seconds from the first
    check to the last, the worker process)."""
    with models.db.connection_context():
        started_at = datetime.now(timezone.utc).replace(tzinfo=None)
        models.Credential.update(check_due_at=started_at - timedelta(seconds=1)).execute()
    worker = start_worker()
    if meanwhile is not None:
        meanwhile(started_at)
    while not passed(started_at, size):
        time.sleep(0.2)
    with models.db.connection_context():
        checks = models.CredentialCheck.select().where(models.CredentialCheck.at >= started_at)
        first, last = checks.select(models.fn.MIN(models.CredentialCheck.at),
                                    models.fn.MAX(models.CredentialCheck.at)).scalar(as_tuple=True)
        failed = checks.where(models.CredentialCheck.ok == False).count()  # noqa: E712
        return checks.count(), failed, (last - first).total_seconds(), worker


def stop(process):
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--output", default=str(ROOT / "bench" / "checks.md"))
    arguments = parser.parse_args()
    size = arguments.size
    users = (size + len(FOLDERS) - 1) // len(FOLDERS)
    with tempfile.TemporaryDirectory(prefix="mailkeep-bench-checks-") as work:
        work = pathlib.Path(work)
        mail_users = [MailUser(f"user{number}@example.test", PASSWORD) for number in range(users)]
        with Dovecot(work / "dovecot", users=mail_users) as dovecot:
            port = free_port()
            environment = {
                "MAILKEEP_INSTANCE_PATH": str(work / "instance"),
                "MAILKEEP_DATABASE_URL": f"sqlite:///{work / 'instance' / 'mailkeep.db'}",
                "MAILKEEP_ENCRYPTION_KEYS": encryption.generate_key(), "MAILKEEP_SECRET_KEY": "bench",
                "MAILKEEP_CA_FILE": str(dovecot.ca_file), "MAILKEEP_ALLOWED_PORTS": str(dovecot.imaps_port),
                "MAILKEEP_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128", "MAILKEEP_LOGIN_RATE_LIMIT": "1000 per minute",
                "MAILKEEP_CHECK_INTERVAL": "900",
            }
            seeded = time.monotonic()
            seed(environment, size, dovecot)
            print(f"seeded {size} credentials in {time.monotonic() - seeded:.1f} s", flush=True)
            server = worker = None
            log = open(work / "processes.log", "wb")  # noqa: SIM115 (closed below)
            try:
                server = subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--threads", "16", "--bind",
                     f"127.0.0.1:{port}", "--no-control-socket", "app:create_app()"],
                    cwd=ROOT, env={**os.environ, **environment}, stdout=log, stderr=subprocess.STDOUT)
                base = f"http://127.0.0.1:{port}"
                wait_for(f"{base}/login", server)
                client = signed_in(base)
                time_list(client, rounds=10)  # warm up
                idle = time_list(client, rounds=arguments.rounds)
                database.bind(environment["MAILKEEP_DATABASE_URL"])

                def start_worker():
                    """A fresh worker, whose first tick (at start) finds every credential due."""
                    return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT,
                                            env={**os.environ, **environment}, stdout=log, stderr=subprocess.STDOUT)

                # Pass 1 alone (checks per second), pass 2 with the list being read all the while (its p50).
                quiet = one_pass(size, start_worker)
                stop(worker := quiet[3])
                busy = []

                def read_the_list_meanwhile(started):
                    busy.extend(time_list(client, until=lambda: passed(started, size)))

                loaded = one_pass(size, start_worker, meanwhile=read_the_list_meanwhile)
                worker = loaded[3]
            finally:
                stop(worker)
                stop(server)
                log.close()
                database.unbind()
    total, failed, seconds, _ = quiet
    idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
    ratio = busy_p50 / idle_p50
    table = "\n".join([
        f"# Scheduled checks: {size} credentials against the test Dovecot",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs; SQLite; the worker with its "
        "default 4 threads (MAILKEEP_CHECK_CONCURRENCY); every credential on one host, so at most 2 checks ran at "
        "once (the per-host limit); gunicorn as `make run` starts it.",
        "",
        "| Measure | Value |",
        "| --- | --- |",
        f"| Checks in the pass | {total} ({failed} failed) |",
        f"| One full pass (first check to last) | {seconds:.1f} s |",
        f"| Checks per second | {total / seconds if seconds else float('nan'):.1f} |",
        f"| One full pass while the list is read without pause | {loaded[2]:.1f} s |",
        f"| Credentials list p50, idle ({len(idle)} requests) | {idle_p50:.1f} ms |",
        f"| Credentials list p50, during the pass ({len(busy)} requests) | {busy_p50:.1f} ms |",
        f"| Ratio (target: within {TARGET_RATIO}x) | {ratio:.2f}x {'(met)' if ratio <= TARGET_RATIO else '(MISSED)'} |",
        "",
    ])
    print(table)
    if arguments.output:
        pathlib.Path(arguments.output).write_text(table)


if __name__ == "__main__":
    main()
