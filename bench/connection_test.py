"""``make bench``: what a connection test costs over the bare IMAP exchange it performs.

Starts the test Dovecot (tests/dovecot.py) on loopback and gunicorn serving
``app:create_app()`` on a throwaway instance folder, then times, round-robin
(each round runs every variant once, each going first in turn, so a slow
moment hits all of them):

(a) bare: imapclient connects with TLS, LOGIN, EXAMINE INBOX, LOGOUT (its
    SSLContext built once, before timing);
(b) probe: ``probe.Prober.run`` in this process (the Prober made once);
(c) api: ``POST /api/v1/connection-tests`` through gunicorn, as a client of
    the JSON API would (one kept-alive HTTP connection);

first on loopback, then with Dovecot behind a small TCP proxy of this script
that delays every chunk by DELAY_SECONDS each way, as a real network would
(the TCP handshake's round trip included). Prints the medians and their
ratio to (a) as a Markdown table, writes it to bench/connection_test.md, and
says which targets (TARGETS) were missed; it does not fail on a miss.

Usage: ``.venv/bin/python bench/connection_test.py [ROUNDS]`` (default 50).
"""

import asyncio
import contextlib
import http.client
import json
import os
import pathlib
import platform
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from imapclient import IMAPClient  # noqa: E402

import probe  # noqa: E402
from dovecot import Dovecot, MailUser  # noqa: E402

ROUNDS = 50
WARM_UP_ROUNDS = 3
DELAY_SECONDS = 0.020
HOST = "127.0.0.1"
MAILBOX = MailUser("bench@example.test", "bench-password-5f2a9c")
ADMIN, ADMIN_PASSWORD = "bench-admin", "a long bench password 7d1e"
GUNICORN_START_SECONDS = 30.0
VENV_BIN = ROOT / ".venv" / "bin"
RESULT_FILE = ROOT / "bench" / "connection_test.md"
TARGETS = {("probe", "loopback"): 1.15, ("probe", "proxy"): 1.15, ("api", "loopback"): 1.5, ("api", "proxy"): 1.15}


def main(rounds):
    """Time `rounds` rounds of each variant on loopback and behind the proxy; print the table and write it."""
    with tempfile.TemporaryDirectory(prefix="mailkeep-bench-") as scratch:
        scratch = pathlib.Path(scratch)
        with Dovecot(scratch / "dovecot", users=[MAILBOX]) as server, \
                DelayProxy((HOST, server.imaps_port), DELAY_SECONDS) as proxy, \
                Gunicorn(scratch / "instance", server.ca_file) as api:
            conditions = {"loopback": server.imaps_port, "proxy": proxy.port}
            medians = {}
            for condition, port in conditions.items():
                variants = {
                    "bare": BareExchange(port, server.ca_file),
                    "probe": InProcess(port, server.ca_file),
                    "api": api.tester(port),
                }
                timings = measure(variants, rounds)
                medians.update({(name, condition): statistics.median(times) for name, times in timings.items()})
    table = render(medians, rounds)
    print(table)
    RESULT_FILE.write_text(table)
    missed = [f"{name} on {condition}" for (name, condition), limit in TARGETS.items()
              if medians[(name, condition)] / medians[("bare", condition)] > limit]
    print("Targets missed: " + ", ".join(missed) if missed else "All targets met.")


def measure(variants, rounds):
    """Run each of `variants` (name: callable that tests once and raises unless it worked) once per round,
    round-robin, the order rotating from round to round; return {name: [seconds, ...]} for the timed rounds
    (after WARM_UP_ROUNDS untimed ones)."""
    timings = {name: [] for name in variants}
    for round_number in range(WARM_UP_ROUNDS + rounds):
        names = list(variants)
        shift = round_number % len(names)  # each variant goes first in turn, after none always the same one
        for name in names[shift:] + names[:shift]:
            variant = variants[name]
            started = time.perf_counter()
            variant()
            elapsed = time.perf_counter() - started
            if round_number >= WARM_UP_ROUNDS:
                timings[name].append(elapsed)
    return timings


