"""Fixtures: the application on a fresh database (SQLite, and PostgreSQL for every test that touches the
database), real Dovecot, PostgreSQL and Redis servers, a live server for the browser, and the canary check
that runs after every test.

A test marked ``sqlite_only`` reads SQLite's own files or pragmas and runs on SQLite alone; browser tests
run on SQLite (tests/e2e/conftest.py)."""

import gc
import logging
import os
import shutil
import threading

import pytest
from flask import request
from jinja2 import BytecodeCache
from werkzeug.security import generate_password_hash
from werkzeug.serving import WSGIRequestHandler, make_server

import access
import database
import encryption
import migrations
import models
from app import create_app
from clients import signed_in
from components import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    CHROMIUM_PACKAGE,
    DOVECOT,
    REDIS,
    require_executable,
    require_postgresql,
)
from dovecot import Dovecot, MailUser, write_certificates
from postgres import PostgreSQL
from redis_server import RedisServer
from services import serving
from testdata import (
    CANARY,
    CLIENT_ID,
    CLIENT_SECRET,
    LOOPBACK_POLICY,
    MAILBOX_USER,
    NO_TOKEN_CLIENT_ID,
    OUTBOUND,
    ROTATING_USER,
    SIGN_IN_CLIENT_ID,
    USER_PASSWORD,
    LogRecorder,
    canary_leaks,
    holds_canary,
    recorded_body,
)
from token_server import OAuthClient, TokenServer
from views import serving as serving_views

RESPONSE_BODIES = []
# Places a test's PostgreSQL database leaked the canary to, found before the database is dropped.
DATABASE_LEAKS = []
DATABASE_KINDS = ("sqlite", "postgresql")
TEMPLATE_DATABASE = "mailkeep_template"
TEST_DATABASE = "mailkeep_test"


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: reads SQLite's own files or pragmas, so runs on SQLite only")
    config.addinivalue_line("markers", "postgresql_only: about PostgreSQL itself, so runs on PostgreSQL only")
    config.addinivalue_line("markers", "runs_long: takes seconds by design (processes of its own, deadlines waited "
                                       "out), so it is handed out first, as browser tests are")


def pytest_collection_finish(session):
    """Once every test is collected, Python's cyclic garbage collector stops looking at what is loaded by then
    (gc.freeze: modules, fixtures, the tests themselves) and runs less often: it had taken 8% of a test
    module's time, most of it walking those same objects again on every full collection. Reference counting
    still frees everything at once; only cycles wait longer (Python's gc documentation, gc.freeze), so a
    resource left unclosed in a cycle is reported (an error, filterwarnings) in a later test or at the end."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def runs_long(item):
    """Whether `item` takes seconds by design: it drives the browser, or is marked ``runs_long``."""
    return "browser" in item.fixturenames or item.get_closest_marker("runs_long") is not None


def pytest_collection_modifyitems(config, items):
    """Tests marked sqlite_only (postgresql_only) keep only their SQLite (PostgreSQL) run; the other is
    deselected, reported as such, never skipped.

    The tests that run long (``runs_long``) come first, in their order: pytest-xdist hands out tests in
    collection order as workers free up (a few kept pending on each), so the long ones are spread over the
    workers while the short ones fill the gaps, and none is left to the end to keep the whole run waiting on
    one worker (a webhook test of 12 seconds started last had made the run end 15 seconds after the other
    workers were done). Every worker sorts the same collection the same way, as pytest-xdist requires."""
    kept, dropped = [], []
    for item in items:
        kind = getattr(getattr(item, "callspec", None), "params", {}).get("database_kind")
        other = {"sqlite": "postgresql_only", "postgresql": "sqlite_only"}.get(kind)
        (dropped if other and item.get_closest_marker(other) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = sorted(kept, key=lambda item: not runs_long(item))


def _record_response(response):
    if not response.direct_passthrough:
        # The one exception: the secret of a connection answer to a service account (testdata.recorded_body).
        RESPONSE_BODIES.append(recorded_body(
            response.get_data(), endpoint=request.endpoint, status=response.status_code,
            service_account=access.service_caller(), connection_endpoints=serving_views.CONNECTION_ENDPOINTS,
            secret_fields=serving.SECRET_FIELDS))
    return response


@pytest.fixture(scope="session")
def postgresql_server():
    """A real PostgreSQL from Debian's packages on loopback, with a template database already migrated and
    the database the tests use (``database_url``), a copy of it."""
    require_postgresql()
    with PostgreSQL() as server:
        database.bind(server.create_database(TEMPLATE_DATABASE))
        migrations.upgrade(encryption.KeyRing([os.urandom(32)]))
        database.unbind()
        server.create_database(TEST_DATABASE, template=TEMPLATE_DATABASE)
        server.template_contents = server.contents(TEMPLATE_DATABASE)
        yield server


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A SQLite database file already migrated, so each test's database is a copy of it (like PostgreSQL's
    template database): the migrations themselves have tests of their own (test_schema.py)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "mailkeep.db"
    database.bind(f"sqlite:///{path}")
    migrations.upgrade(encryption.KeyRing([os.urandom(32)]))
    database.unbind()
    return path


@pytest.fixture(scope="session")
def redis_server():
    """A real Redis from Debian's packages on loopback."""
    require_executable(REDIS, "redis-server")
    with RedisServer() as server:
        yield server


