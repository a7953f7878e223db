"""OAuth2 for a connection test: the client-credentials grant, and the SASL responses that carry the token.

The token is fetched with Authlib's httpx client (RFC 6749 section 4.4), used
once for the login, and never stored or shown.
"""

import ipaddress
from urllib.parse import urlsplit

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from . import network
from .causes import Failure

LOOPBACK_NAMES = ("localhost",)


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


def fetch_token(settings, timeout, context, policy):
    """Get an access token for `settings` (client id and secret, token URL, scope); return it as text.

    `timeout` is seconds for each HTTP operation, `context` the SSLContext that
    verifies an https endpoint, `policy` the probe.policy.Policy whose address
    rules the endpoint's addresses must pass (checked before the request; the
    HTTP client resolves the name again). Raises Failure ``token_request_failed``
    with the endpoint's ``error`` and ``error_description`` when it refuses, or
    ``destination_not_allowed``.
    """
    problem = token_url_problem(settings.token_url)
    if problem:
        raise Failure("token_request_failed", reason=problem, field="token_url")
    endpoint = urlsplit(settings.token_url)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        addresses = network.resolve(host, port)
    except Failure:
        raise Failure("token_request_failed", field="token_url", reason=f"the host name {host} was not found") from None
    for _, sockaddr in addresses:
        problem = policy.address_problem(sockaddr[0])
        if problem:
            raise Failure("destination_not_allowed", field="token_url", host=host, port=port, reason=problem)
    client = OAuth2Client(
        settings.client_id, settings.client_secret, scope=settings.scope or None, timeout=timeout, verify=context,
    )
    try:
        with client:
            token = client.fetch_token(settings.token_url, grant_type="client_credentials")
    except OAuthError as error:
        blame = {"invalid_client": "client_secret", "unauthorized_client": "client_id",
                 "invalid_scope": "scope"}.get(error.error, "token_url")
        reply = f"{error.error}: {error.description}" if error.description else error.error
        raise Failure("token_request_failed", reply=reply, field=blame, reason=error.error) from None
    except httpx2.TimeoutException:
        raise Failure("token_request_failed", reason="the endpoint did not answer in time") from None
    except httpx2.HTTPError as error:
        raise Failure("token_request_failed", reason=str(error)[:200] or type(error).__name__) from None
    except ValueError:  # a body that is not JSON
        raise Failure("token_request_failed", reason="the answer is not JSON") from None
    if not token.get("access_token"):
        raise Failure("token_request_failed", reason="the answer has no access_token")
    return token["access_token"]


def initial_response(mechanism, username, token):
    """The SASL initial client response for XOAUTH2 (Google's format) or OAUTHBEARER (RFC 7628 section 3.1)."""
    if mechanism == "XOAUTH2":
        return f"user={username}\x01auth=Bearer {token}\x01\x01"
    authzid = username.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 section 4 saslname
    return f"n,a={authzid},\x01auth=Bearer {token}\x01\x01"
