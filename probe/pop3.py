"""The POP3 half of a connection test (RFC 1939; STLS, RFC 2595; SASL AUTH, RFC 5034), via poplib.

POP3 has one mailbox per login: the test counts its messages with STAT and
reads nothing else.
"""

import base64
import contextlib
import poplib
import ssl

from . import oauth, protocols, refusals
from .causes import Failure
from .network import summarize

# How this protocol names the steps that differ from IMAP's (see probe.dialogue).
STARTTLS_TITLE = "STLS"
COUNT_STEP = ("stat", "Count messages")


class _POP3OnSocket(poplib.POP3):
    """poplib's POP3 over a socket that is already connected, every line passing the attempt's ReplyGuard.

    poplib itself refuses lines over 2048 bytes (its ``_MAXLINE``) and takes a
    line ending in a bare LF as well as one ending in CRLF.
    """

    def __init__(self, host, sock, guard):
        self._connected_socket = sock
        self.guard = guard
        try:
            super().__init__(host)
        except BaseException:
            # poplib leaves its reader open when the greeting fails, which keeps the socket's descriptor open.
            if getattr(self, "file", None) is not None:
                self.file.close()
            raise

    def _create_socket(self, timeout):
        return self._connected_socket

    def _getline(self):
        line, octets = super()._getline()
        self.guard.seen(line)
        return line, octets

    def authenticate(self, mechanism, initial_response):
        """SASL AUTH with an initial response (RFC 5034 section 4); returns the ``+OK`` line.

        A continuation in reply is an error challenge (XOAUTH2 servers send one,
        RFC 7628 section 3.2.3): an empty line answers it so the server ends the
        exchange. Raises poplib.error_proto with the server's final line.
        """
        self._putcmd(f"AUTH {mechanism} {base64.b64encode(initial_response.encode()).decode()}")
        line, _ = self._getline()
        if line.startswith(b"+") and not line.startswith(b"+OK"):
            self._putline(b"")
            line, _ = self._getline()
        if not line.startswith(b"+OK"):
            raise poplib.error_proto(line)
        return line


class Session:
    """One POP3 conversation for a connection test, a step per method (see probe.dialogue)."""

    def __init__(self, attempt):
        self.attempt = attempt
        self.settings = attempt.settings
        self.client = None
        self.capabilities = {}
        self._mechanism = None

    def greet(self):
        """Read the greeting and the capabilities (CAPA); return what they say."""
        self.client = _POP3OnSocket(self.settings.host, self.attempt.sock, self.attempt.guard)
        self.capabilities = self._capabilities()
        greeting = self.client.getwelcome().decode("utf-8", "replace").removeprefix("+OK ")
        return f"{greeting} Capabilities: {_describe(self.capabilities)}."

    def starttls(self):
        """Upgrade to TLS with STLS, refusing a server that does not offer it."""
        if "STLS" not in self.capabilities:
            raise Failure("starttls_unavailable", reply=self.client.getwelcome().decode("utf-8", "replace"))
        try:
            self.client.stls(self.attempt.tls_context())
        except poplib.error_proto as error:  # offered, then refused: the password is not sent either way
            raise self._refusal(error, Failure("starttls_unavailable", reply=self.attempt.guard.last_reply)) from None
        self.attempt.sock = self.client.sock
        self.capabilities = self._capabilities()  # RFC 2595 section 4: forget what was said before TLS
        return self.attempt.tls_established(self.attempt.sock)

    def _encrypted(self):
        return isinstance(self.attempt.sock, ssl.SSLSocket)

    def mechanism(self):
        """Choose how to log in; return it in words, e.g. ``"USER/PASS as alice@example.com"``.

        Raises Failure ``plaintext_refused``, before anything is sent, for
        USER/PASS on a connection without TLS when the server's CAPA leaves USER
        out (RFC 2449 section 6.3: it does not take USER/PASS now; RFC 2595
        section 4: servers leave it out until STLS) or announces that TLS is required.
        """
        if self.settings.auth in protocols.TOKEN_LOGINS:
            self._mechanism = oauth.mechanism(self.capabilities.get("SASL", []))
            return f"AUTH {self._mechanism} as {self.settings.username}"
        if not self._encrypted() and self.capabilities:
            announced = refusals.tls_required_capability(self.capabilities)
            if announced:
                raise refusals.plaintext_refused(False, sent=False, reason=f"the server announced {announced}")
            if "USER" not in self.capabilities:
                after = "only after STLS" if "STLS" in self.capabilities else "not without TLS"
                raise refusals.plaintext_refused(False, sent=False, reason=f"the server offers USER/PASS {after}")
        return f"USER/PASS as {self.settings.username}"

    def authenticate(self):
        """Log in with the chosen mechanism. Raises Failure: what the server's -ERR means is decided by
        refusals.login_refused (``auth_failed`` only when nothing else explains it)."""
        settings = self.settings
        sent = False
        try:
            if self._mechanism:
                first = oauth.initial_response(self._mechanism, settings.username, self.attempt.token)
                self.attempt.redact_also(first)
                sent = True
                self.client.authenticate(self._mechanism, first)
            else:
                self.client.user(settings.username)
                sent = True
                self.client.pass_(settings.password)
        except poplib.error_proto as error:
            refused = refusals.login_refused(
                self.attempt.guard.last_reply, encrypted=self._encrypted(), sent=sent,
                oauth=bool(self._mechanism), capabilities=self.capabilities,
            )
            raise self._refusal(error, refused) from None

    def count(self):
        """STAT; return (message count, no folder names, details)."""
        count, size = self.client.stat()
        return count, [], f"STAT: {count} messages, {size} bytes"

    def logout(self):
        """Say QUIT; return the server's farewell."""
        return self.client.quit().decode("utf-8", "replace")

    def close(self):
        """Release the connection, whatever state it is in (after QUIT it is closed already)."""
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.close()

    def _capabilities(self):
        """CAPA as {name: [arguments]} (RFC 2449); empty when the server answers CAPA with -ERR."""
        try:
            return self.client.capa()
        except poplib.error_proto as error:
            self._refusal(error, None)
            return {}

    def _refusal(self, error, failure):
        """`failure` when poplib's error is the server's own -ERR answer; else (poplib's own "-ERR EOF",
        "line too long") raise a protocol_error Failure, since the server did not answer at all."""
        message = error.args[0].decode("utf-8", "replace") if isinstance(error.args[0], bytes) else str(error)
        if message.startswith("-ERR") and message == self.attempt.guard.last_reply:
            return failure
        if message == "-ERR EOF":
            raise Failure("protocol_error", reason="the server closed the connection")
        raise Failure("protocol_error", reason=message)


def _describe(capabilities):
    """The capabilities that matter for the test: STLS, USER, the SASL mechanisms."""
    return summarize([name for name in ("STLS", "USER") if name in capabilities], capabilities.get("SASL", []))
