"""The IMAP half of a connection test, from the greeting to LOGOUT (RFC 3501, RFC 9051), via imapclient.

The folder is opened with EXAMINE, the read-only SELECT (RFC 3501 section
6.3.2): nothing in the mailbox changes and nothing from it is kept but the
message count and the folder names (``LIST``) for the folder picker.
"""

import contextlib
import imaplib
import re

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from . import protocols

from . import network, oauth
from .causes import Failure

# Nothing this test reads is legitimately large: a bigger literal is a hostile or broken server.
MAX_LITERAL_BYTES = 64 * 1024
MAX_FOLDERS = 500

SASL_PREFIX = b"AUTH="


# How this protocol names the steps that differ from POP3's (see probe.dialogue).
STARTTLS_TITLE = "STARTTLS"
COUNT_STEP = ("folder", "Open folder")


class _IMAP4OnSocket(imaplib.IMAP4):
    """imaplib's IMAP4 speaking over a socket that is already connected (and maybe TLS-wrapped).

    Every line and literal passes the attempt's ReplyGuard, and literals over
    MAX_LITERAL_BYTES are refused before they are read, so a server cannot make
    it allocate gigabytes.
    """

    def __init__(self, host, port, sock, guard):
        self._connected_socket = sock
        self.guard = guard
        super().__init__(host, port)

    def _create_socket(self, timeout=None):
        return self._connected_socket

    def _get_line(self):
        return self.guard.seen(super()._get_line())

    def read(self, size):
        """Read a literal of `size` bytes, refusing one over MAX_LITERAL_BYTES before reading it."""
        if size > MAX_LITERAL_BYTES:
            raise self.abort(f"the server announced a literal of {size} bytes")
        return self.guard.seen(super().read(size))


class _Client(IMAPClient):
    """IMAPClient over an already connected socket, with imaplib's protocol trace switched off."""

    def __init__(self, host, port, sock, guard):
        self._connected_socket = sock
        self._guard = guard
        super().__init__(host, port=port, ssl=False)
        # The trace would log every server line at DEBUG, and a hostile server may echo secrets.
        self._imap.debug = 0

    def _create_IMAP4(self):
        return _IMAP4OnSocket(self.host, self.port, self._connected_socket, self._guard)

    @property
    def last_reply(self):
        """The server's last line without its command tag."""
        line = self._guard.last_reply
        tag, _, rest = line.partition(" ")
        return line if tag in ("*", "+") else rest


class Session:
    """One IMAP conversation for a connection test, a step per method (see probe.dialogue)."""

    def __init__(self, attempt):
        self.attempt = attempt
        self.settings = attempt.settings
        self.client = None
        self.capabilities = set()
        self._mechanism = None

    def greet(self):
        """Read the greeting and the capabilities; return what they say."""
        self.client = _Client(self.settings.host, self.settings.port, self.attempt.sock, self.attempt.guard)
        self.capabilities = set(self.client.capabilities())
        return f"{_greeting_text(self.client.welcome)} Capabilities: {_describe(self.capabilities)}."

    def starttls(self):
        """Upgrade to TLS (RFC 3501 section 6.2.1), refusing a server that does not offer it."""
        if b"STARTTLS" not in self.capabilities:
            raise Failure("starttls_unavailable", reply=_greeting_text(self.client.welcome))
        try:
            self.client.starttls(self.attempt.tls_context())
        except IMAPClientAbortError:
            raise
        except IMAPClientError:  # offered, then refused: the password is not sent either way
            raise Failure("starttls_unavailable", reply=self.client.last_reply) from None
        self.attempt.sock = self.client.socket()
        self.capabilities = set(self.client.capabilities())
        return network.describe_tls(self.attempt.sock)

    def mechanism(self):
        """Choose how to log in (see ``_mechanism``); return it in words, e.g. ``"LOGIN as alice@example.com"``."""
        self._mechanism = _mechanism(self.capabilities, self.settings)
        command = "LOGIN" if self._mechanism == "LOGIN" else f"AUTHENTICATE {self._mechanism}"
        return f"{command} as {self.settings.username}"

    def authenticate(self):
        """Log in with the chosen mechanism. Raises Failure: ``auth_failed`` only when the server said NO."""
        settings, mechanism = self.settings, self._mechanism
        try:
            if mechanism == "LOGIN":
                # imaplib quotes the password but not the username, which may hold spaces.
                self.client.login(_quoted(settings.username), settings.password)
            elif mechanism == "PLAIN":
                self.attempt.redact_also(f"\0{settings.username}\0{settings.password}")
                self.client.plain_login(settings.username, settings.password)
            else:
                first = oauth.initial_response(mechanism, settings.username, self.attempt.token)
                self.attempt.redact_also(first)
                # An error challenge after the first response is answered with an empty one (RFC 7628 3.2.3).
                responses = iter([first])
                self.client.sasl_login(mechanism, lambda challenge: next(responses, ""))
        except LoginError as error:
            raise self._login_failure(error) from None

    def _login_failure(self, error):
        """The Failure for a failed login: what the server said decides, not that imapclient raised LoginError."""
        if isinstance(error.__context__, IMAPClientAbortError):  # imapclient wraps a broken connection too
            return error.__context__
        line = self.attempt.guard.last_reply
        reply = self.client.last_reply
        status = reply.partition(" ")[0].upper() if not line.startswith(("*", "+")) else ""
        if status == "NO" and "[PRIVACYREQUIRED]" in reply:
            return Failure("plaintext_refused", reply=reply, reason="PRIVACYREQUIRED")
        if status == "NO":
            # With OAuth2 the client secret was good (the token came); the mailbox refused this login.
            blamed = "username" if self.settings.auth == protocols.OAUTH2 else None
            return Failure("auth_failed", reply=reply, field=blamed)
        if status == "BAD":
            return Failure("protocol_error", reply=reply, reason="it refused the login command as malformed")
        return Failure("protocol_error", reason=str(error)[:200])

    def count(self):
        """EXAMINE the folder and LIST the folders; return (message count, folder names, details)."""
        folder = self.settings.folder
        try:
            examined = self.client.select_folder(folder, readonly=True)
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            reply = self.client.last_reply
            raise Failure("folder_not_found", reply=reply, hint=_folder_hint(self.client, folder)) from None
        count = examined[b"EXISTS"]
        names = _folder_names(self.client)
        return count, names, f"EXAMINE {folder}: {count} messages; LIST: {len(names)} folders"

    def logout(self):
        """Say LOGOUT; return the server's farewell."""
        return self.client.logout().decode("utf-8", "replace")

    def close(self):
        """Release the connection, whatever state it is in."""
        # imaplib's reader holds its own reference to the socket; only shutdown() releases both.
        # After LOGOUT it has run already, and on a broken connection it may fail: both are fine.
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.shutdown()


