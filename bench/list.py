"""``make bench`` (lists): how the list pages and the API hold up at 10,000 and 100,000 credentials.

For each database (SQLite: a fresh file; PostgreSQL: a fresh database on a
throwaway server from tests/postgres.py) and each size, this script:

1. brings the empty database to the current schema with the app's own
   migrations (``migrations.upgrade``) and seeds it through the models:
   SIZE credentials (``Credential().store``, each password encrypted for its
   row) spread over GROUPS groups, custom data on one in CUSTOM_DATA_EVERY,
   one alias per ALIAS_EVERY credentials, in transactions of BATCH rows; a
   COMMON_TERM is in a quarter of them, the RARE_TERM in one; an admin
   (``User.add``) and an API token (``ApiToken.issue``);
2. serves the app with gunicorn (one worker, four threads) and, beside it with
   the same settings, a bare Flask page (written to a temporary folder) that
   renders the first page's 20 credentials with one SELECT and a trivial
   Jinja template: the baseline;
3. signs in by posting the login form with its CSRF token, checks once that
   every route answers what it should, then times the routes round-robin (each
   round requests every route once, the first route rotating from round to
   round, after WARM_UP_ROUNDS untimed rounds) over kept-alive connections;
4. reads the gunicorn worker's VmRSS before and after the timed rounds.

It prints, per database and size, p50 and p95 of each route, the ratio of its
p50 to the bare page's and to its own at the smallest size, as Markdown,
writes that to bench/list.md and says which targets (the GET routes' p50
within TARGET_RATIO of the bare page, alias creation under TARGET_ALIAS_MS,
worker RSS after the run under TARGET_RSS_BYTES, at the largest size) were
missed; it does not fail on a miss. Everything it started (gunicorn,
PostgreSQL, temporary folders) is stopped and removed on the way out, on
Ctrl-C and SIGTERM too. Without PostgreSQL's server (Debian's ``postgresql``
package) it measures SQLite only, and says so.

Usage::

    .venv/bin/python bench/list.py [--sizes 10000,100000] [--databases sqlite,postgresql]
                                   [--rounds 50] [--output bench/list.md] [--quick]

``--quick`` tries it out in under a minute: 1,000 credentials, 10 rounds, and
the table printed but not written (unless ``--output`` is given). The full run
(both sizes, both databases) takes about 8 minutes, most of it seeding 100,000
credentials (each password encrypted and stored through the models).
"""

import argparse
import contextlib
import http.client
import itertools
import json
import os
import pathlib
import platform
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from datetime import datetime, timezone

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import database  # noqa: E402
import encryption  # noqa: E402
import keys  # noqa: E402
import migrations  # noqa: E402
import models  # noqa: E402
from postgres import PostgreSQL, binaries  # noqa: E402
from probe import protocols  # noqa: E402

SIZES = (10_000, 100_000)
DATABASES = ("sqlite", "postgresql")
ROUNDS = 50
WARM_UP_ROUNDS = 3
QUICK_SIZES, QUICK_ROUNDS = (1_000,), 10
GROUPS = 20
ALIAS_EVERY = 10
CUSTOM_DATA_EVERY = 10
BATCH = 1_000
HOSTS = 50
PURPOSES = ("support", "billing", "alerts", "invoices")
COMMON_TERM = "support"  # in the name and description of one credential in four
RARE_TERM = "quetzal"  # in the description of one credential only
PAGE = 50
ADMIN, ADMIN_PASSWORD = "bench-admin", "a long bench password 3c9e71"
HOST = "127.0.0.1"
GUNICORN_START_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 120.0
RESULT_FILE = ROOT / "bench" / "list.md"

TARGET_RATIO = 2.0
TARGET_ALIAS_MS = 50.0
TARGET_RSS_BYTES = 150_000_000
ALIAS_ROUTE = "alias_create"
BARE_ROUTE = "bare"

