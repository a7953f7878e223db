"""The connection test: dial a mail server, negotiate TLS, log in, check the folder, and say what failed.

No Flask here, and nothing of the application around it: a ``Prober``,
configured once (deadline, CA file, outbound policy, the operator's setting
names, provider advice), runs ``Settings`` and returns a ``Result`` with the
steps, their timings and, on failure, a ``Cause``. A test never takes longer
than its deadline plus ``GRACE_SECONDS``, whatever the server does: every
socket operation is limited to the time left, a watchdog thread cuts the
connection when the deadline passes, so a server dripping one byte a second
cannot hold it, and a host name is looked up in a helper thread that is not
waited for past the deadline. The conversation itself runs in the caller's
thread (handing it to another thread costs a millisecond or more of a
15-millisecond test). Each test holds one of the caller's `slots` until all
it started has finished, an abandoned name lookup included, so the number of
tests in flight stays bounded.
"""

import dataclasses
import ipaddress
import logging
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from urllib.parse import urlsplit

from . import dialogue, network, oauth, protocols
from .causes import Failure, SettingNames, describe
from .oauth import AuthorizationCode, Discovery
from .policy import Policy
from .redaction import Redactor
from .result import FAILED, OK, Cause, Certificate, Grant, Result, Settings, Step, TokenResult

__all__ = [
    "AuthorizationCode", "Busy", "Cause", "Certificate", "Discovery", "Grant", "Policy", "Prober", "Result",
    "SettingNames", "Settings", "Step", "TokenResult", "run",
]

log = logging.getLogger(__name__)

# How long after the deadline the watchdog waits before cutting the connection,
# so a step whose socket timed out right at the deadline can report its own cause.
GRACE_SECONDS = 0.5
# A step's details quote the server (a greeting, a farewell): keep them to a line.
DETAILS_LENGTH = 500
# The steps that wait for the server's first words: implicit TLS's handshake and the greeting.
GREETING_STEPS = ("tls", "greeting")
# The name of the threads a test starts (its watchdog, a name lookup): none outlives it by more than a lookup.
THREAD_NAME = "connection-test"


class Busy(Exception):
    """All the slots for connection tests are taken; try again when one finishes."""


# Mail ports at public addresses only.
DEFAULT_POLICY = Policy()


class Prober:
    """Runs connection tests, configured once (at application start) and shared by every thread.

    `deadline` is the wall-clock budget of a whole test in seconds;
    `greeting_timeout` the seconds a server may take from the TCP connection to
    its greeting (the TLS handshake included for implicit TLS), within the
    deadline, so a silent server is named in that time while a slow login still
    has the rest of the deadline. `ca_file` is the path of a PEM file of extra
    trusted CA certificates, or None; `policy` a Policy of the ports and
    addresses that may be dialled. `advice` is None or a callable
    ``advice(settings, code) -> str | None`` whose text is appended to the hint
    of a failure with that cause code. `setting_names` is a SettingNames
    naming the operator's settings in hints (plain words by default).

    The verifying SSLContexts are built here, so processes forked after
    construction (gunicorn --preload) share them; a CA file that cannot be read
    is not an error here but fails the TLS step of each test, with its cause.
    Raises ValueError when `deadline` or `greeting_timeout` is not a positive
    number of seconds.
    """

    def __init__(self, deadline=15.0, greeting_timeout=5.0, ca_file=None, policy=DEFAULT_POLICY, advice=None,
                 setting_names=None):
        if not deadline > 0 or not greeting_timeout > 0:
            raise ValueError("deadline and greeting_timeout must be positive numbers of seconds")
        self.deadline = float(deadline)
        self.greeting_timeout = float(greeting_timeout)
        self.ca_file = ca_file and str(ca_file)
        self.policy = policy
        self.advice = advice
        self.setting_names = setting_names or SettingNames()
        for for_https in (False, True):
            try:
                network.tls_context(self.ca_file, for_https=for_https)
            except (OSError, ValueError):  # ssl.SSLError is an OSError; the TLS step will say what is wrong
                break

    def run(self, settings, *, slots=None, list_folders=False):
        """Test `settings` against the real server and return a Result.

        `slots` is None or any object with ``acquire(blocking=False) -> bool``
        and ``release()`` (a ``threading.BoundedSemaphore``, or one shared
        between processes) bounding the tests in flight: a slot is held until
        everything the test started has finished. The test runs in the calling
        thread, which returns within the deadline plus GRACE_SECONDS.
        `list_folders` asks IMAP for the folder
        names (``LIST``, RFC 3501 section 6.3.8) after opening the folder, for a
        folder picker; otherwise that round trip is skipped. Raises Busy when
        no slot is free; never raises for anything the server or network does,
        which is in the Result.
        """
        attempt = self._attempt(settings, slots, list_folders=list_folders)
        result = attempt.result()
        log.info(
            "connection test %s:%s as %s: %s",
            settings.host, settings.port, settings.username, result.cause.code if result.cause else "ok",
        )
        return result

    def token(self, settings, *, code=None, slots=None):
        """Ask the token endpoint of `settings` alone for a token, without a mail server; return a TokenResult.

        The grant follows the settings (client credentials, or the refresh
        token of an OAuth2 sign-in), or redeems `code` (a probe.AuthorizationCode)
        with the settings' client and token endpoint: see oauth.fetch_token.
        The same deadline, outbound policy, watchdog and size limits as a
        connection test apply; the result's ``grant`` holds the tokens (in
        memory only). `slots` as for ``run``. Raises Busy when no slot is free,
        ValueError for settings of a login without a token endpoint; never
        raises for what the endpoint does.
        """
        if settings.auth not in protocols.TOKEN_LOGINS:
            raise ValueError(f"a {settings.auth} login has no token endpoint")
        attempt = self._attempt(settings, slots, mode=TOKEN_ONLY, code=code)
        result = attempt.result()
        log.info("OAuth2 token from %s: %s", urlsplit(settings.token_url).netloc,
                 result.cause.code if result.cause else "ok")
        return result

    def discover(self, issuer):
        """Read the OpenID Connect discovery document of `issuer` (OpenID Connect Discovery 1.0) within the
        deadline, under the outbound policy; return (a probe.Discovery, None), or (None, the Cause)."""
        settings = Settings(protocols.IMAP, urlsplit(issuer).hostname or issuer, 443, protocols.IMPLICIT_TLS, "")
        attempt = self._attempt(settings, None, mode=DISCOVERY, issuer=issuer)
        cause = attempt.result().cause
        return (None, cause) if cause else (attempt.discovery, None)

    def _attempt(self, settings, slots, **options):
        """Start the watchdog and run an _Attempt to its end in this thread; return it."""
        if slots is not None and not slots.acquire(blocking=False):
            raise Busy()
        attempt = _Attempt(self, settings, slots, **options)
        threading.Thread(target=attempt.watch_the_deadline, name=THREAD_NAME, daemon=True).start()
        attempt.execute()
        return attempt


