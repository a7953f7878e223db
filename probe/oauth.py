"""OAuth2 for a connection test: the client-credentials grant, and the SASL responses that carry the token.

The token is fetched with Authlib's httpx client (RFC 6749 section 4.4), used
once for the login, and never stored or shown. The HTTP request goes through
the same path as the mail connection: the endpoint's name is resolved once,
every address is checked against the outbound policy, only a checked address
is dialled, the socket is watched by the deadline's watchdog, and what the
endpoint sends is capped.
"""

import ipaddress
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore2
import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from . import network
from .causes import Failure

LOOPBACK_NAMES = ("localhost",)
# A token answer is a few hundred bytes; a bigger one is a hostile or broken endpoint.
MAX_RESPONSE_BYTES = 64 * 1024
# SASL mechanisms that carry a bearer token, in the order Mailkeep prefers them.
MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


def token_url_problem(url):
    """Why `url` may not be used as a token endpoint, or None: https only, plain http only to loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None
    return "The token endpoint must be an https:// URL (plain http only to this machine)."


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_NAMES


@dataclass(frozen=True)
class Grant:
    """An access token the endpoint granted: `access_token` (never in ``repr``), its `token_type`
    ("Bearer"), and `expires_in`, the seconds it is valid for as the endpoint said (RFC 6749 section 5.1),
    or None when it did not say."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_in: int | None = None


def fetch_token(attempt):
    """Get an access token for ``attempt.settings`` (client id and secret, token URL, scope); return it
    (the text). See ``grant``."""
    return grant(attempt).access_token


def grant(attempt):
    """Run the client-credentials grant (RFC 6749 section 4.4) for ``attempt.settings`` (client id and
    secret, token URL, scope); return the Grant.

    `attempt` is the running test or token request (``probe._Attempt``): its
    deadline, TLS context, outbound policy and watchdog apply. Raises Failure
    ``token_request_failed`` with the endpoint's ``error`` and
    ``error_description`` when it refuses, or ``destination_not_allowed``.
    """
    settings = attempt.settings
    problem = token_url_problem(settings.token_url)
    if problem:
        raise Failure("token_request_failed", reason=problem, field="token_url")
    answers = []
    client = OAuth2Client(
        settings.client_id, settings.client_secret, scope=settings.scope or None, timeout=attempt.seconds_left(),
        transport=_GuardedTransport(attempt), event_hooks={"response": [answers.append]},
    )
    try:
        with client:
            token = client.fetch_token(settings.token_url, grant_type="client_credentials")
    except OAuthError as error:
        blame = {"invalid_client": "client_secret", "unauthorized_client": "client_id",
                 "invalid_scope": "scope"}.get(error.error, "token_url")
        reply = f"{error.error}: {error.description}" if error.description else error.error
        raise Failure("token_request_failed", reply=reply, field=blame, reason=error.error,
                      detail=_detail(error.error)) from None
    except httpx2.TimeoutException:
        raise Failure("token_request_failed", reason="the endpoint did not answer in time", detail="timeout") from None
    except httpx2.HTTPError as error:
        raise Failure("token_request_failed", reason=_http_problem(answers, error), detail=_status(answers)) from None
    except (ValueError, TypeError, AttributeError):  # Authlib on a body that is not a JSON object
        raise Failure("token_request_failed", reason=_http_problem(answers, None), reply=_body(answers),
                      detail=_status(answers, "invalid_answer")) from None
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise Failure("token_request_failed", reason="the answer has no access_token")
    expires_in = token.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():  # some endpoints send it as text
        expires_in = int(expires_in)
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = None
    token_type = token.get("token_type")
    return Grant(access_token, token_type if isinstance(token_type, str) and token_type else "Bearer", expires_in)


def _detail(error_code):
    """An OAuth2 error code as Cause.detail: itself when it is a plain word (RFC 6749 section 5.2 allows
    printable ASCII only), cut to 40 characters; else "oauth_error"."""
    code = str(error_code or "")
    return code[:40] if code.replace("_", "").isalnum() and code.isascii() else "oauth_error"


def _status(answers, otherwise="unreachable"):
    """Cause.detail for an HTTP exchange that failed: ``http_<status>`` of the last answer when there was one
    with an error status, else `otherwise`."""
    if answers and answers[-1].status_code >= 400:
        return f"http_{answers[-1].status_code}"
    return otherwise


def _http_problem(answers, error):
    """What went wrong with the HTTP exchange (`error` an httpx error or None), in a short phrase."""
    if answers and answers[-1].status_code >= 400:
        return f"HTTP {answers[-1].status_code} from the endpoint"
    if error is not None:
        return (str(error).splitlines() or [type(error).__name__])[0]
    return "the answer is not a JSON object with an access_token"


