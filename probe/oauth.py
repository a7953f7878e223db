"""OAuth2 for a connection test: the token grants, and the SASL responses that carry the token.

Three grants, with Authlib's httpx client: client credentials (RFC 6749
section 4.4) for an application's own access; for a person who signed in, the
authorization code with its PKCE verifier (RFC 6749 section 4.1.3, RFC 7636
section 4.5), redeemed once, and after it the refresh-token grant (RFC 6749
section 6), whose answer may carry a new refresh token that replaces the one
used. Tokens are used once for the login and never stored or shown here: what
was granted goes back to the caller in a ``Grant``. The HTTP request goes
through the same path as the mail connection: the endpoint's name is resolved
once, every address is checked against the outbound policy, only a checked
address is dialled, the socket is watched by the deadline's watchdog, and what
the endpoint sends is capped. OpenID Connect discovery (``discover``) takes
the same path.
"""

import base64
import binascii
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpcore2
import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from . import network, protocols
from .causes import Failure
from .result import Grant

LOOPBACK_NAMES = ("localhost",)
# A token answer is a few hundred bytes, a discovery document a few kilobytes; more is a hostile or broken endpoint.
MAX_RESPONSE_BYTES = 64 * 1024
# SASL mechanisms that carry a bearer token, in the order Mailkeep prefers them.
MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# OpenID Connect Discovery 1.0 section 4: where an issuer's configuration is.
DISCOVERY_PATH = "/.well-known/openid-configuration"
SIGN_IN_HINT = (
    "The OAuth app's client ID, client secret or token endpoint may be wrong, or its client secret expired: "
    "an administrator can check them. If it keeps failing, sign in again."
)
CODE_REFUSED = (
    "The token endpoint refused the authorization code{reason}: it was used already, expired, or was issued "
    "for another redirect URI."
)


