"""The connection test: dial a mail server, negotiate TLS, log in, check the folder, and say what failed.

No Flask here: ``run()`` takes ``Settings`` and returns a ``Result`` with the
steps, their timings and, on failure, a ``Cause``. It never takes longer than
its deadline plus ``GRACE_SECONDS``, whatever the server does: every socket
operation is limited to the time left, and a watchdog cuts the connection when
the deadline passes, so a server dripping one byte a second cannot hold it.
Each test runs in a worker thread that holds one of the caller's `slots`
until it has really finished, so the number of tests in flight stays bounded.
"""

import base64
import dataclasses
import logging
import socket
import threading
import time
from contextlib import contextmanager

from . import protocols

from . import dialogue, network, oauth
from .causes import Failure, describe, redact
from .policy import Policy
from .result import FAILED, OK, Cause, Result, Settings, Step

__all__ = ["Busy", "Cause", "Policy", "Result", "Settings", "Step", "run"]

log = logging.getLogger(__name__)

# How long after the deadline the watchdog waits before cutting the connection,
# so a step whose socket timed out right at the deadline can report its own cause.
GRACE_SECONDS = 0.5
# A step's details quote the server (a greeting, a farewell): keep them to a line.
DETAILS_LENGTH = 500


class Busy(Exception):
    """All the slots for connection tests are taken; try again when one finishes."""


# Mail ports at public addresses only.
DEFAULT_POLICY = Policy()


def run(settings, deadline=15.0, ca_file=None, slots=None, policy=DEFAULT_POLICY):
    """Test `settings` against the real server and return a Result.

    `deadline` is the wall-clock budget in seconds for the whole test;
    `ca_file` an optional PEM file of extra trusted CA certificates; `slots` a
    ``threading.BoundedSemaphore`` shared by the tests that may run at once;
    `policy` says which ports and addresses may be dialled (by default mail
    ports at public addresses). Raises Busy when no slot is free; never raises
    for anything the server or network does, which is in the Result.
    """
    if slots is not None and not slots.acquire(blocking=False):
        raise Busy()
    attempt = _Attempt(settings, deadline, ca_file, slots, policy)
    worker = threading.Thread(target=attempt.execute, name="connection-test", daemon=True)
    worker.start()
    if not attempt.finished.wait(deadline + GRACE_SECONDS):
        attempt.abort()
    result = attempt.result()
    log.info(
        "connection test %s:%s as %s: %s",
        settings.host, settings.port, settings.username, result.cause.code if result.cause else "ok",
    )
    return result


def _plan(settings):
    # The mail server is resolved and checked first: a refused destination costs no token request.
    steps = [("resolve", "Resolve host")]
    if settings.auth == protocols.OAUTH2:
        steps.append(("token", "Get OAuth2 token"))
    steps.append(("connect", "Connect"))
    if settings.security == protocols.IMPLICIT_TLS:
        steps.append(("tls", "TLS handshake"))
    return steps + dialogue.plan(settings.protocol, settings.security)


def _milliseconds_since(moment):
    return round((time.monotonic() - moment) * 1000)