def render(medians, rounds):
    """The results as a Markdown table, with what was measured and where."""
    labels = {
        "bare": "(a) bare imapclient exchange (connect, TLS, LOGIN, EXAMINE, LOGOUT)",
        "probe": "(b) probe in-process (`Prober.run`)",
        "api": "(c) `POST /api/v1/connection-tests` through gunicorn",
    }
    delay = f"{DELAY_SECONDS * 1000:g}"
    lines = [
        "# Connection test benchmark",
        "",
        f"`make bench`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {rounds} rounds, round-robin (the order "
        f"rotating), medians; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end "
        f"(anything else running skews the loopback figures). The target Dovecot is on loopback; "
        f"\"+{delay} ms\" puts it behind a TCP proxy that delays each direction by {delay} ms.",
        "",
        f"| Variant | loopback (ms) | ratio to (a) | +{delay} ms each way (ms) | ratio to (a) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in labels.items():
        cells = [label]
        for condition in ("loopback", "proxy"):
            median, bare = medians[(name, condition)], medians[("bare", condition)]
            target = TARGETS.get((name, condition))
            cells += [f"{median * 1000:.1f}",
                      f"{median / bare:.2f}" + (f" (target ≤ {target:g})" if target else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class BareExchange:
    """(a): what a connection test does, with imapclient and nothing else."""

    def __init__(self, port, ca_file):
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def __call__(self):
        client = IMAPClient(HOST, port=self.port, ssl_context=self.context, timeout=15)
        client.login(MAILBOX.username, MAILBOX.password)
        client.select_folder("INBOX", readonly=True)
        client.logout()


class InProcess:
    """(b): a Prober made once, as the application makes it, running the same test."""

    def __init__(self, port, ca_file):
        self.prober = probe.Prober(ca_file=str(ca_file), policy=probe.Policy.parse("1-65535", "127.0.0.0/8"))
        self.settings = probe.Settings("IMAP", HOST, port, "ssl_tls", MAILBOX.username, MAILBOX.password)

    def __call__(self):
        result = self.prober.run(self.settings)
        if not result.ok:
            raise RuntimeError(f"probe failed: {result.summary}")


class Gunicorn:
    """gunicorn serving ``app:create_app()`` as ``make run`` does, on a fresh instance folder that trusts
    the test Dovecot's CA, may dial loopback on any port, and lets the bench test as often as it likes."""

    def __init__(self, instance, ca_file):
        self.port = _free_port()
        self.environment = {
            **os.environ,
            "MAILKEEP_INSTANCE_PATH": str(instance),
            "MAILKEEP_CA_FILE": str(ca_file),
            "MAILKEEP_ALLOWED_PORTS": "1-65535",
            "MAILKEEP_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MAILKEEP_TEST_RATE_LIMIT": "100000 per minute",
            "MAILKEEP_TEST_RATE_LIMIT_TOTAL": "100000 per minute",
        }
        self.process = None
        self.token = None

    def __enter__(self):
        self.token = api_token(self.environment)
        self.process = subprocess.Popen(
            [VENV_BIN / "gunicorn", "--preload", "--workers", "2", "--threads", "16", "--bind", f"{HOST}:{self.port}",
             "--no-control-socket", "--log-level", "warning", "app:create_app()"],
            cwd=ROOT, env=self.environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + GUNICORN_START_SECONDS
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1):
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)

    def __exit__(self, *exc_info):
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)

    def tester(self, port):
        """(c): a callable that asks the API to test the mailbox at `port`, over one kept-alive connection."""
        body = json.dumps({"protocol": "IMAP", "host": HOST, "port": port, "security": "ssl_tls",
                           "username": MAILBOX.username, "password": MAILBOX.password, "folder": "INBOX"})
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)

        def test_through_the_api():
            try:
                connection.request("POST", "/api/v1/connection-tests", body, headers)
                response = connection.getresponse()
            except (http.client.HTTPException, ConnectionError):  # the server closed the kept-alive connection
                connection.close()
                connection.request("POST", "/api/v1/connection-tests", body, headers)
                response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or not json.loads(answer)["ok"]:
                raise RuntimeError(f"the API answered {response.status}: {answer[:300]!r}")

        return test_through_the_api


def api_token(environment):
    """Make an admin with the command line and an API token for it with the models; return the token.

    The one place that knows how Mailkeep makes users and tokens (``flask users
    create``, ``models.ApiToken.issue``): change it here when they change.
    """
    _quietly([VENV_BIN / "flask", "--app", "app", "users", "create", ADMIN, "--role", "admin", "--password-stdin"],
             environment, stdin=ADMIN_PASSWORD + "\n")
    issue = (
        "from app import create_app\n"
        "import models\n"
        "create_app()\n"
        "with models.db.connection_context():\n"
        f"    user = models.User.get(models.User.username == {ADMIN!r})\n"
        "    print(models.ApiToken.issue(user, 'bench')[1])\n"
    )
    return _quietly([VENV_BIN / "python", "-c", issue], environment).strip().splitlines()[-1]


def _quietly(command, environment, stdin=None):
    """Run `command` in the project folder; return its output, or raise RuntimeError with all it said."""
    done = subprocess.run(command, input=stdin, cwd=ROOT, env=environment, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{command[0].name} {command[1:]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class DelayProxy:
    """A TCP proxy on loopback to `target` (host, port) that delivers every chunk `delay` seconds after it
    arrived, in each direction and in order, and adds one round trip before the first byte reaches the
    target, as the TCP handshake over such a network would. Runs an asyncio loop in a thread; ``port`` is
    where it listens."""

    def __init__(self, target, delay):
        self.target = target
        self.delay = delay
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._server = None

    def __enter__(self):
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, HOST, 0), self._loop).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info):
        async def close():
            self._server.close()
            await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    async def _relay(self, client_reader, client_writer):
        # The TCP handshake: the client's first bytes leave once its SYN-ACK is back, and arrive one way later.
        await asyncio.sleep(self.delay)
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        for writer in (client_writer, server_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer),
                             return_exceptions=True)
        for writer in (client_writer, server_writer):
            writer.close()

    async def _pipe(self, reader, writer):
        pending = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await pending.get()
                await asyncio.sleep(max(due - self._loop.time(), 0))
                if not data:
                    writer.write_eof() if writer.can_write_eof() else writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                pending.put_nowait((self._loop.time() + self.delay, data))
                if not data:
                    break
        except ConnectionError:
            pending.put_nowait((self._loop.time(), b""))
        await delivering


def _free_port():
    with socket.create_server((HOST, 0)) as listener:
        return listener.getsockname()[1]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)