@pytest.fixture(params=DATABASE_KINDS)
def database_kind(request):
    """Which database the test runs on: every test that touches the database runs on both."""
    return request.param


@pytest.fixture
def database_url(request, database_kind, tmp_path):
    """A fresh database of `database_kind`, its schema in place and no rows but the default group: a copy of
    a SQLite file migrated once per run, in tmp_path; or the test worker's PostgreSQL database given back the
    template's rows. After the test the canary check reads the database's files (PostgreSQL's: the data files
    the test changed and the write-ahead log it wrote)."""
    if database_kind == "sqlite":
        path = tmp_path / "mailkeep.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    # One database per test worker, given back the template's rows before each test: as fresh as a new copy
    # of the template, at a tenth of the cost (a new database's first connections build its caches anew).
    server = request.getfixturevalue("postgresql_server")
    server.restore(TEST_DATABASE, server.template_contents)
    started, wal_start = server.file_clock(), server.wal_position()
    yield server.url(TEST_DATABASE)
    database.unbind()
    wal = server.wal_since(wal_start)  # checkpoints first, so the data files hold what the test wrote
    leaks = canary_leaks([], "", files=server.files_of(TEST_DATABASE, since=started))
    if holds_canary(wal):
        leaks.append("the write-ahead log")
    if leaks:
        # Deleted rows stay in the files until a vacuum: a new copy, so the next test is not blamed too.
        DATABASE_LEAKS.extend(leaks)
        server.drop_database(TEST_DATABASE)
        server.create_database(TEST_DATABASE, template=TEMPLATE_DATABASE)


@pytest.fixture
def app_config(tmp_path, database_url):
    """The configuration of the application under test; a test may change it before ``app`` is built."""
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEYS": encryption.generate_key(),
        "CA_FILE": None,
        "CONNECTION_TEST_DEADLINE": 5.0,
        # The test servers listen on loopback, on ports the system picks.
        "ALLOWED_PORTS": LOOPBACK_POLICY["ports"],
        "ALLOWED_NETWORKS": LOOPBACK_POLICY["networks"],
        "WTF_CSRF_ENABLED": False,
        # Tests sign in and test a lot; the limits themselves have tests of their own.
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "LOGIN_ACCOUNT_RATE_LIMIT": "1000 per minute",
        "TEST_RATE_LIMIT": "1000 per minute",
        "TEST_RATE_LIMIT_TOTAL": "1000 per minute",
        "SERVICE_READ_RATE_LIMIT": "1000 per minute",
    }


@pytest.fixture(scope="session")
def user_password_hash():
    """USER_PASSWORD hashed the way the tests' users are (models.PASSWORD_HASH_METHOD), once for the run."""
    return generate_password_hash(USER_PASSWORD, method=models.PASSWORD_HASH_METHOD)