class _Attempt:
    """One running test: its steps, the socket in use, and the watchdog's handle on it.

    ``execute`` runs in a worker thread; ``abort`` and ``result`` in the caller's.
    The lock keeps the watchdog's verdict from being overwritten by the worker.
    """

    def __init__(self, settings, deadline, ca_file, slots, policy):
        self.settings = settings
        self.deadline = deadline
        self.ca_file = ca_file
        self.slots = slots
        self.policy = policy
        self.steps = {name: Step(name, title) for name, title in _plan(settings)}
        self.started = time.monotonic()
        self.sock = None  # what the current step talks over; replaced when TLS starts
        self.guard = network.ReplyGuard()
        self.token = None  # the OAuth2 access token, only in memory for the login
        self.current = None
        self.failure = None
        self.message_count = None
        self.folders = []
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._aborted = False
        self._kill_switches = []  # duplicates of every socket dialled, for the watchdog to shut down
        self._sent_secrets = []  # secrets in the forms they went over the wire (SASL strings, base64)
        self._tls_context = None

    def seconds_left(self):
        """Seconds until the deadline, never quite zero (a socket timeout of 0 would mean non-blocking)."""
        return max(self.started + self.deadline - time.monotonic(), 0.01)

    def tls_context(self):
        """The verifying SSLContext, made on first use so a bad CA file fails inside the step that needs it."""
        if self._tls_context is None:
            self._tls_context = network.tls_context(self.ca_file)
        return self._tls_context

    @contextmanager
    def step(self, name):
        """Run one step: limit the socket to the time left, time it, and turn errors into a Failure."""
        with self._lock:
            if self._aborted:  # the watchdog has answered already; stop instead of dialling on
                raise Failure("deadline_exceeded")
            step = self.current = self.steps[name]
        if self.sock is not None:
            self.sock.settimeout(self.seconds_left())
        began = time.monotonic()
        try:
            yield step
        except Exception as error:
            self._finish(step, FAILED, began)
            if isinstance(error, Failure):
                raise
            raise network.classify(error, name, self.settings, greeted=self.guard.received > 0) from error
        self._finish(step, OK, began)

    def _finish(self, step, outcome, began):
        with self._lock:
            if not self._aborted:
                step.outcome = outcome
                step.duration_ms = _milliseconds_since(began)

    def execute(self):
        """The worker thread's body: run the steps, keep the failure, always close up and free the slot."""
        try:
            self.message_count, self.folders = self._converse()
        except Failure as failure:
            with self._lock:
                if not self._aborted:
                    self.failure = failure
        except Exception:  # a bug of ours, not the server's: keep the worker's promise to finish
            log.exception("connection test stopped unexpectedly")
            with self._lock:
                if not self._aborted:
                    self.failure = Failure("protocol_error", reason="unexpected error in Mailkeep")
        finally:
            with self._lock:
                for sock in [self.sock, *self._kill_switches]:
                    if sock is not None:
                        sock.close()
            self.finished.set()
            if self.slots is not None:
                self.slots.release()

    def _converse(self):
        settings = self.settings
        with self.step("resolve") as step:
            self.policy.check_security(settings.security)
            self.policy.check_port(settings.port)  # before even asking DNS
            addresses = network.resolve(settings.host, settings.port)
            step.details = ", ".join(sockaddr[0] for _, sockaddr in addresses)
            # Every address is checked, and only these are dialled: no second lookup to rebind.
            self.policy.check_addresses(addresses)
        if settings.auth == protocols.OAUTH2:
            with self.step("token") as step:
                self.token = oauth.fetch_token(self)
                step.details = f"client-credentials grant at {settings.token_url}: access token received"
        with self.step("connect") as step:
            sock, sockaddr = network.connect(addresses, self.seconds_left)
            self.sock = sock
            self.watch(sock)
            step.details = network.format_address(sockaddr)
        if settings.security == protocols.IMPLICIT_TLS:
            with self.step("tls") as step:
                self.sock = self.tls_context().wrap_socket(self.sock, server_hostname=settings.host)
                step.details = network.describe_tls(self.sock)
        return dialogue.converse(self)

    def redact_also(self, sent):
        """Redact `sent` (a SASL string carrying a secret) and its base64 form from what the server says."""
        self._sent_secrets += [sent, base64.b64encode(sent.encode()).decode()]

    def watch(self, sock):
        """Let the watchdog cut `sock` at the deadline (through a duplicate, which TLS wrapping leaves usable)."""
        with self._lock:
            self._kill_switches.append(sock.dup())

    def abort(self):
        """The deadline passed: record it against the current step and cut the connection."""
        with self._lock:
            if self.finished.is_set():
                return
            self._aborted = True
            stalled_at_token = self.current is not None and self.current.name == "token"
            self.failure = Failure("deadline_exceeded", field="token_url" if stalled_at_token else None)
            if self.current is not None:
                self.current.outcome = FAILED
                self.current.duration_ms = _milliseconds_since(self.started) - sum(
                    step.duration_ms for step in self.steps.values() if step is not self.current
                )
            for sock in self._kill_switches:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the peer

    def result(self):
        """A snapshot of the test so far, safe to use while the worker winds down.

        Every text in it that came from the server passes ``redact``: a hostile
        server may echo a secret in any line.
        """
        with self._lock:
            secrets = (self.settings.password, self.settings.client_secret, self.token, *self._sent_secrets)
            steps = [dataclasses.replace(step, details=redact(step.details, secrets)[:DETAILS_LENGTH])
                     for step in self.steps.values()]
            cause = None
            if self.failure is not None:
                where = self.current.title if self.current else "start"
                cause = describe(self.failure, self.settings, secrets, deadline=self.deadline, step=where)
            return Result(
                settings=self.settings,
                steps=steps,
                elapsed_ms=_milliseconds_since(self.started),
                cause=cause,
                message_count=None if cause else self.message_count,
                folders=[] if cause else [redact(name, secrets) for name in self.folders],
            )