def run(settings, deadline=15.0, ca_file=None, slots=None, policy=DEFAULT_POLICY, *, greeting_timeout=5.0,
        advice=None, setting_names=None, list_folders=False):
    """Test `settings` once with a Prober made of these arguments (see Prober and Prober.run).

    A convenience for callers that test rarely; an application makes one Prober
    at start and calls its ``run``. Raises Busy when no slot is free.
    """
    prober = Prober(deadline, greeting_timeout, ca_file, policy, advice, setting_names)
    return prober.run(settings, slots=slots, list_folders=list_folders)


# What an _Attempt does: a whole connection test, a token alone, or an OpenID Connect discovery.
CONNECTION_TEST = "test"
TOKEN_ONLY = "token"
DISCOVERY = "discovery"
TOKEN_STEP = ("token", "Get OAuth2 token")


def _plan(settings, mode=CONNECTION_TEST):
    if mode == DISCOVERY:
        return [("discovery", "Read the OpenID Connect configuration")]
    if mode == TOKEN_ONLY:
        return [TOKEN_STEP]
    # The mail server is resolved and checked first: a refused destination costs no token request.
    steps = [("resolve", "Check destination")]
    if settings.auth in protocols.TOKEN_LOGINS:
        steps.append(TOKEN_STEP)
    steps.append(("connect", "Connect"))
    if settings.security == protocols.IMPLICIT_TLS:
        steps.append(("tls", "TLS handshake"))
    return steps + dialogue.plan(settings.protocol, settings.security)


def _milliseconds_since(moment):
    return round((time.monotonic() - moment) * 1000)


