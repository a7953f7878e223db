"""The IMAP half of a connection test, from the greeting to LOGOUT (RFC 3501, RFC 9051), via imapclient.

The folder is opened with EXAMINE, the read-only SELECT (RFC 3501 section
6.3.2): nothing in the mailbox changes and nothing from it is kept but the
message count and, when asked for, the folder names (``LIST``) for a folder
picker. No round trip is spent on what the server said already: the
capabilities in the greeting's ``[CAPABILITY ...]`` code (RFC 3501 section
7.1) are used as they are, and asked for only after STARTTLS, when what was
said before TLS must be forgotten (RFC 3501 section 6.2.1).
"""

import contextlib
import imaplib
import re
import ssl

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from . import network, oauth, protocols, refusals
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
    it allocate gigabytes. A line ending in a bare LF is taken as if it ended
    in CRLF (RFC 3501 asks for CRLF; some servers send LF alone). The
    greeting's capabilities are used without asking CAPABILITY again; after
    STARTTLS everything said before TLS is dropped and CAPABILITY asked.
    """

    def __init__(self, host, port, sock, guard):
        self._connected_socket = sock
        self.guard = guard
        super().__init__(host, port)

    def _create_socket(self, timeout=None):
        return self._connected_socket

    def readline(self):
        """Read one line, a bare LF ending turned into CRLF."""
        line = super().readline()
        if line.endswith(b"\n") and not line.endswith(b"\r\n"):
            line = line[:-1] + b"\r\n"
        return line

    def _get_line(self):
        return self.guard.seen(super()._get_line())

    def _get_capabilities(self):
        if self._tls_established:
            # RFC 3501 section 6.2.1: nothing said before TLS counts, not even in the STARTTLS reply,
            # which crossed the network in the clear (a man in the middle could have written it).
            self.untagged_responses.clear()
        else:
            announced = self.untagged_responses.pop("CAPABILITY", None)
            if announced and announced[-1]:
                self.capabilities = tuple(str(announced[-1], self._encoding).upper().split())
                return
        super()._get_capabilities()

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
        """Read the greeting and the capabilities (asked only when the greeting has none); return what they say."""
        self.client = _Client(self.settings.host, self.settings.port, self.attempt.sock, self.attempt.guard)
        self.capabilities = self._announced()
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
        self.capabilities = self._announced()  # asked again over TLS by imaplib's starttls
        return self.attempt.tls_established(self.attempt.sock)

    def _announced(self):
        """The capabilities imaplib holds (from the greeting, or asked), as a set of upper-case bytes."""
        return {name.encode("ascii", "replace") for name in self.client._imap.capabilities}

    def _encrypted(self):
        return isinstance(self.attempt.sock, ssl.SSLSocket)

    def mechanism(self):
        """Choose how to log in (see ``_mechanism``); return it in words, e.g. ``"LOGIN as alice@example.com"``."""
        self._mechanism = _mechanism(self.capabilities, self.settings, encrypted=self._encrypted())
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
        """The Failure for a failed login: what the server said decides (see refusals.login_refused),
        not that imapclient raised LoginError."""
        if isinstance(error.__context__, IMAPClientAbortError):  # imapclient wraps a broken connection too
            return error.__context__
        line = self.attempt.guard.last_reply
        reply = self.client.last_reply
        status = reply.partition(" ")[0].upper() if not line.startswith(("*", "+")) else ""
        if status == "NO":
            return refusals.login_refused(reply, encrypted=self._encrypted(), sent=True,
                                          oauth=self.settings.auth in protocols.TOKEN_LOGINS,
                                          capabilities=self.capabilities)
        if status == "BAD":
            return Failure("protocol_error", reply=reply, reason="it refused the login command as malformed")
        return Failure("protocol_error", reason=str(error))

    def count(self):
        """EXAMINE the folder, and LIST the folders when the attempt asks for them;
        return (message count, folder names, details)."""
        folder = self.settings.folder
        try:
            examined = self.client.select_folder(folder, readonly=True)
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            reply = self.client.last_reply
            hint, heard = _folder_hint(self.client, folder)
            raise Failure("folder_not_found", reply=reply, hint=hint, **heard) from None
        count = examined[b"EXISTS"]
        if not self.attempt.list_folders:
            return count, [], f"EXAMINE {folder}: {count} messages"
        names = _folder_names(self.client.list_folders())
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


def _mechanism(capabilities, settings, encrypted=True):
    """How to log in: SASL XOAUTH2 (else OAUTHBEARER, RFC 7628) for OAuth2; LOGIN for a password,
    or SASL PLAIN when the password is not ASCII, which LOGIN cannot carry (RFC 3501 section 9).

    `capabilities` are upper-case bytes; `encrypted` says whether the
    connection is TLS. Raises Failure when the server offers no usable way:
    ``plaintext_refused`` (before the password is sent) when it announced
    LOGINDISABLED, or on a connection without TLS a capability saying TLS is
    required (such as XTLSREQUIRED).
    """
    offered = _mechanisms(capabilities)
    if settings.auth in protocols.TOKEN_LOGINS:
        return oauth.mechanism(offered)
    if b"LOGINDISABLED" in capabilities:
        raise refusals.plaintext_refused(encrypted, sent=False, reason="the server announced LOGINDISABLED")
    announced = None if encrypted else refusals.tls_required_capability(capabilities)
    if announced:
        raise refusals.plaintext_refused(encrypted, sent=False, reason=f"the server announced {announced}")
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


def _folder_names(listed):
    """The folder names of a ``list_folders()`` answer (``LIST "" "*"``), at most MAX_FOLDERS,
    sorted with INBOX first."""
    names = [name for _, _, name in listed][:MAX_FOLDERS]
    return sorted(names, key=lambda name: (name.upper() != "INBOX", name.casefold()))


def _folder_hint(client, wanted):
    """(hint, context) for a missing folder: the existing folder whose name differs only in case or
    spacing, else the one under the personal namespace's prefix (``INBOX.Archive`` for ``Archive``,
    RFC 2342) or the other way round, else a few of the folders. The folder names, which come from the
    server, are in the context (``suggestion``, ``folders``); (None, {}) when LIST fails."""
    try:
        listed = client.list_folders()
        prefixes = _personal_prefixes(client, listed)
    except (IMAPClientError, OSError):  # the hint is a courtesy; the cause stands without it
        return None, {}
    names = _folder_names(listed)

    def squash(name):
        return "".join(name.split()).casefold()

    near = next((name for name in names if squash(name) == squash(wanted)), None)
    if near is None:
        def unprefixed(name):
            return {name, *(name[len(prefix):] for prefix in prefixes if name.upper().startswith(prefix.upper()))}
        wanted_forms = {squash(form) for form in unprefixed(wanted)}
        near = next((name for name in names if wanted_forms & {squash(form) for form in unprefixed(name)}), None)
    if near is not None:
        return "Did you mean '{suggestion}'? Folder names must match exactly.", {"suggestion": near}
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    return "The server has: {folders}.", {"folders": shown}


def _personal_prefixes(client, listed):
    """The prefixes under which this user's folders may live: the personal namespaces (NAMESPACE,
    RFC 2342, when offered) and INBOX followed by the hierarchy delimiter of the listed folders."""
    prefixes = {"INBOX" + (delimiter.decode() if isinstance(delimiter, bytes) else delimiter)
                for _, delimiter, _ in listed if delimiter}
    if client.has_capability("NAMESPACE"):
        personal = client.namespace().personal or ()
        prefixes |= {prefix for prefix, _ in personal if prefix}
    return prefixes
