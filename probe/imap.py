"""The IMAP half of a connection test, from the greeting to LOGOUT (RFC 3501, RFC 9051), via imapclient.

The folder is opened with EXAMINE, the read-only SELECT (RFC 3501 section
6.3.2): nothing in the mailbox changes and nothing from it is kept but the
message count.
"""

import contextlib
import imaplib
import re

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

import protocols

from . import network
from .causes import Failure

# Nothing this test reads is legitimately large: a bigger literal is a hostile or broken server.
MAX_LITERAL_BYTES = 64 * 1024

SASL_PREFIX = b"AUTH="


def plan(security):
    """The IMAP steps as (name, title) pairs, after the connection (and implicit TLS) is up."""
    steps = [("greeting", "Greeting")]
    if security == protocols.STARTTLS:
        steps.append(("starttls", "STARTTLS"))
    return steps + [("authenticate", "Log in"), ("folder", "Open folder"), ("logout", "Log out")]


class _IMAP4OnSocket(imaplib.IMAP4):
    """imaplib's IMAP4 speaking over a socket that is already connected (and maybe TLS-wrapped).

    Keeps the last line the server sent, to quote it in a cause, and refuses
    literals over MAX_LITERAL_BYTES so a server cannot make it allocate gigabytes.
    """

    def __init__(self, host, port, sock):
        self._connected_socket = sock
        self.last_line = b""
        super().__init__(host, port)

    def _create_socket(self, timeout=None):
        return self._connected_socket

    def _get_line(self):
        self.last_line = super()._get_line()
        return self.last_line

    def read(self, size):
        if size > MAX_LITERAL_BYTES:
            raise self.abort(f"the server announced a literal of {size} bytes")
        return super().read(size)


class _Client(IMAPClient):
    """IMAPClient over an already connected socket, with imaplib's protocol trace switched off."""

    def __init__(self, host, port, sock):
        self._connected_socket = sock
        super().__init__(host, port=port, ssl=False)
        # The trace would log every server line at DEBUG, and a hostile server may echo secrets.
        self._imap.debug = 0

    def _create_IMAP4(self):
        return _IMAP4OnSocket(self.host, self.port, self._connected_socket)

    @property
    def last_reply(self):
        """The server's last line without its command tag, as text."""
        line = self._imap.last_line.decode("utf-8", "replace")
        tag, _, rest = line.partition(" ")
        return line if tag in ("*", "+") else rest


def converse(attempt, context):
    """Run the IMAP steps on ``attempt.sock``; return the folder's message count.

    `attempt` is the running test (``probe._Attempt``); `context` the SSLContext
    for STARTTLS. Raises Failure naming the cause.
    """
    settings = attempt.settings
    with attempt.step("greeting") as step:
        client = _Client(settings.host, settings.port, attempt.sock)
        capabilities = set(client.capabilities())
        step.details = f"{_greeting_text(client.welcome)} Capabilities: {_describe(capabilities)}."
    try:
        return _after_greeting(attempt, client, capabilities, context)
    finally:
        # imaplib's reader holds its own reference to the socket; only shutdown() releases both.
        # After LOGOUT it has run already, and on a broken connection it may fail: both are fine.
        with contextlib.suppress(OSError):
            client.shutdown()


def _after_greeting(attempt, client, capabilities, context):
    settings = attempt.settings
    if settings.security == protocols.STARTTLS:
        with attempt.step("starttls") as step:
            if b"STARTTLS" not in capabilities:
                raise Failure("starttls_unavailable", reply=_greeting_text(client.welcome))
            client.starttls(context)
            attempt.sock = client.socket()
            capabilities = set(client.capabilities())
            step.details = network.describe_tls(attempt.sock)

    with attempt.step("authenticate") as step:
        step.details = _authenticate(client, capabilities, settings)

    with attempt.step("folder") as step:
        try:
            folder = client.select_folder(settings.folder, readonly=True)
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            reply = client.last_reply
            raise Failure("folder_not_found", reply=reply, hint=_folder_hint(client, settings.folder)) from None
        count = folder[b"EXISTS"]
        step.details = f"EXAMINE {settings.folder}: {count} messages"

    with attempt.step("logout") as step:
        step.details = client.logout().decode("utf-8", "replace")
    return count


def _authenticate(client, capabilities, settings):
    """Log in with LOGIN, or SASL PLAIN when a secret is not ASCII (LOGIN cannot carry it)."""
    if b"LOGINDISABLED" in capabilities:
        raise Failure("plaintext_refused", reason="the server announced LOGINDISABLED")
    ascii_only = (settings.username + settings.password).isascii()
    if not ascii_only and SASL_PREFIX + b"PLAIN" not in capabilities:
        raise Failure("auth_mechanism_unavailable", reason="the password is not ASCII and AUTH=PLAIN is not offered")
    try:
        if ascii_only:
            client.login(settings.username, settings.password)
        else:
            client.plain_login(settings.username, settings.password)
    except LoginError:
        raise Failure("auth_failed", reply=client.last_reply) from None
    return f"{'LOGIN' if ascii_only else 'AUTHENTICATE PLAIN'} as {settings.username}"


def _greeting_text(welcome):
    """The human part of a greeting: ``* OK [CAPABILITY ...] Dovecot ready.`` gives ``Dovecot ready.``"""
    text = welcome.decode("utf-8", "replace")
    return re.sub(r"^\*\s+\w+\s+(\[[^\]]*\]\s*)?", "", text).strip()


def _describe(capabilities):
    """The capabilities that matter for the test: STARTTLS, LOGINDISABLED, SASL mechanisms, IDLE."""
    named = [name for name in (b"STARTTLS", b"LOGINDISABLED", b"IDLE") if name in capabilities]
    mechanisms = sorted(c[len(SASL_PREFIX):] for c in capabilities if c.startswith(SASL_PREFIX))
    parts = [name.decode() for name in named]
    parts.append("SASL " + (", ".join(m.decode() for m in mechanisms) if mechanisms else "none"))
    return ", ".join(parts)


def _folder_hint(client, wanted):
    """Point at the existing folder whose name differs only in case or spacing, or list a few folders."""
    try:
        names = [name for _, _, name in client.list_folders()]
    except (IMAPClientError, OSError):  # the hint is a courtesy; the cause stands without it
        return None

    def squash(name):
        return "".join(name.split()).casefold()

    near = next((name for name in names if squash(name) == squash(wanted)), None)
    if near is not None:
        return f"Did you mean '{near}'? Folder names must match exactly."
    return "The server has: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") + "."
