"""Values the tests share, and the check that the shared secret never leaks."""

import json
import logging
import re

import models

# The one secret the suite uses everywhere: the test mailbox's password, and so what the credentials
# store. After every test no run of four of its characters may appear in a response body, a log record or
# the database files: a "~" in every four, which base64, hex and HTML never hold, keeps ciphertexts and
# tokens from matching by chance.
CANARY = "ca~na~ry~7f~3c~9e~2b~do~nt~le~ak"
LEAK_RUN = 4
MAILBOX_USER = "alice@example.test"
# The user of the Dovecot whose password tests change while it runs (conftest's rotating_dovecot).
ROTATING_USER = "rota@example.test"
# The OAuth2 client secret contains the canary, so the same check catches it leaking.
CLIENT_ID = "mailkeep-test"
CLIENT_SECRET = f"client-{CANARY}"
NO_TOKEN_CLIENT_ID = "broken-provider"
# The OAuth app people sign in with (OAuth2 sign-in) at the test authorization server; its tokens, refresh
# tokens and authorization codes all hold the canary too (conftest's token_server).
SIGN_IN_CLIENT_ID = "mailkeep-sign-in"
# The password of the test users "viewer", "editor" and "admin".
USER_PASSWORD = "a long test password"
# What Mailkeep sent to the tests' own servers (webhook requests with their headers, emails as sent), as
# bytes: the canary check reads them after every test, like response bodies.
OUTBOUND = []
# Test servers listen on loopback at ports the system picks: the outbound policy must allow both.
LOOPBACK_POLICY = {"ports": "1-65535", "networks": "127.0.0.0/8,::1/128"}


def stored_credential(keyring, password=CANARY, **fields):
    """Save and return an IMAP credential whose `password` `keyring` encrypts; `fields` override the rest.

    Needs an open database connection.
    """
    values = dict(name="Support", description="Helpdesk mailbox", group=models.Group.default(), protocol="IMAP",
                  host="imap.example.com", port=993, security="ssl_tls", username="help@example.com", folder="INBOX")
    return models.Credential().store(keyring, {**values, **fields}, {"password": password})


def recorded_body(body, *, endpoint, status, service_account, connection_endpoints, secret_fields):
    """What the canary check reads of a response `body` (bytes): all of it, except in one case, the only place
    a secret may leave Mailkeep: a 200 answer of one of `connection_endpoints` to a service account
    (`service_account` not None), whose JSON fields named in `secret_fields` (the password, the access token)
    are left out; every other field of it is still read."""
    if endpoint not in connection_endpoints or status != 200 or service_account is None:
        return body
    answer = json.loads(body)
    return json.dumps({name: value for name, value in answer.items() if name not in secret_fields}).encode()


def canary_runs():
    """Every run of LEAK_RUN consecutive characters of the canary, as bytes."""
    return {CANARY[start:start + LEAK_RUN].encode() for start in range(len(CANARY) - LEAK_RUN + 1)}


def holds_canary(data):
    """True when `data` (bytes) holds any run of LEAK_RUN characters of the canary.

    Every run holds a "~", so only the windows around each "~" in `data` are compared: a database's
    files and write-ahead log run to tens of megabytes per test.
    """
    runs = canary_runs()
    for match in re.finditer(b"~", data):
        window = data[max(match.start() - LEAK_RUN + 1, 0):match.start() + LEAK_RUN]
        if any(window[start:start + LEAK_RUN] in runs for start in range(len(window) - LEAK_RUN + 1)):
            return True
    return False


def canary_leaks(bodies, log_text, files=()):
    """Where a piece of the canary shows: a list of places (response bodies, the log, the `files`)."""
    leaks = [f"response {body[:120]!r}" for body in bodies if holds_canary(body)]
    if holds_canary(log_text.encode()):
        leaks.append("the log")
    leaks += [path.name for path in files if holds_canary(_contents(path))]
    return leaks


def _contents(path):
    """The bytes of `path`, or none when it went away meanwhile (a database removes temporary files)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class LogRecorder(logging.Handler):
    """Every log record of a test, from every thread, formatted as text."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))