# name: (what the table calls it, method, path, extra headers); the bare page's path is on its own server.
ROUTES = {
    "list": ("Credentials list, full page", "GET", "/credentials/", {}),
    "list_htmx": ("Credentials list, htmx partial", "GET", "/credentials/", {"HX-Request": "true"}),
    "search_common": (f"Search, common term (`{COMMON_TERM}`, 1 in 4)", "GET", f"/credentials/?q={COMMON_TERM}", {}),
    "search_rare": (f"Search, rare term (`{RARE_TERM}`, 1 row)", "GET", f"/credentials/?q={RARE_TERM}", {}),
    "page": (f"Credentials list, page {PAGE}", "GET", f"/credentials/?page={PAGE}", {}),
    "api_list": ("`GET /api/v1/credentials`", "GET", "/api/v1/credentials", {}),
    "aliases": ("Aliases page", "GET", "/aliases/", {}),
    "alias_form": ("New-alias form", "GET", "/aliases/new", {}),
    ALIAS_ROUTE: ("`POST /api/v1/aliases`", "POST", "/api/v1/aliases", {}),
    BARE_ROUTE: ("Bare Flask page, same 20 rows (baseline)", "GET", "/", {}),
}

# The baseline, served by gunicorn beside the app: the same pool and pragmas (database.bind), one SELECT of the
# 20 rows the list's first page shows, a trivial template (a file, so Flask compiles it once, as it does the app's).
BARE_APP = '''\
"""The bench's baseline: the first 20 credentials by name, one SELECT, a trivial Jinja template."""
import os

from flask import Flask, render_template

import database

database.bind(os.environ["MAILKEEP_DATABASE_URL"])
app = Flask(__name__)
QUERY = (
    'SELECT c.id, c.name, c.description, g.name, c.protocol, c.host, c.port, c.username, c.folder '
    'FROM credential AS c JOIN "group" AS g ON g.id = c.group_id ORDER BY c.name_key LIMIT 20'
)


@app.get("/")
def page():
    database.db.connect(reuse_if_open=True)
    try:
        rows = database.db.execute_sql(QUERY).fetchall()
    finally:
        database.db.close()
    return render_template("bare_list.html", rows=rows)
'''
BARE_TEMPLATE = """<!doctype html><title>Credentials</title><table>
{%- for row in rows %}<tr id="credential-{{ row[0] }}">{% for cell in row[1:] %}<td>{{ cell }}</td>{% endfor %}</tr>
{%- endfor %}</table>
"""


def main(argv=None):
    """Run the benchmark as the command line asks; print the table and write it (see the module's docstring)."""
    options = parse_arguments(argv)
    # Ctrl-C, SIGTERM and SIGHUP all unwind (KeyboardInterrupt), so every server and folder is cleaned up.
    for signal_number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signal_number, _interrupt)
    results = []
    try:
        with contextlib.ExitStack() as stack:
            scratch = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mailkeep-bench-list-")))
            (scratch / "bare_list.py").write_text(BARE_APP)
            (scratch / "templates").mkdir()
            (scratch / "templates" / "bare_list.html").write_text(BARE_TEMPLATE)
            for kind in options.databases:
                if kind == "postgresql" and binaries() is None:
                    options.skipped.append("PostgreSQL (not installed: apt-get install postgresql)")
                    print(f"Skipping {options.skipped[-1]}.", file=sys.stderr)
                    continue
                server = _start_postgresql(stack) if kind == "postgresql" else None
                for size in options.sizes:
                    print(f"{kind}, {size:,} credentials:", flush=True)
                    url = (server.create_database(f"mailkeep_list_{size}") if server
                           else f"sqlite:///{scratch / f'list-{size}.db'}")
                    results.append(bench_one(kind, size, url, scratch, options.rounds))
    except Exception:
        if not _interrupted:
            raise
        # Ctrl-C reaches the whole process group, PostgreSQL too, which may fail a query before ours stops.
        print("\nInterrupted; everything started was stopped and removed.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nInterrupted; everything started was stopped and removed.", file=sys.stderr)
        return 130
    if not results:
        print("Nothing was measured.", file=sys.stderr)
        return 1
    table = render(results, options)
    print()
    print(table)
    if options.output:
        options.output.write_text(table)
        print(f"Written to {options.output}.")
    missed = missed_targets(results)
    print("Targets missed: " + "; ".join(missed) + "." if missed else "All targets met.")
    return 0