class CompiledTemplates(BytecodeCache):
    """Jinja's compiled templates kept in memory for the whole run and shared by every application a test
    builds: each test builds its own, and compiling the templates again for each was most of a page test's
    time. A template whose source changed is compiled again (Jinja compares the source's checksum)."""

    def __init__(self):
        self.compiled = {}

    def load_bytecode(self, bucket):
        if (code := self.compiled.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


def share_url_builders():
    """Werkzeug compiles two URL-building functions for every route of every application (Python source
    through ``ast`` and ``compile``): 26 ms of the 35 ms an application takes to build here, and each test
    builds its own. A builder depends only on the rule's parts, its defaults and whether unknown arguments
    go to the query string, and a default named in the rule as its converter writes it
    (werkzeug/routing/rules.py, ``Rule._compile_builder``; it reaches the rule's converters through its first
    argument, the rule), so the applications of a run share them.

    Raises AssertionError when werkzeug no longer has the method, so a new release is looked at, not
    silently slower."""
    from werkzeug.routing.rules import Rule

    compile_builder = Rule.__dict__.get("_compile_builder")
    assert compile_builder is not None, "werkzeug.routing.Rule._compile_builder is gone: look at share_url_builders"
    builders = {}

    def shared(rule, append_unknown=True):
        # Each default becomes an argument; one named in the rule is baked in as its converter writes it.
        defaults = tuple((name, rule._converters[name].to_url(value) if name in rule._converters else None)
                         for name, value in (rule.defaults or {}).items())
        key = (tuple(rule._trace), defaults, append_unknown)
        if key not in builders:
            builders[key] = compile_builder(rule, append_unknown)
        return builders[key]

    Rule._compile_builder = shared


share_url_builders()

# The users the tests make, and sign in as through the form, get a cheap hash: scrypt costs 0.1 s of CPU a hash
# and a check, several hundred times a run. test_accounts proves Mailkeep's own, read in a process of its own.
models.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1"


@pytest.fixture
def app(request, app_config, user_password_hash):
    """The application on a fresh database with one user of each role (named after it, password
    USER_PASSWORD); a test that uses ``dovecot`` gets one trusting its CA."""
    if "dovecot" in request.fixturenames:
        app_config["CA_FILE"] = str(request.getfixturevalue("dovecot").ca_file)
    application = create_app(app_config)
    application.jinja_env.bytecode_cache = COMPILED_TEMPLATES
    application.after_request(_record_response)
    access.limiter.reset()
    with models.db.connection_context():
        for role in models.ROLES:
            models.User.create(username=role, role=role, password_hash=user_password_hash)
    yield application
    database.unbind()


@pytest.fixture
def client(app):
    """A test client signed in as the admin."""
    return signed_in(app, "admin")


@pytest.fixture
def api(app):
    """A test client whose requests carry the admin's API token."""
    with models.db.connection_context():
        _, token = models.ApiToken.issue(models.User.get(models.User.username == "admin"), "tests")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def db(app):
    """An open database connection for tests that use the models directly."""
    with models.db.connection_context():
        yield models.db


@pytest.fixture(autouse=True)
def canary_never_leaks(tmp_path):
    """After each test: no run of four characters of the canary is in a response body, a log record
    (DEBUG included), or a database file (SQLite's files, or a PostgreSQL database's files and WAL)."""
    recorder, root = LogRecorder(), logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    RESPONSE_BODIES.clear()
    DATABASE_LEAKS.clear()
    OUTBOUND.clear()
    yield
    root.removeHandler(recorder)
    root.setLevel(level)
    leaks = canary_leaks(RESPONSE_BODIES + OUTBOUND, "\n".join(recorder.lines), files=tmp_path.glob("*.db*")) \
        + DATABASE_LEAKS
    assert not leaks, f"the canary secret leaked to: {leaks}"


@pytest.fixture(scope="session")
def token_server():
    """An OAuth2 authorization server on loopback: CLIENT_ID's tokens log in as MAILBOX_USER; NO_TOKEN_CLIENT_ID
    gets answers without an access_token; people sign in to SIGN_IN_CLIENT_ID as MAILBOX_USER. Every token,
    refresh token and authorization code it issues holds the canary, so the canary check catches one that leaks."""
    clients = {
        CLIENT_ID: OAuthClient(CLIENT_SECRET, MAILBOX_USER),
        NO_TOKEN_CLIENT_ID: OAuthClient(CLIENT_SECRET, MAILBOX_USER, omit_access_token=True),
        SIGN_IN_CLIENT_ID: OAuthClient(CLIENT_SECRET, MAILBOX_USER),
    }
    with TokenServer(clients, token_marker=CANARY) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory, token_server):
    """A real Dovecot on 127.0.0.1 with IMAP and POP3 on implicit-TLS and STARTTLS ports. The password is the
    canary; OAuth2 bearer tokens from ``token_server`` log in too (SASL XOAUTH2 and OAUTHBEARER)."""
    require_executable(DOVECOT, "dovecot-imapd")
    with Dovecot(
        tmp_path_factory.mktemp("dovecot"), users=[MailUser(MAILBOX_USER, CANARY)], binary=DOVECOT,
        oauth2_introspection_url=token_server.introspection_url,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def rotating_dovecot(tmp_path_factory):
    """A real Dovecot of its own on 127.0.0.1 whose user ROTATING_USER (password CANARY to begin with) has its
    password changed by the tests, the previous one kept valid on request (``Dovecot.set_password``)."""
    require_executable(DOVECOT, "dovecot-imapd")
    with Dovecot(tmp_path_factory.mktemp("rotating"), users=[MailUser(ROTATING_USER, CANARY)], binary=DOVECOT,
                 previous_passwords=True) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_without_tls(tmp_path_factory):
    """A real Dovecot on 127.0.0.2 with TLS off, so it offers no STARTTLS (and is not "local" to itself)."""
    require_executable(DOVECOT, "dovecot-imapd")
    with Dovecot(
        tmp_path_factory.mktemp("dovecot-plain"), listen="127.0.0.2", ssl=False,
        users=[MailUser(MAILBOX_USER, CANARY)], binary=DOVECOT,
    ) as server:
        yield server


def _certificates(tmp_path_factory, names, expired=False):
    directory = tmp_path_factory.mktemp("certificates")
    return write_certificates(directory, names, expired=expired)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """(CA file, certificate, key) for a purpose-built TLS server on 127.0.0.1."""
    return _certificates(tmp_path_factory, ("localhost", "127.0.0.1"))


@pytest.fixture(scope="session")
def expired_certificates(tmp_path_factory):
    """Like ``certificates``, but the server certificate expired yesterday."""
    return _certificates(tmp_path_factory, ("localhost", "127.0.0.1"), expired=True)


@pytest.fixture(scope="session")
def other_name_certificates(tmp_path_factory):
    """Like ``certificates``, but issued to mail.example.test only, not to the address the tests dial."""
    return _certificates(tmp_path_factory, ("mail.example.test",))


def _buffered(application):
    """WSGI middleware that reads each response whole and closes it before the server sends it.

    Werkzeug's development server skips closing a response when the browser
    resets the connection mid-way (a navigation cancels a script download), which
    leaks the open static file; reading first leaves nothing open to leak.
    """
    def serve(environ, start_response):
        body = application(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()
    return serve


class _PathOnlyLog(WSGIRequestHandler):
    """Werkzeug's request handler, logging each request's path without its query: an OAuth2 callback's
    query holds the authorization code, which no log may keep (production's gunicorn access log leaves the
    query out too: see the Makefile)."""

    def log_request(self, code="-", size="-"):
        full = self.path
        self.path = full.partition("?")[0]
        try:
            super().log_request(code, size)
        finally:
            self.path = full


@pytest.fixture
def live_server(app):
    """The application served over HTTP on loopback, in a thread, for the browser."""
    server = make_server("127.0.0.1", 0, _buffered(app), threaded=True, request_handler=_PathOnlyLog)
    # Request threads are kept track of, so the teardown waits for those still answering (a script the
    # browser was still fetching) before the app's database is unbound under them: a request whose database
    # went away mid-way drops its response, and a static file with it, unclosed.
    server.daemon_threads = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()  # joins the request threads (socketserver.ThreadingMixIn.block_on_close)


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """Every page prefers reduced motion, so Pico's transitions end at once and a computed style read in a
    test is the settled one (pytest-playwright's context hook)."""
    return {**browser_context_args, "reduced_motion": "reduce"}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's headless Chromium (components.CHROMIUM), never a downloaded browser (pytest-playwright's launch
    hook)."""
    require_executable(CHROMIUM, CHROMIUM_PACKAGE)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS}
