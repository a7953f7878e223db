"""Two Mailkeep instances (gunicorn) on one PostgreSQL and one Redis, as a team runs it past one process.

Each race runs many rounds: what one instance does must not slip between another's check and write.
"""

import concurrent.futures
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import httpx2
import pytest

import database
import encryption
import migrations
import models
from models import Alias, ApiToken, Credential, Group, User
from testdata import USER_PASSWORD, stored_credential

ROUNDS = 20
# One pytest-xdist worker runs this module, so its module-scoped deployment starts once.
pytestmark = [pytest.mark.xdist_group("instances"), pytest.mark.runs_long]
START_TIMEOUT = 30.0
# The instances serve plain HTTP, yet every httpx2 client loads the system's trust store for the TLS it would
# use elsewhere: a tenth of a second of CPU a client, about six CPU seconds a run. Each client is given this
# context instead, which trusts nothing, so it would refuse any TLS it were used for.
UNUSED_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def _listening_socket():
    """A socket listening on a free loopback port. gunicorn serves on it (``--bind fd://N``): a port found
    free and then closed could be taken by any other connection before gunicorn bound it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


class Instance:
    """One Mailkeep served by gunicorn on a free loopback port, with the environment given."""

    def __init__(self, environment, workdir):
        with _listening_socket() as listener:
            self.port = listener.getsockname()[1]
            self.url = f"http://127.0.0.1:{self.port}"
            self.log = open(workdir / f"instance-{self.port}.log", "wb")  # noqa: SIM115 (closed in stop)
            self.process = subprocess.Popen(
                # As make run serves: the app built in the master (--preload), then forked into two workers.
                [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--threads", "4",
                 "--bind", f"fd://{listener.fileno()}", "--no-control-socket", "app:create_app()"],
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                env={**os.environ, **environment, "MAILKEEP_INSTANCE_PATH": str(workdir / f"instance-{self.port}")},
                stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
            )

    def wait_until_serving(self):
        """Wait until it answers; raise AssertionError with its log if it stopped or never answered."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                httpx2.get(f"{self.url}/login", timeout=1, verify=UNUSED_TLS)
                return
            except httpx2.HTTPError:
                time.sleep(0.1)
        self.log.flush()
        with open(self.log.name) as log:
            raise AssertionError(f"instance on {self.port} did not start: {log.read()[-3000:]}")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def deployment(postgresql_server, redis_server, tmp_path_factory):
    """Two instances started at once on a new, empty PostgreSQL database and the test Redis, with two
    admins ("first", "second") and their API tokens; both instances must come up (the schema is made once,
    under its lock). Yields (instances, environment, tokens); the database is bound in this process."""
    redis_server.flush()
    name = f"instances_{uuid.uuid4().hex[:8]}"
    url = postgresql_server.create_database(name)
    environment = {
        "MAILKEEP_DATABASE_URL": url, "MAILKEEP_REDIS_URL": redis_server.url,
        "MAILKEEP_SECRET_KEY": "shared-by-both-instances", "MAILKEEP_ENCRYPTION_KEYS": encryption.generate_key(),
        "MAILKEEP_LOGIN_RATE_LIMIT": "1000 per minute", "MAILKEEP_TEST_RATE_LIMIT": "1000 per minute",
        "MAILKEEP_TEST_RATE_LIMIT_TOTAL": "1000 per minute",
    }
    instances = _start_both(environment, tmp_path_factory.mktemp("instances"))
    yield instances, environment, _users_and_tokens(url)
    for instance in instances:
        instance.stop()
    database.unbind()
    postgresql_server.drop_database(name)


def _start_both(environment, workdir):
    instances = [Instance(environment, workdir) for _ in range(2)]
    try:
        for instance in instances:
            instance.wait_until_serving()
    except AssertionError:
        for instance in instances:
            instance.stop()
        raise
    return instances


def _users_and_tokens(url):
    """Two admins ("first", "second"), each with an API token; the database bound in this process."""
    database.bind(url)
    with models.db.connection_context():
        tokens = {}
        for name in ("first", "second"):
            user = User.add(name, USER_PASSWORD, "admin")
            tokens[name] = ApiToken.issue(user, "race")[1]
    return tokens


