"""A real SMTP server for the tests (aiosmtpd), on loopback, that keeps every message it receives.

With `tls` (a server SSLContext) it requires STARTTLS; with `password` too, AUTH LOGIN/PLAIN with
`username` and that password, after STARTTLS.
"""

import email
import email.policy
import socket
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from testdata import OUTBOUND


class _Keeper:
    """aiosmtpd handler: keeps each message as an email.message.EmailMessage, with its envelope recipients."""

    def __init__(self):
        self.messages = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        OUTBOUND.append(envelope.content)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append((list(envelope.rcpt_tos), message))
            self.arrived.notify_all()
        return "250 Message accepted"


class SmtpServer:
    """An SMTP server on 127.0.0.1 (a free port); ``messages`` is [(recipients, EmailMessage)] in order.
    Use as a context manager."""

    def __init__(self, username=None, password=None, tls=None):
        self.keeper = _Keeper()
        self.username, self.password = username, password
        options = {}
        if password is not None:
            options.update(authenticator=self._authenticate, auth_required=True)
        if tls is not None:
            options.update(tls_context=tls, require_starttls=True)
        with socket.socket() as probe:  # aiosmtpd checks it is serving by dialling its port: pick one first
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self.keeper, hostname="127.0.0.1", port=self.port, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username \
            and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    @property
    def messages(self):
        return list(self.keeper.messages)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc_info):
        self.controller.stop()
