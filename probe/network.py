"""Reaching the server: name resolution, the TCP connection and TLS, with their failures named.

TLS always verifies the certificate chain and the host name (RFC 8314 section
4.1, via ``ssl.create_default_context``), against the system trust store plus
an optional extra CA file.
"""

import socket
import ssl
from datetime import datetime, timezone

from . import protocols

from .causes import Failure, security_mismatch_hint

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that have a cause of their own.
CERT_HAS_EXPIRED = 10
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64

# Everything a test reads is small (a greeting, capabilities, a folder list); more is a broken or hostile server.
MAX_RECEIVED_BYTES = 4 * 1024 * 1024


def tls_context(ca_file=None):
    """A client SSLContext: TLS 1.2 or later, chain and host name verified.

    `ca_file` is a PEM file of extra trusted CA certificates. Raises OSError or
    ssl.SSLError when it cannot be read.
    """
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
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


def describe_tls(sslsock):
    """One line about an established TLS session: version, cipher, certificate subject, issuer, expiry."""
    cert = sslsock.getpeercert()
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), timezone.utc)
    return (
        f"{sslsock.version()}, {sslsock.cipher()[0]}; certificate for {_name(cert['subject'])} "
        f"issued by {_name(cert['issuer'])}, valid until {expires:%Y-%m-%d}; host name matched"
    )


def _name(rdns):
    attributes = dict(pair for rdn in rdns for pair in rdn)
    return attributes.get("commonName") or attributes.get("organizationName") or "(no name)"


def classify(error, step, settings, greeted):
    """Map an exception raised during `step` (a step name) to a Failure.

    Socket timeouts mean different things: no greeting (or TLS hello) after the
    dial while the server has sent nothing (`greeted` False), or else the
    deadline running out on a server that stopped answering.
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
    if isinstance(error, TimeoutError):
        if step in ("tls", "greeting") and not greeted:
            # A silent server after a plaintext dial most often waits for a TLS hello: blame Security.
            blame = "security" if mismatch or settings.security == protocols.STARTTLS else None
            return Failure("greeting_timeout", field=blame, hint=mismatch)
        return Failure("deadline_exceeded")
    if isinstance(error, (EOFError, ConnectionError)):
        return Failure("protocol_error", reason="the server closed the connection")
    return Failure("protocol_error", reason=str(error)[:200] or type(error).__name__)


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