def _signed_in(instance, username):
    """An httpx client signed in to `instance` as `username` through its forms (CSRF included)."""
    client = httpx2.Client(base_url=instance.url, timeout=20, verify=UNUSED_TLS)
    token = CSRF.search(client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": username, "password": USER_PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text[-500:]
    return client


def _failed_sign_in(instance):
    """Try to sign in to `instance` with a wrong password, as a browser would (CSRF token and all); the status."""
    with httpx2.Client(base_url=instance.url, timeout=20, verify=UNUSED_TLS) as client:
        token = CSRF.search(client.get("/login").text).group(1)
        return client.post("/login", data={"username": "first", "password": "wrong", "csrf_token": token}).status_code


def test_two_instances_started_at_once_on_empty_databases_both_come_up(postgresql_server, redis_server, tmp_path):
    for attempt in range(3):
        name = f"startup_{attempt}_{uuid.uuid4().hex[:6]}"
        url = postgresql_server.create_database(name)
        instances = _start_both({"MAILKEEP_DATABASE_URL": url, "MAILKEEP_REDIS_URL": redis_server.url,
                                 "MAILKEEP_SECRET_KEY": "k", "MAILKEEP_ENCRYPTION_KEYS": encryption.generate_key()},
                                tmp_path)
        for instance in instances:
            instance.stop()
        versions = postgresql_server.execute("SELECT version FROM schema_version ORDER BY version", database=name)
        assert [version for (version,) in versions] == [migration.VERSION for migration in migrations.MIGRATIONS]
        postgresql_server.drop_database(name)


def test_deleting_a_credential_while_the_other_instance_adds_an_alias_to_it(deployment):
    (first, second), environment, tokens = deployment
    keyring = encryption.KeyRing(encryption.parse_keys(environment["MAILKEEP_ENCRYPTION_KEYS"]))
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    outcomes = set()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for round_number in range(ROUNDS):
            with models.db.connection_context():
                credential = stored_credential(keyring, name=f"Race {round_number}",
                                               username=f"race{round_number}@example.com", group=Group.default())
            deleting = pool.submit(httpx2.delete, f"{first.url}/api/v1/credentials/{credential.id}",
                                   headers=headers["first"], timeout=20, verify=UNUSED_TLS)
            adding = pool.submit(httpx2.post, f"{second.url}/api/v1/aliases", headers=headers["second"], timeout=20,
                                 json={"address": f"race{round_number}@example.com", "credential_id": credential.id},
                                 verify=UNUSED_TLS)
            deleted, added = deleting.result(), adding.result()
            with models.db.connection_context():
                alias = Alias.get_or_none(Alias.address_key == f"race{round_number}@example.com")
                exists = Credential.select().where(Credential.id == credential.id).exists()
            if added.status_code == 201:
                # The alias won: it routes through a credential that still exists, and the delete says why not.
                assert alias is not None and exists and deleted.status_code == 409, (added.text, deleted.text)
                assert "alias" in deleted.json()["error"]
                outcomes.add("alias first")
            else:
                # The delete won: no orphan, and the alias is refused for the true reason.
                assert alias is None and not exists and deleted.status_code == 204, (added.text, deleted.text)
                reason = str(added.json())
                assert "deleted meanwhile" in reason or "does not exist" in reason, reason
                assert "took this name or address" not in reason
                outcomes.add("delete first")
    assert outcomes  # at least one of the two orders happened; which, the scheduler decides


@pytest.mark.parametrize("change", ["demote", "disable"])
def test_two_admins_demoting_or_disabling_each_other_at_once_always_leave_an_active_admin(deployment, change):
    (first_instance, second_instance), _, _ = deployment
    with models.db.connection_context():
        ids = {user.username: user.id for user in User.select()}

    def act(client, target):
        token = CSRF.search(client.get("/users/").text)
        if token is None:  # demoted already: the users page is not theirs any more
            return None
        path, data = (f"/users/{ids[target]}/role", {"role": "editor"}) if change == "demote" else \
            (f"/users/{ids[target]}/inactive", {})
        return client.post(path, data={**data, "csrf_token": token.group(1)}).status_code

    barrier = threading.Barrier(2)

    def race(client, target):
        barrier.wait()
        return act(client, target)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(ROUNDS):
            with models.db.connection_context():
                User.update(role="admin", active=True).execute()
            first, second = _signed_in(first_instance, "first"), _signed_in(second_instance, "second")
            try:
                answers = list(pool.map(race, (first, second), ("second", "first")))
            finally:
                first.close()
                second.close()
            with models.db.connection_context():
                assert User.active_admins().count() >= 1, answers


def test_sign_in_and_connection_test_limits_hold_across_instances(postgresql_server, redis_server, tmp_path):
    redis_server.flush()
    name = f"limits_{uuid.uuid4().hex[:8]}"
    url = postgresql_server.create_database(name)
    environment = {"MAILKEEP_DATABASE_URL": url, "MAILKEEP_REDIS_URL": redis_server.url,
                   "MAILKEEP_SECRET_KEY": "k", "MAILKEEP_ENCRYPTION_KEYS": encryption.generate_key(),
                   "MAILKEEP_LOGIN_RATE_LIMIT": "4 per minute", "MAILKEEP_TEST_RATE_LIMIT": "3 per minute"}
    instances = _start_both(environment, tmp_path)
    try:
        tokens = _users_and_tokens(url)
        sign_ins = [_failed_sign_in(instances[attempt % 2]) for attempt in range(5)]
        assert sign_ins[-1] == 429 and 429 not in sign_ins[:4], sign_ins
        headers = {"Authorization": f"Bearer {tokens['first']}"}
        tests = [httpx2.post(f"{instances[attempt % 2].url}/api/v1/connection-tests", headers=headers, timeout=20,
                             json={"protocol": "IMAP"}, verify=UNUSED_TLS).status_code for attempt in range(4)]
        assert tests[-1] == 429 and 429 not in tests[:3], tests
    finally:
        for instance in instances:
            instance.stop()
        database.unbind()
        postgresql_server.drop_database(name)


def test_connection_test_slots_are_shared_by_the_instances(postgresql_server, redis_server, tmp_path):
    redis_server.flush()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts and never greets: a test against it holds its slot for the greeting's budget
    name = f"slots_{uuid.uuid4().hex[:8]}"
    url = postgresql_server.create_database(name)
    environment = {"MAILKEEP_DATABASE_URL": url, "MAILKEEP_REDIS_URL": redis_server.url,
                   "MAILKEEP_SECRET_KEY": "k", "MAILKEEP_ENCRYPTION_KEYS": encryption.generate_key(),
                   "MAILKEEP_CONNECTION_TEST_LIMIT": "1", "MAILKEEP_ALLOWED_PORTS": "1-65535",
                   "MAILKEEP_ALLOWED_NETWORKS": "127.0.0.0/8", "MAILKEEP_CONNECTION_TEST_DEADLINE": "4"}
    instances = _start_both(environment, tmp_path)
    try:
        headers = {"Authorization": f"Bearer {_users_and_tokens(url)['first']}"}
        settings = {"protocol": "IMAP", "host": "127.0.0.1", "port": silent.getsockname()[1], "security": "ssl_tls",
                    "username": "someone@example.com", "password": "not-sent", "folder": "INBOX"}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            holding = pool.submit(httpx2.post, f"{instances[0].url}/api/v1/connection-tests", headers=headers,
                                  json=settings, timeout=30, verify=UNUSED_TLS)
            time.sleep(1)  # the first test has its slot and waits for a greeting
            busy = httpx2.post(f"{instances[1].url}/api/v1/connection-tests", headers=headers, json=settings,
                               timeout=30, verify=UNUSED_TLS)
            assert busy.status_code == 429 and busy.headers["Retry-After"]
            assert holding.result().status_code == 200
    finally:
        silent.close()
        for instance in instances:
            instance.stop()
        database.unbind()
        postgresql_server.drop_database(name)
