"""Reaching the server: name resolution, the TCP connection and TLS, with their failures named.

TLS always verifies the certificate chain and the host name (RFC 8314 section
4.1; what ``ssl.create_default_context`` sets up), against the system trust
store plus an optional extra CA file. Reading the system trust store takes
tens of milliseconds, so the SSLContext for each CA file is built once and
shared (an SSLContext may be used by many threads at once), rebuilt when the
CA file changes and at most every SYSTEM_STORE_MAX_AGE seconds.
"""

import imaplib
import os
import poplib
import socket
import ssl
import threading
import time
from datetime import datetime, timezone

from . import protocols
from .causes import (
    CLOSED_BEFORE_GREETING,
    GREETING_UNFINISHED,
    SILENT_AFTER_TLS,
    SILENT_AT_TLS,
    Failure,
    security_mismatch_hint,
)
from .result import Certificate

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that have a cause of their own.
CERT_HAS_EXPIRED = 10
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64

# Everything a test reads is small (a greeting, capabilities, a folder list); more is a broken or hostile server.
MAX_RECEIVED_BYTES = 4 * 1024 * 1024


# Seconds a built SSLContext is used before the system trust store is read again.
SYSTEM_STORE_MAX_AGE = 3600.0
# ALPN for the token endpoint's HTTPS (RFC 7301); mail connections offer none.
HTTP_ALPN = ["http/1.1"]

_contexts = {}  # (CA file state, for_https) -> (SSLContext, time.monotonic() when built)
_contexts_lock = threading.Lock()


def tls_context(ca_file=None, *, for_https=False):
    """The shared client SSLContext for `ca_file`: TLS 1.2 or later, chain and host name verified.

    `ca_file` is the path of a PEM file of extra trusted CA certificates, or
    None. The context is built on first use and kept while the file's path,
    modification time, size and inode stay the same, for at most
    SYSTEM_STORE_MAX_AGE seconds. With `for_https` it is a separate context for
    the token endpoint, offering ALPN ``http/1.1`` and ignoring httpcore's calls
    to set ALPN on it (a shared context must not change under other threads).
    Raises OSError or ssl.SSLError when `ca_file` cannot be read or holds no
    certificate; nothing is cached then.
    """
    key = (_file_state(ca_file), for_https)
    with _contexts_lock:
        built = _contexts.get(key)
        if built is None or time.monotonic() - built[1] >= SYSTEM_STORE_MAX_AGE:
            built = (_build_context(ca_file, for_https), time.monotonic())
            for stale in [other for other in _contexts if other[0][0] == key[0][0] and other[1] == for_https]:
                del _contexts[stale]
            _contexts[key] = built
        return built[0]


def _file_state(ca_file):
    if not ca_file:
        return (None,)
    state = os.stat(ca_file)
    return (os.fspath(ca_file), state.st_mtime_ns, state.st_size, state.st_ino)


class _HTTPSContext(ssl.SSLContext):
    """An SSLContext whose ALPN is fixed when it is built: httpcore sets ALPN on every connection it makes,
    which on a context shared between threads would change it under the others."""

    def set_alpn_protocols(self, alpn_protocols):
        """Ignored: the context offers HTTP_ALPN, set when it was built."""


