"""probe's OAuth2 sign-in: the authorization code redeemed once with its PKCE verifier, the refresh-token grant
that hands back the provider's new refresh token, invalid_grant as oauth_consent_required, OpenID Connect
discovery, and hostile endpoints held to the same bounds as the client-credentials grant."""

import base64
import hashlib
import json
import re
import secrets
import urllib.parse

import pytest

import dovecot as test_dovecot
import probe
from probe import oauth, protocols
from servers import (
    DEADLINE,
    TEST_POLICY,
    SocketServer,
    http_answer,
    http_drip,
    http_huge,
    run,
    settings_for,
    shown_text,
)
from testdata import CANARY, CLIENT_SECRET, MAILBOX_USER, SIGN_IN_CLIENT_ID

REDIRECT_URI = "http://127.0.0.1:5000/oauth/callback"


def prober(**options):
    return probe.Prober(deadline=DEADLINE, policy=TEST_POLICY, **options)


def authorization_url(token_server, verifier, scope="openid email mail", nonce="n-1"):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": SIGN_IN_CLIENT_ID, "redirect_uri": REDIRECT_URI, "scope": scope,
             "state": "s-1", "code_challenge": challenge, "code_challenge_method": "S256", "nonce": nonce}
    return f"{token_server.authorization_url}?{urllib.parse.urlencode(query)}"


def app_settings(token_server, **values):
    """The settings of a sign-in at the test server, without a refresh token yet."""
    return probe.Settings("IMAP", "localhost", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2_SIGN_IN,
                          client_id=SIGN_IN_CLIENT_ID, client_secret=CLIENT_SECRET,
                          token_url=token_server.token_url, scope="mail", **values)


def code_from(callback_url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback_url).query))["code"]


def sign_in(token_server):
    """Consent at the test server and redeem the code: the probe.Grant of a fresh sign-in."""
    verifier = secrets.token_urlsafe(48)
    code = code_from(token_server.approve(authorization_url(token_server, verifier)))
    result = prober().token(app_settings(token_server), code=probe.AuthorizationCode(code, verifier, REDIRECT_URI))
    assert result.ok, result.cause
    return result.grant


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_a_signed_in_mailbox_logs_in_with_the_refresh_token_and_gets_the_new_one(dovecot, token_server, protocol):
    first = sign_in(token_server)
    settings = settings_for(dovecot, protocol=protocol, password="", auth=protocols.OAUTH2_SIGN_IN,
                            client_id=SIGN_IN_CLIENT_ID, client_secret=CLIENT_SECRET, token_url=token_server.token_url,
                            scope="mail", refresh_token=first.refresh_token)
    result = run(settings, dovecot.ca_file)
    assert result.ok, result.cause
    assert result.message_count == test_dovecot.INBOX_MESSAGE_COUNT
    token_step = next(step for step in result.steps if step.name == "token")
    assert token_step.details.startswith("refresh-token grant at ")
    assert token_step.details.endswith("a new refresh token replaces the one used")
    assert result.grant.rotated and result.grant.refresh_token != first.refresh_token
    assert token_server.refresh_token_works(result.grant.refresh_token)
    assert not token_server.refresh_token_works(first.refresh_token)  # each refresh token works once
    shown = shown_text(result) + repr(result) + repr(settings)
    for secret in (first.refresh_token, result.grant.refresh_token, result.grant.access_token, CLIENT_SECRET):
        assert secret not in shown


def test_the_code_is_redeemed_once_with_its_verifier_and_gives_an_id_token(token_server):
    verifier = secrets.token_urlsafe(48)
    code = code_from(token_server.approve(authorization_url(token_server, verifier, nonce="nonce-7")))
    wrong = prober().token(app_settings(token_server), code=probe.AuthorizationCode(code, "x" * 48, REDIRECT_URI))
    assert (wrong.cause.code, wrong.cause.field) == ("token_request_failed", "refresh_token")
    assert "PKCE verification failed" in wrong.cause.server_reply

    verifier = secrets.token_urlsafe(48)
    code = code_from(token_server.approve(authorization_url(token_server, verifier, nonce="nonce-7")))
    granted = prober().token(app_settings(token_server), code=probe.AuthorizationCode(code, verifier, REDIRECT_URI))
    assert granted.ok and granted.grant.refresh_token.startswith("rt-")
    claims = oauth.id_token_claims(granted.grant.id_token)
    assert (claims["email"], claims["aud"], claims["nonce"]) == (MAILBOX_USER, SIGN_IN_CLIENT_ID, "nonce-7")
    assert "authorization-code grant (PKCE)" in granted.steps[0].details
    again = prober().token(app_settings(token_server), code=probe.AuthorizationCode(code, verifier, REDIRECT_URI))
    assert again.cause.code == "token_request_failed"
    assert again.cause.message.startswith("The token endpoint refused the authorization code (invalid_grant)")
    assert code not in str(again.as_dict()) and CANARY not in str(again.as_dict())


def test_a_refused_refresh_token_means_signing_in_again_in_the_providers_words(token_server):
    grant = sign_in(token_server)
    token_server.revoke_consent(MAILBOX_USER)
    result = prober().token(app_settings(token_server, refresh_token=grant.refresh_token))
    assert not result.ok and result.grant is None
    cause = result.cause
    assert (cause.code, cause.field) == ("oauth_consent_required", "refresh_token")
    assert cause.message == "The provider no longer accepts this sign-in (invalid_grant)."
    assert cause.server_reply == "invalid_grant: The user has withdrawn consent."
    assert "Sign in again" in cause.hint
    assert grant.refresh_token not in str(result.as_dict())