class _Attempt:
    """One running test: its steps, the socket in use, and the watchdog's handle on it.

    ``execute`` and ``result`` run in the caller's thread, ``watch_the_deadline``
    (and so ``abort``) in the watchdog's. The lock keeps the watchdog's verdict
    from being overwritten by the conversation it cut short.
    """

    def __init__(self, prober, settings, slots, list_folders=False, mode=CONNECTION_TEST, code=None, issuer=None):
        self.prober = prober
        self.settings = settings
        self.deadline = prober.deadline
        self.policy = prober.policy
        self.slots = slots
        self.list_folders = list_folders
        self.mode = mode
        self.code = code  # an oauth.AuthorizationCode to redeem, for a sign-in's first token
        self.issuer = issuer
        self.grant = None  # what the token endpoint granted (a Grant), only in memory
        self.discovery = None
        self.steps = {name: Step(name, title) for name, title in _plan(settings, mode)}
        self.started = time.monotonic()
        self.greeting_due = None  # when the greeting must have come (monotonic), set once connected
        self.sock = None  # what the current step talks over; replaced when TLS starts
        self.guard = network.ReplyGuard()
        self.token = None  # the OAuth2 access token, only in memory for the login
        self.current = None
        self.failure = None
        self.message_count = None
        self.folders = []
        self.certificate = None
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._aborted = False
        self._holders = 1  # the conversation, and each name lookup still running: the slot is theirs
        self._kill_switches = []  # duplicates of every socket dialled, for the watchdog to shut down
        self._sent_secrets = []  # SASL strings that carried a secret, as they went over the wire

    def seconds_left(self):
        """Seconds until the deadline, never quite zero (a socket timeout of 0 would mean non-blocking)."""
        return max(self.started + self.deadline - time.monotonic(), 0.01)

    def _greeting_seconds_left(self):
        return max(self.greeting_due - time.monotonic(), 0.01)

    def tls_context(self, for_https=False):
        """The shared verifying SSLContext (network.tls_context); raises OSError or ssl.SSLError when the
        CA file cannot be read, inside the step that needs it."""
        return network.tls_context(self.prober.ca_file, for_https=for_https)

    def tls_established(self, sslsock):
        """Note the certificate of the TLS session on `sslsock` (just verified); return the step's details."""
        self.certificate = network.certificate(sslsock)
        return network.describe_tls(sslsock, self.certificate)

    @contextmanager
    def step(self, name):
        """Run one step: limit the socket to the time left, time it, and turn errors into a Failure.

        Until the greeting has come, the time left is the greeting's own budget if that ends first.
        """
        with self._lock:
            if self._aborted:  # the watchdog has answered already; stop instead of dialling on
                raise Failure("deadline_exceeded")
            step = self.current = self.steps[name]
        greeting_limited = False
        if self.sock is not None:
            timeout = self.seconds_left()
            if name in GREETING_STEPS and self.greeting_due is not None:
                greeting_limited = self._greeting_seconds_left() < timeout
                timeout = min(timeout, self._greeting_seconds_left())
            self.sock.settimeout(timeout)
        began = time.monotonic()
        try:
            yield step
        except Exception as error:
            self._finish(step, FAILED, began)
            if isinstance(error, Failure):
                raise
            raise network.classify(error, name, self.settings, greeted=self.guard.received > 0,
                                   greeting_budget_spent=greeting_limited) from error
        self._finish(step, OK, began)

    def _finish(self, step, outcome, began):
        with self._lock:
            if not self._aborted:
                step.outcome = outcome
                step.duration_ms = _milliseconds_since(began)

    def watch_the_deadline(self):
        """The watchdog thread's body: abort the test if it is not finished by the deadline plus the grace."""
        if not self.finished.wait(self.deadline + GRACE_SECONDS):
            self.abort()

    def execute(self):
        """Run the steps, keep the failure, always close up and let go of the slot."""
        try:
            self.message_count, self.folders = self._converse()
        except Failure as failure:
            with self._lock:
                if not self._aborted:
                    self.failure = failure
        except Exception as error:  # a bug of ours, not the server's: keep the promise to finish
            # The exception's text may quote the server, so it goes through the redactor like everything else.
            log.error("connection test stopped unexpectedly:\n%s",
                      self._redactor().clean("".join(traceback.format_exception(error))))
            with self._lock:
                if not self._aborted:
                    self.failure = Failure("protocol_error", reason="unexpected error in Mailkeep")
        finally:
            with self._lock:
                for sock in [self.sock, *self._kill_switches]:
                    if sock is not None:
                        sock.close()
            self.finished.set()
            self._let_go()

    def _let_go(self):
        """One holder of the slot is done; the last one gives the slot back."""
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last and self.slots is not None:
            self.slots.release()

    def resolve(self, host, port):
        """network.resolve(host, port) within the deadline: an IP address at once, a name in a helper
        thread, waited for until the deadline only (a resolver can take longer). Raises Failure as
        network.resolve does, or TimeoutError when the lookup is still running at the deadline (it
        then keeps the slot until it ends)."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return network.resolve(host, port)  # a literal address: no resolver is asked
        answer = {}
        done = threading.Event()

        def look_up():
            try:
                answer["addresses"] = network.resolve(host, port)
            except Exception as error:  # handed to the waiting thread
                answer["error"] = error
            finally:
                done.set()
                self._let_go()

        with self._lock:
            self._holders += 1
        threading.Thread(target=look_up, name=THREAD_NAME, daemon=True).start()
        if not done.wait(self.seconds_left()):
            raise TimeoutError(f"looking up {host} took too long")
        if "error" in answer:
            raise answer["error"]
        return answer["addresses"]

    def _converse(self):
        settings = self.settings
        if self.mode == DISCOVERY:
            with self.step("discovery") as step:
                self.discovery = oauth.discover(self, self.issuer)
                step.details = f"token endpoint {self.discovery.token_endpoint}"
            return None, []
        if self.mode == TOKEN_ONLY:
            self._get_token()
            return None, []
        with self.step("resolve") as step:
            self.policy.check_security(settings.security)
            self.policy.check_port(settings.port)  # before even asking DNS
            addresses = self.resolve(settings.host, settings.port)
            step.details = ", ".join(sockaddr[0] for _, sockaddr in addresses)
            # Every address is checked, and only these are dialled: no second lookup to rebind.
            self.policy.check_addresses(addresses)
        if settings.auth in protocols.TOKEN_LOGINS:
            self._get_token()
        with self.step("connect") as step:
            sock, sockaddr = network.connect(addresses, self.seconds_left)
            self.sock = sock
            self.watch(sock)
            self.greeting_due = time.monotonic() + self.prober.greeting_timeout
            step.details = network.format_address(sockaddr)
        if settings.security == protocols.IMPLICIT_TLS:
            with self.step("tls") as step:
                self.sock = self.tls_context().wrap_socket(self.sock, server_hostname=settings.host)
                step.details = self.tls_established(self.sock)
        return dialogue.converse(self)

    def _get_token(self):
        """The token step: fetch a token (oauth.fetch_token), keep it in memory, say which grant gave it."""
        with self.step("token") as step:
            self.grant = oauth.fetch_token(self)
            self.token = self.grant.access_token
            if self.code is not None:
                grant = "authorization-code grant (PKCE)"
                news = "; a refresh token came with it" if self.grant.refresh_token else \
                    "; no refresh token came with it"
            elif self.settings.auth == protocols.OAUTH2_SIGN_IN:
                grant = "refresh-token grant"
                news = "; a new refresh token replaces the one used" if self.grant.rotated else \
                    "; the refresh token stays the same"
            else:
                grant, news = "client-credentials grant", ""
            step.details = f"{grant} at {self.settings.token_url}: access token received{news}"

    def redact_also(self, sent):
        """Redact `sent` (a SASL string carrying a secret) in all its forms from what the server says."""
        self._sent_secrets.append(sent)

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
            signing_in = self.code is not None or self.settings.auth == protocols.OAUTH2_SIGN_IN
            token_field = "refresh_token" if signing_in else "token_url"
            self.failure = Failure("deadline_exceeded", field=token_field if stalled_at_token else None)
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

    def _redactor(self):
        """The Redactor for every secret of this test, in every form it may have gone over the wire."""
        settings = self.settings
        secrets = [settings.password, settings.client_secret, settings.refresh_token, self.token]
        secrets += [*(self.grant.secrets if self.grant else ()), *(self.code.secrets if self.code else ())]
        return Redactor(secrets, carriers=self._sent_secrets,
                        basic_credentials=(settings.client_id, settings.client_secret))

    def result(self):
        """A snapshot of the test so far.

        Every text in it that came from the server passes one Redactor, whole,
        before it is cut to length: a hostile server may echo a secret in any line.
        """
        with self._lock:
            redactor = self._redactor()
            steps = [dataclasses.replace(step, details=redactor.clean(step.details, DETAILS_LENGTH))
                     for step in self.steps.values()]
            cause = None
            if self.failure is not None:
                cause = describe(
                    self.failure, self.settings, redactor, advice=self.prober.advice,
                    setting_names=self.prober.setting_names, deadline=self.deadline,
                    greeting_timeout=self.prober.greeting_timeout,
                    step=self.current.title if self.current else "start",
                )
            if self.mode != CONNECTION_TEST:
                return TokenResult(steps=steps, elapsed_ms=_milliseconds_since(self.started), cause=cause,
                                   grant=None if cause else self.grant)
            certificate = self.certificate and dataclasses.replace(
                self.certificate, subject=redactor.clean(self.certificate.subject),
                issuer=redactor.clean(self.certificate.issuer))
            return Result(
                settings=self.settings,
                steps=steps,
                elapsed_ms=_milliseconds_since(self.started),
                cause=cause,
                message_count=None if cause else self.message_count,
                folders=[] if cause else [redactor.clean(name) for name in self.folders],
                certificate=certificate,
                grant=self.grant,
            )