def _build_context(ca_file, for_https):
    # What ssl.create_default_context(Purpose.SERVER_AUTH) does, in a class of our choosing.
    context = (_HTTPSContext if for_https else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if for_https:
        ssl.SSLContext.set_alpn_protocols(context, HTTP_ALPN)
    return context


def resolve(host, port):
    """Return the distinct socket addresses of `host` as (family, sockaddr) pairs, in resolver order.

    Raises Failure ``dns_not_found`` when the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Failure("dns_not_found", reason=error.strerror) from None
    addresses = []
    for family, _, _, _, sockaddr in infos:
        if (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    return addresses


def connect(addresses, seconds_left):
    """Connect to the first address that accepts; return (socket, sockaddr).

    `seconds_left()` gives the time left before the deadline; it is shared
    between the remaining addresses so one silent address cannot use it all.
    Raises Failure ``connect_refused`` or ``connect_timeout`` for the last address tried.
    """
    failure = None
    for index, (family, sockaddr) in enumerate(addresses):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(seconds_left() / (len(addresses) - index))
        try:
            sock.connect(sockaddr)
            return sock, sockaddr
        except ConnectionRefusedError:
            failure = Failure("connect_refused")
        except TimeoutError:
            failure = Failure("connect_timeout", reason="no answer")
        except OSError as error:
            failure = Failure("connect_timeout", reason=error.strerror)
        sock.close()
    raise failure


def format_address(sockaddr):
    """``127.0.0.1:993`` or ``[::1]:993``."""
    host, port = sockaddr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def certificate(sslsock):
    """The verified peer certificate of an established TLS session, as a result.Certificate."""
    cert = sslsock.getpeercert()
    return Certificate(
        subject=_name(cert.get("subject", ())),
        issuer=_name(cert.get("issuer", ())),
        not_after=datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), timezone.utc),
    )


def describe_tls(sslsock, peer_certificate):
    """One line about an established TLS session: version, cipher, and `peer_certificate`'s subject,
    issuer and expiry."""
    return (
        f"{sslsock.version()}, {sslsock.cipher()[0]}; certificate for {peer_certificate.subject} "
        f"issued by {peer_certificate.issuer}, valid until {peer_certificate.not_after:%Y-%m-%d}; host name matched"
    )


def _name(rdns):
    attributes = dict(pair for rdn in rdns for pair in rdn)
    return attributes.get("commonName") or attributes.get("organizationName") or "(no name)"


def classify(error, step, settings, greeted, greeting_budget_spent=False):
    """Map an exception raised during `step` (a step name) to a Failure.

    Before the greeting (the ``tls`` and ``greeting`` steps, `greeted` False)
    silence and a closed connection are the same mistake, most often a port
    that expects another kind of security: ``greeting_timeout``, worded for
    what happened. Later, a socket timeout is the deadline running out on a
    server that stopped answering, unless `greeting_budget_spent` says the
    greeting's own budget ran out mid-greeting. The error's text is kept
    whole: the caller redacts it before anything cuts it.
    """
    mismatch = security_mismatch_hint(settings)
    if isinstance(error, ssl.SSLCertVerificationError):
        return _certificate_failure(error)
    if isinstance(error, ssl.SSLError):
        return Failure(
            "tls_handshake_failed",
            reason=error.reason or error.strerror or "no details",
            hint=mismatch,
        )
    timed_out = isinstance(error, TimeoutError)
    closed = closed_by_server(error)
    if step == "tls" and closed:
        return Failure("tls_handshake_failed", reason="the server closed the connection", hint=mismatch)
    if step in ("tls", "greeting") and not greeted and (timed_out or closed):
        return _no_greeting(step, settings, mismatch, closed)
    if timed_out and greeting_budget_spent:
        return Failure("greeting_timeout", message=GREETING_UNFINISHED, field="port")
    if timed_out:
        return Failure("deadline_exceeded")
    if isinstance(error, (EOFError, ConnectionError)):
        return Failure("protocol_error", reason="the server closed the connection")
    return Failure("protocol_error", reason=str(error) or type(error).__name__)


def _no_greeting(step, settings, mismatch, closed):
    """The Failure for a server that sent nothing, or hung up, before its greeting."""
    if step == "tls":  # only silence gets here: a hang-up during the handshake is a failed handshake
        message, hint = SILENT_AT_TLS
        return Failure("greeting_timeout", message=message, hint=mismatch or hint,
                       field="security" if mismatch else None)
    if settings.security == protocols.IMPLICIT_TLS:  # the TLS handshake worked; the greeting never came
        message, hint = SILENT_AFTER_TLS
        return Failure("greeting_timeout", message=CLOSED_BEFORE_GREETING if closed else message, hint=hint)
    # After a plaintext dial, most often the port expects a TLS hello first: blame Security.
    blame = "security" if mismatch or settings.security == protocols.STARTTLS else None
    return Failure("greeting_timeout", message=CLOSED_BEFORE_GREETING if closed else None, field=blame,
                   hint=mismatch)


def closed_by_server(error):
    """True when `error` says the server closed the connection: a reset or broken pipe, or EOF as
    imaplib (``socket error: EOF``) and poplib (``-ERR EOF``) report it."""
    if isinstance(error, (EOFError, ConnectionError)):
        return True
    if isinstance(error, imaplib.IMAP4.abort):
        return str(error).endswith("EOF")
    if isinstance(error, poplib.error_proto):
        return bool(error.args) and error.args[0] in ("-ERR EOF", b"-ERR EOF")
    return False


def _certificate_failure(error):
    reason = error.verify_message
    if error.verify_code == CERT_HAS_EXPIRED:
        return Failure("tls_certificate_expired", reason=reason)
    if error.verify_code in (HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH):
        return Failure("tls_hostname_mismatch", reason=reason)
    return Failure("tls_certificate_untrusted", reason=reason)


class ReplyGuard:
    """Watches every line a server sends: keeps the last one to quote, caps the total, spots HTTP.

    Protocol clients call ``seen(line)`` for each line (bytes) they read. Raises
    Failure ``protocol_error`` when the server answers like a web server or has
    sent more than MAX_RECEIVED_BYTES in all, so memory stays bounded.
    """

    def __init__(self):
        self.last_line = b""
        self.received = 0

    def seen(self, data):
        """Check one line (bytes) the server sent and return it; raises Failure as the class says."""
        if not self.received and data.startswith(b"HTTP/"):
            raise Failure("protocol_error", reason="it answered like a web server (HTTP)", reply=_text(data))
        self.received += len(data)
        if self.received > MAX_RECEIVED_BYTES:
            raise Failure("protocol_error", reason=f"it sent more than {MAX_RECEIVED_BYTES} bytes")
        self.last_line = data
        return data

    @property
    def last_reply(self):
        """The last line as text, without its line end."""
        return _text(self.last_line)


def _text(data):
    return data.decode("utf-8", "replace").rstrip("\r\n")


def summarize(named, mechanisms):
    """A capability summary: the named capabilities, then the SASL mechanisms, e.g. "STARTTLS, SASL PLAIN"."""
    return ", ".join([*named, "SASL " + (", ".join(mechanisms) or "none")])