def _body(answers):
    """The endpoint's last answer, as text, to quote (whole: it is redacted before it is cut)."""
    if not answers:
        return ""
    try:
        return answers[-1].read().decode("utf-8", "replace")
    except httpx2.HTTPError:
        return ""


def mechanism(offered):
    """The SASL mechanism to carry the token: XOAUTH2, else OAUTHBEARER (RFC 7628), from the names `offered`.

    Raises Failure ``auth_mechanism_unavailable`` (blaming Authentication) when neither is offered.
    """
    for name in MECHANISMS:
        if name in offered:
            return name
    raise Failure("auth_mechanism_unavailable", field="auth",
                  reason="the server offers neither SASL XOAUTH2 nor OAUTHBEARER")


def initial_response(mechanism, username, token):
    """The SASL initial client response for XOAUTH2 (Google's format) or OAUTHBEARER (RFC 7628 section 3.1)."""
    if mechanism == "XOAUTH2":
        return f"user={username}\x01auth=Bearer {token}\x01\x01"
    authzid = username.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 section 4 saslname
    return f"n,a={authzid},\x01auth=Bearer {token}\x01\x01"


class _GuardedStream(httpcore2.NetworkStream):
    """A socket for httpcore whose every operation is limited to the time left, and its reads to
    MAX_RESPONSE_BYTES in all (httpcore's NetworkStream interface)."""

    def __init__(self, sock, attempt, received=0):
        self._sock = sock
        self._attempt = attempt
        self._received = received

    def read(self, max_bytes, timeout=None):
        self._sock.settimeout(self._attempt.seconds_left())
        try:
            data = self._sock.recv(max_bytes)
        except TimeoutError:
            raise httpcore2.ReadTimeout("the endpoint did not answer in time") from None
        except OSError as error:
            raise httpcore2.ReadError(str(error)) from None
        self._received += len(data)
        if self._received > MAX_RESPONSE_BYTES:
            raise httpcore2.ReadError(f"the endpoint sent more than {MAX_RESPONSE_BYTES} bytes")
        return data

    def write(self, buffer, timeout=None):
        self._sock.settimeout(self._attempt.seconds_left())
        try:
            self._sock.sendall(buffer)
        except TimeoutError:
            raise httpcore2.WriteTimeout("the endpoint did not take the request in time") from None
        except OSError as error:
            raise httpcore2.WriteError(str(error)) from None

    def close(self):
        self._sock.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        self._sock.settimeout(self._attempt.seconds_left())
        try:
            tls = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
        except (OSError, ssl.SSLError) as error:
            raise httpcore2.ConnectError(f"TLS with the endpoint failed: {error}") from None
        return _GuardedStream(tls, self._attempt, self._received)

    def get_extra_info(self, info):
        # httpcore asks for "ssl_object" to see which protocol ALPN chose; an SSLSocket answers that itself.
        if info == "ssl_object":
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        return self._sock if info == "socket" else None


class _GuardedBackend(httpcore2.SyncBackend):
    """Dials through probe.network: resolved once (within the deadline), checked by the policy, watched by
    the watchdog."""

    def __init__(self, attempt):
        self._attempt = attempt

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        problem = self._attempt.policy.token_port_problem(port)
        if problem:
            raise Failure("destination_not_allowed", field="token_url", host=host, port=port, reason=problem)
        try:
            addresses = self._attempt.resolve(host, port)
        except Failure:
            raise Failure("token_request_failed", field="token_url",
                          reason=f"the host name {host} was not found", detail="unreachable") from None
        except TimeoutError:
            raise Failure("token_request_failed", field="token_url",
                          reason=f"looking up the host name {host} took too long", detail="timeout") from None
        for _, sockaddr in addresses:
            problem = self._attempt.policy.address_problem(sockaddr[0])
            if problem:
                raise Failure("destination_not_allowed", field="token_url", host=host, port=port, reason=problem)
        try:
            sock, _ = network.connect(addresses, self._attempt.seconds_left)
        except Failure as failure:
            what = "refused the connection" if failure.code == "connect_refused" else "did not answer"
            raise Failure("token_request_failed", field="token_url", reason=f"{host}:{port} {what}",
                          detail="unreachable") from None
        self._attempt.watch(sock)
        return _GuardedStream(sock, self._attempt)


class _GuardedTransport(httpx2.HTTPTransport):
    """httpx's transport over _GuardedBackend, with no proxies from the environment (they would skip the policy)."""

    def __init__(self, attempt):
        context = attempt.tls_context(for_https=True)
        super().__init__(verify=context, trust_env=False)
        # httpx builds its connection pool without a way to choose the network backend; this pool has ours.
        self._pool = httpcore2.ConnectionPool(ssl_context=context, network_backend=_GuardedBackend(attempt))