def _quoted(text):
    """`text` as an IMAP quoted string (RFC 3501 section 4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mechanism(capabilities, settings):
    """How to log in: SASL XOAUTH2 (else OAUTHBEARER, RFC 7628) for OAuth2; LOGIN for a password,
    or SASL PLAIN when the password is not ASCII, which LOGIN cannot carry (RFC 3501 section 9).

    Raises Failure when the server offers no usable way.
    """
    offered = _mechanisms(capabilities)
    if settings.auth == protocols.OAUTH2:
        return oauth.mechanism(offered)
    if b"LOGINDISABLED" in capabilities:
        raise Failure("plaintext_refused", reason="the server announced LOGINDISABLED")
    if (settings.username + settings.password).isascii():
        return "LOGIN"
    if "PLAIN" in offered:
        return "PLAIN"
    raise Failure("auth_mechanism_unavailable",
                  reason="the password is not ASCII and the server does not offer AUTH=PLAIN")


def _greeting_text(welcome):
    """The human part of a greeting: ``* OK [CAPABILITY ...] Dovecot ready.`` gives ``Dovecot ready.``"""
    text = welcome.decode("utf-8", "replace")
    return re.sub(r"^\*\s+\w+\s+(\[[^\]]*\]\s*)?", "", text).strip()


def _mechanisms(capabilities):
    """The SASL mechanisms offered (``AUTH=`` capabilities), as sorted names."""
    return sorted(c[len(SASL_PREFIX):].decode() for c in capabilities if c.startswith(SASL_PREFIX))


def _describe(capabilities):
    """The capabilities that matter for the test: STARTTLS, LOGINDISABLED, IDLE, the SASL mechanisms."""
    named = [name.decode() for name in (b"STARTTLS", b"LOGINDISABLED", b"IDLE") if name in capabilities]
    return network.summarize(named, _mechanisms(capabilities))


def _folder_names(client):
    """The server's folder names (``LIST "" "*"``), at most MAX_FOLDERS, sorted with INBOX first."""
    names = [name for _, _, name in client.list_folders()][:MAX_FOLDERS]
    return sorted(names, key=lambda name: (name.upper() != "INBOX", name.casefold()))


def _folder_hint(client, wanted):
    """Point at the existing folder whose name differs only in case or spacing, or list a few folders."""
    try:
        names = _folder_names(client)
    except (IMAPClientError, OSError):  # the hint is a courtesy; the cause stands without it
        return None

    def squash(name):
        return "".join(name.split()).casefold()

    near = next((name for name in names if squash(name) == squash(wanted)), None)
    if near is not None:
        return f"Did you mean '{near}'? Folder names must match exactly."
    return "The server has: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") + "."
