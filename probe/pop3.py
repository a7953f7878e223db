"""The POP3 half of a connection test (RFC 1939; STLS, RFC 2595; SASL AUTH, RFC 5034), via poplib.

POP3 has one mailbox per login: the test counts its messages with STAT and
reads nothing else.
"""

import base64
import contextlib
import poplib

import protocols

from . import network, oauth
from .causes import Failure


# How this protocol names the steps that differ from IMAP's (see probe.dialogue).
STARTTLS_TITLE = "STLS"
COUNT_STEP = ("stat", "Count messages")


class _POP3OnSocket(poplib.POP3):
    """poplib's POP3 over a socket that is already connected, every line passing the attempt's ReplyGuard.

    poplib itself refuses lines over 2048 bytes (its ``_MAXLINE``).
    """

    def __init__(self, host, sock, guard):
        self._connected_socket = sock
        self.guard = guard
        super().__init__(host)

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

    def greet(self):
        """Read the greeting and the capabilities (CAPA); return what they say."""
        self.client = _POP3OnSocket(self.settings.host, self.attempt.sock, self.attempt.guard)
        self.capabilities = _capabilities(self.client)
        greeting = self.client.getwelcome().decode("utf-8", "replace").removeprefix("+OK ")
        return f"{greeting} Capabilities: {_describe(self.capabilities)}."

    def starttls(self):
        """Upgrade to TLS with STLS, refusing a server that does not offer it."""
        if "STLS" not in self.capabilities:
            raise Failure("starttls_unavailable", reply=self.client.getwelcome().decode("utf-8", "replace"))
        self.client.stls(self.attempt.tls_context())
        self.attempt.sock = self.client.sock
        self.capabilities = _capabilities(self.client)  # RFC 2595 section 4: forget what was said before TLS
        return network.describe_tls(self.attempt.sock)

    def authenticate(self):
        """Log in; return how."""
        return _authenticate(self.client, self.capabilities, self.settings, self.attempt.token)

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


def _capabilities(client):
    """CAPA as {name: [arguments]} (RFC 2449); empty when the server does not know CAPA."""
    try:
        return client.capa()
    except poplib.error_proto:
        return {}


def _describe(capabilities):
    named = [name for name in ("STLS", "USER") if name in capabilities]
    mechanisms = capabilities.get("SASL", [])
    return ", ".join(named + ["SASL " + (", ".join(mechanisms) if mechanisms else "none")])


def _authenticate(client, capabilities, settings, token):
    """Log in with USER/PASS, or SASL XOAUTH2 (else OAUTHBEARER) with `token`; return what was done."""
    try:
        if settings.auth == protocols.OAUTH2:
            offered = capabilities.get("SASL", [])
            mechanism = next((m for m in ("XOAUTH2", "OAUTHBEARER") if m in offered), None)
            if mechanism is None:
                raise Failure("auth_mechanism_unavailable", field="auth",
                              reason="the server offers neither SASL XOAUTH2 nor OAUTHBEARER")
            client.authenticate(mechanism, oauth.initial_response(mechanism, settings.username, token))
            return f"AUTH {mechanism} as {settings.username}"
        client.user(settings.username)
        client.pass_(settings.password)
        return f"USER/PASS as {settings.username}"
    except poplib.error_proto as error:
        reply = error.args[0].decode("utf-8", "replace") if isinstance(error.args[0], bytes) else str(error)
        if "plaintext authentication disallowed" in reply.lower():
            raise Failure("plaintext_refused", reply=reply, reason="the server refuses USER/PASS here") from None
        blame = "username" if settings.auth == protocols.OAUTH2 else None
        raise Failure("auth_failed", reply=reply, field=blame) from None