def endpoint_problem(url, what="token endpoint"):
    """Why `url` may not be used as an OAuth2 endpoint (`what` names it in the sentence), or None: https only,
    plain http only to loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None
    return f"The {what} must be an https:// URL (plain http only to this machine)."


def token_url_problem(url):
    """Why `url` may not be used as a token endpoint, or None: https only, plain http only to loopback."""
    return endpoint_problem(url)


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_NAMES


@dataclass(frozen=True)
class AuthorizationCode:
    """An authorization code to redeem once (RFC 6749 section 4.1.3): the `code` the provider sent back,
    the PKCE `verifier` whose S256 challenge went with the authorization request (RFC 7636 section 4.5),
    and the `redirect_uri` the code was sent to, which must be sent again, identical."""

    code: str = field(repr=False)
    verifier: str = field(repr=False)
    redirect_uri: str

    @property
    def secrets(self):
        """The secrets it holds (for redaction)."""
        return (self.code, self.verifier)


def fetch_token(attempt):
    """Get a token for ``attempt.settings`` from its token endpoint; return a probe.Grant.

    The grant is chosen by what there is: ``attempt.code`` (an
    AuthorizationCode) is redeemed; otherwise OAuth2 sign-in uses the
    refresh-token grant with ``settings.refresh_token`` (the answer's new
    refresh token, if any, is the Grant's, with ``rotated``), and OAuth2 client
    credentials the client-credentials grant. `attempt` is the running test
    (``probe._Attempt``): its deadline, TLS context, outbound policy and
    watchdog apply. Raises Failure ``oauth_consent_required`` when the endpoint
    answers ``invalid_grant`` to a refresh token (RFC 6749 section 5.2),
    ``token_request_failed`` with the endpoint's ``error`` and
    ``error_description`` when it refuses otherwise, or ``destination_not_allowed``.
    """
    settings, code = attempt.settings, attempt.code
    refreshing = code is None and settings.auth == protocols.OAUTH2_SIGN_IN
    signing_in = code is not None or refreshing
    problem = token_url_problem(settings.token_url)
    if problem:
        raise Failure("token_request_failed", reason=problem, field="refresh_token" if signing_in else "token_url",
                      hint=SIGN_IN_HINT if signing_in else None)
    answers = []
    client = OAuth2Client(
        settings.client_id, settings.client_secret, scope=settings.scope or None, timeout=attempt.seconds_left(),
        transport=_GuardedTransport(attempt), event_hooks={"response": [answers.append]},
    )
    try:
        with client:
            if code is not None:
                token = client.fetch_token(settings.token_url, grant_type="authorization_code", code=code.code,
                                           redirect_uri=code.redirect_uri, code_verifier=code.verifier)
            elif refreshing:
                token = client.refresh_token(settings.token_url, refresh_token=settings.refresh_token)
            else:
                token = client.fetch_token(settings.token_url, grant_type="client_credentials")
    except Failure as failure:  # from the guarded transport: a destination not allowed, a name not found
        if signing_in:
            failure.field = "refresh_token"
        raise
    except OAuthError as error:
        reply = f"{error.error}: {error.description}" if error.description else error.error
        if error.error == "invalid_grant" and refreshing:
            raise Failure("oauth_consent_required", reply=reply, reason=error.error,
                          detail=_detail(error.error)) from None
        if error.error == "invalid_grant" and code is not None:
            raise Failure("token_request_failed", reply=reply, field="refresh_token", reason=error.error,
                          message=CODE_REFUSED, hint=SIGN_IN_HINT, detail=_detail(error.error)) from None
        if signing_in:
            raise Failure("token_request_failed", reply=reply, field="refresh_token", reason=error.error,
                          hint=SIGN_IN_HINT, detail=_detail(error.error)) from None
        blame = {"invalid_client": "client_secret", "unauthorized_client": "client_id",
                 "invalid_scope": "scope"}.get(error.error, "token_url")
        raise Failure("token_request_failed", reply=reply, field=blame, reason=error.error,
                      detail=_detail(error.error)) from None
    except httpx2.TimeoutException:
        raise _unanswered("the endpoint did not answer in time", signing_in, detail="timeout") from None
    except httpx2.HTTPError as error:
        raise _unanswered(_http_problem(answers, error), signing_in, detail=_status(answers)) from None
    except (ValueError, TypeError, AttributeError):  # Authlib on a body that is not a JSON object
        raise _unanswered(_http_problem(answers, None), signing_in, reply=_body(answers),
                          detail=_status(answers, "invalid_answer")) from None
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise _unanswered("the answer has no access_token", signing_in)
    return _grant(token, settings, used=settings.refresh_token if refreshing else "")


def _unanswered(reason, signing_in, reply="", detail=""):
    """The Failure for a token endpoint that gave no usable answer (for a sign-in, blaming the sign-in);
    `detail` is its Cause.detail (see ``_status``)."""
    if signing_in:
        return Failure("token_request_failed", reason=reason, reply=reply, field="refresh_token", hint=SIGN_IN_HINT,
                       detail=detail)
    return Failure("token_request_failed", reason=reason, reply=reply, detail=detail)


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


def _grant(token, settings, used):
    """The probe.Grant of Authlib's OAuth2Token `token`; `used` is the refresh token that was sent, if any
    (Authlib puts it back into the token when the answer has none)."""
    refresh_token = token.get("refresh_token")
    refresh_token = refresh_token if isinstance(refresh_token, str) else ""
    expires_at = token.get("expires_at")
    scope = token.get("scope")
    id_token = token.get("id_token")
    return Grant(
        access_token=token["access_token"],
        expires_at=datetime.fromtimestamp(expires_at, timezone.utc) if isinstance(expires_at, (int, float)) else None,
        refresh_token=refresh_token,
        rotated=bool(used) and bool(refresh_token) and refresh_token != used,
        scope=scope if isinstance(scope, str) and scope else settings.scope,
        id_token=id_token if isinstance(id_token, str) else "",
    )


def id_token_claims(id_token):
    """The claims of an OpenID Connect ID Token (a JWS, RFC 7515 compact form) as a dict; {} when it is not one.

    The signature is not checked: the token came straight from the token
    endpoint over the verified TLS connection Mailkeep opened, which OpenID
    Connect Core 1.0 section 3.1.3.7 accepts in place of checking it. The
    caller checks ``aud`` and ``nonce``.
    """
    parts = id_token.split(".") if isinstance(id_token, str) else []
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class Discovery:
    """What an OpenID Connect discovery document says (OpenID Connect Discovery 1.0 section 3): the
    `issuer`, and its `authorization_endpoint` and `token_endpoint` URLs."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str


def discover(attempt, issuer):
    """Read the discovery document of `issuer` (an https:// URL) and return a Discovery.

    Fetched like a token (``fetch_token``): under the outbound policy, the
    deadline and MAX_RESPONSE_BYTES. The document's ``issuer`` must equal
    `issuer` (OpenID Connect Discovery 1.0 section 4.3), and its endpoints
    must be https (plain http only to loopback). Raises Failure
    ``oauth_discovery_failed`` saying why, or ``destination_not_allowed``.
    """
    issuer = issuer.rstrip("/")
    problem = endpoint_problem(issuer, "issuer")
    if problem:
        raise Failure("oauth_discovery_failed", reason=problem, issuer=issuer)
    answers = []
    try:
        with httpx2.Client(transport=_GuardedTransport(attempt), timeout=attempt.seconds_left(),
                           event_hooks={"response": [answers.append]}) as client:
            response = client.get(issuer + DISCOVERY_PATH, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
    except Failure as failure:  # from the guarded transport: a destination not allowed, a name not found
        reason = failure.context.get("reason") or failure.code.replace("_", " ")
        raise Failure("oauth_discovery_failed", reason=reason, issuer=issuer) from None
    except httpx2.TimeoutException:
        raise Failure("oauth_discovery_failed", reason="it did not answer in time", issuer=issuer) from None
    except httpx2.HTTPError as error:
        raise Failure("oauth_discovery_failed", reason=_http_problem(answers, error), issuer=issuer) from None
    except ValueError:
        raise Failure("oauth_discovery_failed", reason="the answer is not JSON", issuer=issuer) from None
    if not isinstance(document, dict):
        raise Failure("oauth_discovery_failed", reason="the answer is not a JSON object", issuer=issuer)
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise Failure("oauth_discovery_failed", issuer=issuer,
                      reason=f"the document names another issuer, {str(document.get('issuer'))[:200]!r}")
    endpoints = {}
    for name in ("authorization_endpoint", "token_endpoint"):
        url = document.get(name)
        problem = endpoint_problem(url, name.replace("_", " ")) if isinstance(url, str) and url else \
            f"it has no {name}"
        if problem:
            raise Failure("oauth_discovery_failed", reason=problem, issuer=issuer)
        endpoints[name] = url
    return Discovery(issuer=issuer, **endpoints)


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