def parse_arguments(argv):
    """The command line's options (argparse.Namespace): sizes, databases, rounds, output (a Path or None)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_numbers, help="credential counts, comma-separated (default 10000,100000)")
    parser.add_argument("--databases", type=_databases, default=DATABASES,
                        help="sqlite, postgresql or both, comma-separated (default both)")
    parser.add_argument("--rounds", type=int, help=f"timed rounds, i.e. requests per route (default {ROUNDS})")
    parser.add_argument("--output", type=pathlib.Path,
                        help="where to write the Markdown table (default bench/list.md; none in quick mode)")
    parser.add_argument("--quick", action="store_true",
                        help=f"try it out: {QUICK_SIZES[0]:,} credentials, {QUICK_ROUNDS} rounds, nothing written")
    options = parser.parse_args(argv)
    options.skipped = []
    options.sizes = options.sizes or (QUICK_SIZES if options.quick else SIZES)
    options.rounds = options.rounds or (QUICK_ROUNDS if options.quick else ROUNDS)
    if options.output is None and not options.quick:
        options.output = RESULT_FILE
    if options.rounds < 2:
        parser.error("--rounds must be at least 2")
    if min(options.sizes) < PAGE * 20:
        parser.error(f"sizes must be at least {PAGE * 20:,}, so that page {PAGE} exists")
    return options


def _numbers(text):
    return tuple(sorted(int(part.replace("_", "")) for part in text.split(",") if part.strip()))


def _databases(text):
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    if not chosen or set(chosen) - set(DATABASES):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(DATABASES)}")
    return chosen


_interrupted = False


def _interrupt(signal_number, frame):
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _start_postgresql(stack):
    """A throwaway PostgreSQL server (tests/postgres.py), stopped and removed when `stack` closes."""
    server = PostgreSQL()
    stack.callback(server.stop)  # before start(), so an interrupted start is cleaned up too
    server.start()
    return server


def bench_one(kind, size, url, scratch, rounds):
    """Seed the empty database at `url` with `size` credentials, serve it, and time every route.

    Returns a dict: kind, size, seed_seconds, timings ({route: [milliseconds]}),
    rss_before and rss_after (the worker's VmRSS in bytes).
    """
    key = encryption.generate_key()
    started = time.perf_counter()
    token, credential_ids = seed(url, key, size)
    seed_seconds = time.perf_counter() - started
    print(f"  seeded in {seed_seconds:.0f} s", flush=True)
    instance = scratch / f"instance-{kind}-{size}"
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("MAILKEEP_")},
        "MAILKEEP_DATABASE_URL": url,
        "MAILKEEP_INSTANCE_PATH": str(instance),
        "MAILKEEP_SECRET_KEY": secrets.token_hex(32),
        "MAILKEEP_ENCRYPTION_KEYS": key,
    }
    with Gunicorn("app:create_app()", ROOT, environment, instance / "app.log") as app, \
            Gunicorn("bare_list:app", scratch, environment, instance / "bare.log") as bare:
        browser = sign_in(app.port)
        api = Client(app.port, {"Authorization": f"Bearer {token}"})
        requests = routes(browser, api, Client(bare.port), credential_ids)
        check(requests)
        rss_before = app.worker_rss()
        timings = measure(requests, rounds)
        rss_after = app.worker_rss()
    print(f"  timed {rounds} rounds; worker RSS {rss_before / 1e6:.0f} -> {rss_after / 1e6:.0f} MB", flush=True)
    return {"kind": kind, "size": size, "seed_seconds": seed_seconds, "timings": timings,
            "rss_before": rss_before, "rss_after": rss_after}


def seed(url, key, size):
    """Migrate the empty database at `url` and fill it through the models (see the module's docstring).

    `key` is the encryption key the app will be given. Returns (an admin's API
    token, the credential ids as a list).
    """
    database.bind(url)
    try:
        keyring = encryption.KeyRing(encryption.parse_keys(key))
        migrations.upgrade(keyring)
        keys.check(keyring)  # records the key's fingerprint, as the app's first start would
        with database.db.connection_context():
            with database.db.atomic():
                groups = [models.Group.create(name=f"Team {number:02d}", description=f"The team {number:02d}")
                          for number in range(1, GROUPS + 1)]
            ids = []
            for start in range(0, size, BATCH):
                with database.db.atomic():
                    for number in range(start, min(start + BATCH, size)):
                        ids.append(_seed_credential(keyring, number, size, groups))
                if start and start % (BATCH * 10) == 0:
                    print(f"  {start:,} credentials", flush=True)
            with database.db.atomic():
                admin = models.User.add(ADMIN, ADMIN_PASSWORD, "admin")
                _, token = models.ApiToken.issue(admin, "bench")
            if database.is_postgresql():
                database.db.execute_sql("VACUUM ANALYZE")  # as autovacuum would soon after a bulk load
            else:
                database.db.execute_sql("PRAGMA optimize")
        return token, ids
    finally:
        database.unbind()


def _seed_credential(keyring, number, size, groups):
    """Store credential `number` (of `size`) with its password, custom data and alias; return its id."""
    purpose = PURPOSES[number % len(PURPOSES)]
    domain = f"example-{number % HOSTS:02d}.net"
    protocol = protocols.IMAP if number % 5 else protocols.POP3
    description = f"{purpose.capitalize()} mailbox of team {number % GROUPS + 1:02d}"
    values = {
        "name": f"{purpose.capitalize()} {number:06d}",
        "description": description + (f", ask {RARE_TERM}" if number == size // 2 else ""),
        "group": groups[number % GROUPS],
        "protocol": protocol,
        "host": f"{protocol.lower()}.{domain}",
        "port": 993 if protocol == protocols.IMAP else 995,
        "security": protocols.IMPLICIT_TLS,
        "username": f"user{number:06d}@{domain}",
        "folder": "INBOX",
        "auth": protocols.PASSWORD,
        "client_id": "", "token_url": "", "scope": "",
    }
    custom_data = ([("cost-centre", f"CC-{number % 97:02d}"), ("owner", f"owner{number % 13}@{domain}")]
                   if number % CUSTOM_DATA_EVERY == 0 else ())
    credential = models.Credential().store(keyring, values, {"password": f"seeded password {number}"}, custom_data)
    if number % ALIAS_EVERY == 0:
        models.Alias(address=f"alias{number:06d}@{domain}", credential=credential, workspace=f"ws-{number % 7}",
                     project_type="support", client=f"Client {number % 31}", description="Seeded").save()
    return credential.id


class Gunicorn:
    """gunicorn serving `app` (a WSGI spec such as ``app:create_app()``) from `folder` with one worker and four
    threads at a free loopback port (``port``), its log in `log`; stopped (its whole process group) on exit."""

    def __init__(self, app, folder, environment, log):
        self.app, self.folder, self.environment, self.log = app, folder, environment, log
        self.port = _free_port()
        self.process = None

    def __enter__(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "4", "--bind", f"{HOST}:{self.port}",
                 "--pythonpath", str(ROOT), "--no-control-socket", "--log-level", "warning", self.app],
                cwd=self.folder, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only this script, which stops the server itself
            )
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def _wait_until_serving(self):
        deadline = time.monotonic() + GUNICORN_START_SECONDS
        while self.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1):
                if self._worker_pid() is not None:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn ({self.app}) did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        """Stop the server and its worker (SIGTERM to the process group, SIGKILL after 30 seconds)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _worker_pid(self):
        path = pathlib.Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            children = path.read_text().split()
            return int(children[0]) if children else None
        return None

    def worker_rss(self):
        """The worker process's resident set size (VmRSS of /proc/<pid>/status), in bytes."""
        status = pathlib.Path(f"/proc/{self._worker_pid()}/status").read_text()
        kilobytes = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
        return kilobytes * 1024


class Client:
    """An HTTP/1.1 client on one kept-alive connection to the loopback `port`, keeping the cookies it is
    given and sending `headers` with every request."""

    def __init__(self, port, headers=None):
        self.port = port
        self.headers = dict(headers or {})
        self.cookies = {}
        self.connection = None

    def request(self, method, path, body=None, headers=None):
        """Send one request; return (status, response headers as a Message, body as bytes).

        Reconnects once when the server has closed the kept-alive connection.
        """
        headers = {**self.headers, **(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_SECONDS)
            try:
                self.connection.request(method, path, body, headers)
                response = self.connection.getresponse()
                answer = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        for header in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.partition(";")[0]
        return response.status, response.headers, answer


def sign_in(port):
    """A Client signed in as the bench's admin: the login form fetched, then posted with its CSRF token."""
    client = Client(port)
    status, _, page = client.request("GET", "/login")
    field = re.search(rb'<input[^>]*name="csrf_token"[^>]*>', page)
    token = field and re.search(rb'value="([^"]+)"', field.group(0))
    if status != 200 or not token:
        raise RuntimeError(f"no sign-in form with a CSRF token at /login (HTTP {status})")
    form = urllib.parse.urlencode({"username": ADMIN, "password": ADMIN_PASSWORD,
                                   "csrf_token": token.group(1).decode()})
    status, headers, _ = client.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
    if status not in (302, 303) or "/login" in (headers.get("Location") or ""):
        raise RuntimeError(f"signing in failed (HTTP {status})")
    return client


def routes(browser, api, bare, credential_ids):
    """{route name: a callable that requests it once and returns (status, body)}: the pages through the
    signed-in `browser`, the API through `api` (a Client with the token), the baseline through `bare`."""
    requests = {}
    for name, (_, method, path, headers) in ROUTES.items():
        if name == ALIAS_ROUTE:
            continue
        client = api if path.startswith("/api/") else bare if name == BARE_ROUTE else browser
        requests[name] = _getter(client, method, path, headers)
    serial = itertools.count(1)
    run = secrets.token_hex(3)
    picker = random.Random(1)

    def create_alias():
        """A new address each time, routed through a credential picked at random."""
        body = json.dumps({"address": f"bench-{run}-{next(serial)}@aliases.example.org",
                           "credential_id": picker.choice(credential_ids), "workspace": "bench"})
        status, _, answer = api.request("POST", "/api/v1/aliases", body, {"Content-Type": "application/json"})
        return status, answer

    requests[ALIAS_ROUTE] = create_alias
    return requests


def _getter(client, method, path, headers):
    def get():
        status, _, body = client.request(method, path, None, headers)
        return status, body
    return get


def check(requests):
    """Request every route once and make sure it answers what it should (the right status, rows, page);
    raise RuntimeError naming the route otherwise."""
    rows = re.compile(rb'<tr id="credential-\d+"')
    expected_rows = {"list": 20, "list_htmx": 20, "search_common": 20, "search_rare": 1, "page": 20, BARE_ROUTE: 20}
    for name, request in requests.items():
        status, body = request()
        problem = None
        if status != (201 if name == ALIAS_ROUTE else 200):
            problem = f"HTTP {status}"
        elif name in expected_rows and len(rows.findall(body)) != expected_rows[name]:
            problem = f"{len(rows.findall(body))} credential rows instead of {expected_rows[name]}"
        elif name == "list_htmx" and b"<html" in body.lower():
            problem = "a whole page instead of the htmx partial"
        elif name == "page" and f"Page {PAGE} of".encode() not in body:
            problem = f"not page {PAGE}"
        elif name == "api_list" and len(json.loads(body)["items"]) != 20:
            problem = "not 20 items"
        elif name in ("aliases", "alias_form") and b"alias" not in body.lower():
            problem = "no alias page"
        if problem:
            raise RuntimeError(f"{ROUTES[name][0]}: {problem}: {body[:300]!r}")


def measure(requests, rounds):
    """Request each route once per round, round-robin, the first route rotating from round to round; return
    {route: [milliseconds, ...]} of the `rounds` timed rounds (after WARM_UP_ROUNDS untimed ones).

    Raises RuntimeError when a request fails (a status other than the check's).
    """
    timings = {name: [] for name in requests}
    names = list(requests)
    for round_number in range(WARM_UP_ROUNDS + rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            status, body = requests[name]()
            elapsed = (time.perf_counter() - started) * 1000
            if status not in (200, 201):
                raise RuntimeError(f"{ROUTES[name][0]} answered HTTP {status}: {body[:300]!r}")
            if round_number >= WARM_UP_ROUNDS:
                timings[name].append(elapsed)
    return timings


def percentiles(milliseconds):
    """(p50, p95) of `milliseconds` (a list of at least two durations), in milliseconds."""
    cuts = statistics.quantiles(milliseconds, n=20, method="inclusive")
    return statistics.median(milliseconds), cuts[18]


def misses(name, p50, bare_p50):
    """What `name`'s p50 (milliseconds) misses, in words, or "": the GET routes are held to TARGET_RATIO of
    the bare page's p50 (`bare_p50`), alias creation (a write) to TARGET_ALIAS_MS."""
    if name == ALIAS_ROUTE:
        return f"{p50:.1f} ms, target < {TARGET_ALIAS_MS:g} ms" if p50 >= TARGET_ALIAS_MS else ""
    if name != BARE_ROUTE and p50 / bare_p50 > TARGET_RATIO:
        return f"{p50 / bare_p50:.1f}x the bare page, target ≤ {TARGET_RATIO:g}x"
    return ""


def missed_targets(results):
    """The targets missed at the largest size measured on each database, in words (a list)."""
    largest = {result["kind"]: result["size"] for result in results}
    missed = []
    for result in results:
        if result["size"] != largest[result["kind"]]:
            continue
        where = f"{_label(result['kind'])} at {result['size']:,}"
        bare = statistics.median(result["timings"][BARE_ROUTE])
        for name, times in result["timings"].items():
            if miss := misses(name, statistics.median(times), bare):
                missed.append(f"{ROUTES[name][0]} on {where} ({miss})")
        if result["rss_after"] >= TARGET_RSS_BYTES:
            missed.append(f"worker RSS on {where} ({result['rss_after'] / 1e6:.0f} MB, target < "
                          f"{TARGET_RSS_BYTES / 1e6:g} MB)")
    return missed


def render(results, options):
    """The results as Markdown: what was measured, how, and one table per database and size."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    lines = [
        "# List benchmark",
        "",
        textwrap.fill(
            f"`bench/list.py`{' --quick' if options.quick else ''}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"commit {commit}{dirty}; Python {platform.python_version()}, SQLite {_sqlite_version()}, "
            f"{_postgresql_version()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end "
            "(other work on the machine skews the figures, p95 most). "
            f"gunicorn with 1 worker and 4 threads on loopback; {options.rounds} requests per route, round-robin "
            f"(the first route rotating), after {WARM_UP_ROUNDS} untimed rounds; one kept-alive connection per client "
            f"(browser session, API token, bare page). Seeded through the models: {GROUPS} groups, one alias per "
            f"{ALIAS_EVERY} credentials, custom data on one in {CUSTOM_DATA_EVERY}; every name starts with one of "
            f"{len(PURPOSES)} words, so the common term's matches are the last quarter of the name order. "
            "\"Ratio\": the route's p50 over the bare page's p50; \"growth\": its p50 over its own at the smallest "
            f"size. Targets at the largest size: the GET routes' p50 within {TARGET_RATIO:g}x of the bare page, "
            f"alias creation under {TARGET_ALIAS_MS:g} ms, worker RSS after the run under "
            f"{TARGET_RSS_BYTES / 1e6:g} MB (MB = 10^6 bytes); a miss is marked ✗.", width=120),
        "",
    ]
    smallest = {}
    for result in results:
        smallest.setdefault(result["kind"], result)
    for result in results:
        timings = result["timings"]
        bare = statistics.median(timings[BARE_ROUTE])
        first = smallest[result["kind"]]
        growth = first is not result
        lines += [
            f"## {_label(result['kind'])}, {result['size']:,} credentials",
            "",
            f"Seeded in {result['seed_seconds']:.0f} s. Worker RSS {result['rss_before'] / 1e6:.0f} MB before the "
            f"timed rounds, {result['rss_after'] / 1e6:.0f} MB after"
            + (" ✗." if result["rss_after"] >= TARGET_RSS_BYTES else "."),
            "",
            "| Route | p50 (ms) | p95 (ms) | ratio to bare" + (f" | growth from {first['size']:,}" if growth else "")
            + " |",
            "| --- | ---: | ---: | ---:" + (" | ---:" if growth else "") + " |",
        ]
        for name, times in timings.items():
            p50, p95 = percentiles(times)
            cells = [ROUTES[name][0], f"{p50:.1f}", f"{p95:.1f}",
                     f"{p50 / bare:.2f}" + (" ✗" if misses(name, p50, bare) and name != ALIAS_ROUTE else "")]
            if name == ALIAS_ROUTE and misses(name, p50, bare):
                cells[1] += " ✗"
            if growth:
                cells.append(f"{p50 / statistics.median(first['timings'][name]):.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    missed = missed_targets(results)
    lines.append("**Targets missed:** " + "; ".join(missed) + "." if missed else "**All targets met.**")
    if options.skipped:
        lines += ["", "Skipped: " + "; ".join(options.skipped) + "."]
    return "\n".join(lines) + "\n"


def _label(kind):
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[kind]


def _git(*arguments):
    done = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _sqlite_version():
    import sqlite3
    return sqlite3.sqlite_version


def _postgresql_version():
    found = binaries()
    return f"PostgreSQL {found.parent.name}" if found else "no PostgreSQL"


def _free_port():
    with socket.create_server((HOST, 0)) as listener:
        return listener.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