def test_a_refresh_token_used_twice_is_refused_the_second_time(token_server):
    grant = sign_in(token_server)
    settings = app_settings(token_server, refresh_token=grant.refresh_token)
    assert prober().token(settings).ok
    assert prober().token(settings).cause.code == "oauth_consent_required"


def test_a_provider_that_keeps_the_refresh_token_says_so():
    body = json.dumps({"access_token": "a-token-of-sorts", "token_type": "Bearer", "expires_in": 60}).encode()
    with SocketServer(http_answer(b"200 OK", body)) as server:
        settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2_SIGN_IN,
                                  client_id="c", client_secret=CLIENT_SECRET, token_url=f"http://127.0.0.1:{server.port}/t",
                                  refresh_token="the-same-refresh-token")
        result = prober().token(settings)
    assert result.ok
    assert (result.grant.refresh_token, result.grant.rotated) == ("the-same-refresh-token", False)
    assert result.grant.expires_at is not None
    assert result.steps[0].details.endswith("the refresh token stays the same")


@pytest.mark.runs_long
@pytest.mark.parametrize(
    ("handle", "words"),
    [
        (http_drip, "did not answer in time"),
        (http_huge, "sent more than 65536 bytes"),
        (http_answer(b"401 Unauthorized", b'{"error": "invalid_client"}'), "(invalid_client)"),
    ],
    ids=["drips", "sends 400 MB", "invalid_client"],
)
def test_hostile_token_endpoints_blame_the_sign_in_and_end_in_time(handle, words):
    with SocketServer(handle) as server:
        settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2_SIGN_IN,
                                  client_id="c", client_secret=CLIENT_SECRET,
                                  token_url=f"http://127.0.0.1:{server.port}/t", refresh_token=CANARY)
        result = run(settings)
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "token_request_failed", "refresh_token", "token")
    assert words in result.cause.message
    assert "OAuth app" in result.cause.hint


def echo_the_refresh_token(connection, stop):
    """A token endpoint that reads the whole request and refuses it, quoting the refresh token it was sent."""
    request = b""
    while b"\r\n\r\n" not in request or len(request.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"Content-Length: (\d+)", request, re.IGNORECASE).group(1)):
        chunk = connection.recv(65536)
        if not chunk:
            return
        request += chunk
    form = dict(urllib.parse.parse_qsl(request.split(b"\r\n\r\n", 1)[1].decode()))
    body = json.dumps({"error": "invalid_grant", "error_description": f"bad token {form['refresh_token']}"}).encode()
    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: " +
                       str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    stop.wait()


def test_a_refresh_token_echoed_by_the_endpoint_is_redacted():
    with SocketServer(echo_the_refresh_token) as server:
        settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2_SIGN_IN,
                                  client_id="c", client_secret=CLIENT_SECRET,
                                  token_url=f"http://127.0.0.1:{server.port}/t", refresh_token=f"rt-{CANARY}")
        result = run(settings)
    assert result.cause.code == "oauth_consent_required"
    assert result.cause.server_reply == "invalid_grant: bad token ••••••"


def test_discovery_reads_the_endpoints_of_the_issuer(token_server):
    discovery, cause = prober().discover(token_server.url + "/")
    assert cause is None
    assert (discovery.authorization_endpoint, discovery.token_endpoint) == (
        token_server.authorization_url, token_server.token_url)


@pytest.mark.runs_long
@pytest.mark.parametrize(
    ("handle", "words"),
    [
        (http_drip, "did not answer in time"),
        (http_huge, "sent more than 65536 bytes"),
        (http_answer(b"200 OK", b'{"issuer": "https://elsewhere.example"}'), "names another issuer"),
        (http_answer(b"200 OK", b"<html>"), "not JSON"),
        (http_answer(b"404 Not Found", b""), "HTTP 404"),
    ],
    ids=["drips", "sends 400 MB", "another issuer", "HTML", "missing"],
)
def test_hostile_discovery_documents_end_in_time_with_a_reason(handle, words):
    with SocketServer(handle) as server:
        discovery, cause = prober().discover(f"http://127.0.0.1:{server.port}")
    assert discovery is None
    assert (cause.code, cause.field) == ("oauth_discovery_failed", "issuer")
    assert words in cause.message


def test_discovery_keeps_to_the_outbound_policy():
    discovery, cause = probe.Prober(deadline=DEADLINE).discover("http://127.0.0.1:443/")
    assert discovery is None and "127.0.0.1 is a private or loopback address" in cause.message
    _, cause = probe.Prober(deadline=DEADLINE).discover("http://127.0.0.1:9/")
    assert "port 9 is neither 443 nor an allowed port" in cause.message
    _, cause = prober().discover("http://issuer.example.com")
    assert "must be an https:// URL" in cause.message


def test_id_token_claims_are_read_or_nothing():
    payload = base64.urlsafe_b64encode(json.dumps({"email": "a@b.example"}).encode()).rstrip(b"=").decode()
    assert oauth.id_token_claims(f"e30.{payload}.sig") == {"email": "a@b.example"}
    for broken in ("", "a.b", "a.!!!.c", "a.W10.c", None):
        assert oauth.id_token_claims(broken) == {}
