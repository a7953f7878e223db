"""probe's OAuth2: the client-credentials grant, the SASL mechanisms that carry the token, and hostile
token endpoints held to the same deadline, memory bound and watchdog."""

import pytest

import dovecot as test_dovecot
import probe
from probe import imap, oauth, protocols
from servers import (
    ImapScript,
    SocketServer,
    http_answer,
    http_drip,
    http_huge,
    local,
    oauth2,
    run,
    settings_for,
    tls_server_context,
)
from testdata import CLIENT_ID, CLIENT_SECRET, MAILBOX_USER


def token_login(token_server, client_id=CLIENT_ID, client_secret=CLIENT_SECRET):
    return oauth2(token_server, client_id, client_secret)


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_oauth2_client_credentials(dovecot, token_server, protocol):
    result = run(settings_for(dovecot, protocol=protocol, **token_login(token_server)), dovecot.ca_file)
    assert result.ok, result.cause
    steps = {step.name: step for step in result.steps}
    assert list(steps)[:3] == ["resolve", "token", "connect"]  # a refused destination costs no token request
    assert steps["token"].details.endswith("access token received")
    assert "XOAUTH2" in steps["authenticate"].details
    assert result.message_count == test_dovecot.INBOX_MESSAGE_COUNT


def test_the_token_is_never_in_the_result(dovecot, token_server):
    result = run(settings_for(dovecot, **token_login(token_server)), dovecot.ca_file)
    issued = [entry for entry in token_server.requests if entry["path"] == "/introspect"][-1]["form"]["token"]
    assert issued not in str(result.as_dict())
    assert CLIENT_SECRET not in str(result.as_dict())


def test_oauthbearer_when_xoauth2_is_not_offered():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2)
    assert imap._mechanism({b"AUTH=OAUTHBEARER"}, settings) == "OAUTHBEARER"
    assert imap._mechanism({b"AUTH=XOAUTH2", b"AUTH=OAUTHBEARER"}, settings) == "XOAUTH2"
    assert oauth.initial_response("OAUTHBEARER", "a,b=c", "T") == "n,a=a=2Cb=3Dc,\x01auth=Bearer T\x01\x01"


def test_the_mail_server_is_not_offered_the_token_endpoints_alpn(certificates, token_server):
    """httpcore sets ALPN "http/1.1" on the SSLContext it is given; the mail connection has its own."""
    ca_file = certificates[0]
    script = ImapScript(b"IMAP4rev1 AUTH=XOAUTH2")
    with SocketServer(script, tls=tls_server_context(certificates, alpn=["http/1.1", "imap"])) as server:
        result = run(local(server.port, **token_login(token_server)), ca_file)
    assert result.ok, result.cause
    assert script.alpn is None


def test_token_endpoints_must_be_https_except_on_loopback():
    assert oauth.token_url_problem("https://login.example.com/token") is None
    assert oauth.token_url_problem("http://127.0.0.1:8080/token") is None
    assert oauth.token_url_problem("http://localhost/token") is None
    assert oauth.token_url_problem("http://login.example.com/token")
    assert oauth.token_url_problem("ftp://login.example.com/token")
    settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2, client_id="c",
                              client_secret="s", token_url="http://login.example.com/token")
    result = run(settings)
    assert (result.cause.code, result.cause.field) == ("token_request_failed", "token_url")


@pytest.mark.runs_long
@pytest.mark.parametrize(
    ("handle", "code", "field", "words"),
    [
        (http_drip, "token_request_failed", "token_url", "did not answer in time"),
        (http_huge, "token_request_failed", "token_url", "sent more than 65536 bytes"),
        (http_answer(b"200 OK", b"[]"), "token_request_failed", "token_url", "not a JSON object with an access_token"),
        (http_answer(b"200 OK", b'{"access_token": 5}'), "token_request_failed", "token_url", "has no access_token"),
        (http_answer(b"403 Forbidden", b"<h1>Go away</h1>", b"text/html"), "token_request_failed", "token_url",
         "HTTP 403 from the endpoint"),
        (http_answer(b"401 Unauthorized", b'{"error": "invalid_client", "error_description": "no such client"}'),
         "token_request_failed", "client_secret", "(invalid_client)"),
    ],
    ids=["drips", "sends 400 MB", "answers a list", "token is a number", "HTML error page", "invalid_client"],
)
def test_hostile_token_endpoints(handle, code, field, words):
    with SocketServer(handle) as server:
        settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2,
                                  client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                  token_url=f"http://127.0.0.1:{server.port}/token")
        result = run(settings)
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (code, field, "token")
    assert words in result.cause.message
    assert CLIENT_SECRET not in str(result.as_dict())
