"""Values the tests share, and the check that the shared secret never leaks."""

import logging

import models

# The one secret the suite uses everywhere: the test mailbox's password, and so what the credentials
# store. After every test it must not appear in a response body, a log record or the database files.
CANARY = "canary-7f3c9e2b-do-not-leak"
MAILBOX_USER = "alice@example.test"
# The OAuth2 client secret contains the canary, so the same check catches it leaking.
CLIENT_ID = "mailkeep-test"
CLIENT_SECRET = f"client-{CANARY}"
NO_TOKEN_CLIENT_ID = "broken-provider"
# The password of the test users "viewer", "editor" and "admin".
USER_PASSWORD = "a long test password"
# Test servers listen on loopback at ports the system picks: the outbound policy must allow both.
LOOPBACK_POLICY = {"ports": "1-65535", "networks": "127.0.0.0/8,::1/128"}


def stored_credential(keyring, password=CANARY, **fields):
    """Save and return an IMAP credential whose `password` `keyring` encrypts; `fields` override the rest.

    Needs an open database connection.
    """
    values = dict(name="Support", description="Helpdesk mailbox", group=models.Group.default(), protocol="IMAP",
                  host="imap.example.com", port=993, security="ssl_tls", username="help@example.com", folder="INBOX")
    return models.Credential().store(keyring, {**values, **fields}, {"password": password})


def canary_leaks(bodies, log_text, folder):
    """Where the canary shows: a list of places (response bodies, the log, database files in `folder`)."""
    leaks = [f"response {body[:120]!r}" for body in bodies if CANARY.encode() in body]
    if CANARY in log_text:
        leaks.append("the log")
    leaks += [path.name for path in folder.glob("*.db*") if CANARY.encode() in path.read_bytes()]
    return leaks


class LogRecorder(logging.Handler):
    """Every log record of a test, from every thread, formatted as text."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))
