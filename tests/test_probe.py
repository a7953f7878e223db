"""The connection test against a real Dovecot, a real OAuth2 token endpoint, and purpose-built servers."""

import contextlib
import dataclasses
import socket
import threading
import time

import pytest

import dovecot as test_dovecot
import probe
from probe import protocols
from probe import causes, imap, oauth
from probe.causes import Failure, describe, redact
from servers import (
    SocketServer,
    close_mid_command,
    converse,
    drip,
    echo_secrets,
    flood,
    greet_then_stall,
    greet_with,
    huge_literal,
    never_greet,
    oversized_line,
    speak_http,
    unanswered_port,
)
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET, LOOPBACK_POLICY, MAILBOX_USER, NO_TOKEN_CLIENT_ID

DEADLINE = 2.0
TEST_POLICY = probe.Policy.parse(LOOPBACK_POLICY["ports"], LOOPBACK_POLICY["networks"])
IMAP_STEPS = ["resolve", "connect", "tls", "greeting", "authenticate", "folder", "logout"]


def settings_for(server, protocol="IMAP", security="ssl_tls", host="localhost", port=None, **values):
    """Settings for the test Dovecot (or a purpose-built server's `port`), the canary as password."""
    if port is None:
        port = {
            ("IMAP", "ssl_tls"): server.imaps_port, ("IMAP", "starttls"): server.imap_port,
            ("POP3", "ssl_tls"): server.pop3s_port, ("POP3", "starttls"): server.pop3_port,
        }[(protocol, security)]
    values = {"username": MAILBOX_USER, "password": CANARY, **values}
    return probe.Settings(protocol=protocol, host=host, port=port, security=security, **values)


def oauth2(token_server, client_id=CLIENT_ID, client_secret=CLIENT_SECRET):
    """The OAuth2 part of Settings for the test token endpoint."""
    return {"auth": protocols.OAUTH2, "password": "", "client_id": client_id, "client_secret": client_secret,
            "token_url": token_server.token_url}


def run(settings, ca_file=None, policy=TEST_POLICY):
    """Run a test and check the promise every test makes: done within the deadline plus one second.

    Done means the worker too: its slot must be free again by then, not only the answer given.
    """
    slots = threading.BoundedSemaphore(1)
    started = time.monotonic()
    result = probe.run(settings, deadline=DEADLINE, ca_file=ca_file and str(ca_file), policy=policy, slots=slots)
    while not slots.acquire(timeout=0.05):
        assert time.monotonic() - started <= DEADLINE + 1, "the worker still ran a second after the deadline"
    assert time.monotonic() - started <= DEADLINE + 1
    return result


def outcomes(result):
    return {step.name: step.outcome for step in result.steps}


# Success, step by step.

def test_imap_over_implicit_tls(dovecot):
    result = run(settings_for(dovecot), dovecot.ca_file)
    assert result.ok, result.cause
    assert result.message_count == test_dovecot.INBOX_MESSAGE_COUNT
    assert [step.name for step in result.steps] == IMAP_STEPS
    assert set(outcomes(result).values()) == {"ok"}
    details = {step.name: step.details for step in result.steps}
    assert details["resolve"] == "127.0.0.1"
    assert details["tls"].startswith("TLSv1.3, ") and "certificate for localhost issued by" in details["tls"]
    assert "valid until 20" in details["tls"] and details["tls"].endswith("host name matched")
    assert "SASL LOGIN, OAUTHBEARER, PLAIN, XOAUTH2" in details["greeting"] and "IDLE" in details["greeting"]
    assert details["authenticate"] == f"LOGIN as {MAILBOX_USER}"
    assert details["folder"].startswith("EXAMINE INBOX: 3 messages")
    assert result.folders == ["INBOX", "Archive", "Team Inbox"]
    assert "Connected; INBOX holds 3 messages" in result.summary


def test_imap_over_starttls(dovecot):
    result = run(settings_for(dovecot, security="starttls"), dovecot.ca_file)
    assert result.ok, result.cause
    assert [step.name for step in result.steps] == [
        "resolve", "connect", "greeting", "starttls", "authenticate", "folder", "logout",
    ]
    assert "STARTTLS" in result.steps[2].details  # seen before upgrading
    assert result.steps[3].details.startswith("TLSv1.")


def test_a_folder_with_a_space_is_found(dovecot):
    result = run(settings_for(dovecot, folder="Team Inbox"), dovecot.ca_file)
    assert result.ok, result.cause
    assert result.message_count == 0


@pytest.mark.parametrize("security", ["ssl_tls", "starttls"])
def test_pop3(dovecot, security):
    result = run(settings_for(dovecot, protocol="POP3", security=security), dovecot.ca_file)
    assert result.ok, result.cause
    steps = {step.name: step for step in result.steps}
    assert list(steps)[-3:] == ["authenticate", "stat", "logout"]
    assert ("starttls" in steps) == (security == "starttls")
    assert steps["authenticate"].details == f"USER/PASS as {MAILBOX_USER}"
    assert steps["stat"].details.startswith("STAT: 3 messages")
    assert result.message_count == test_dovecot.INBOX_MESSAGE_COUNT and result.folders == []


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_oauth2_client_credentials(dovecot, token_server, protocol):
    result = run(settings_for(dovecot, protocol=protocol, **oauth2(token_server)), dovecot.ca_file)
    assert result.ok, result.cause
    steps = {step.name: step for step in result.steps}
    assert list(steps)[:3] == ["resolve", "token", "connect"]  # a refused destination costs no token request
    assert steps["token"].details.endswith("access token received")
    assert "XOAUTH2" in steps["authenticate"].details
    assert result.message_count == test_dovecot.INBOX_MESSAGE_COUNT


def test_the_token_is_never_in_the_result(dovecot, token_server):
    result = run(settings_for(dovecot, **oauth2(token_server)), dovecot.ca_file)
    issued = [entry for entry in token_server.requests if entry["path"] == "/introspect"][-1]["form"]["token"]
    assert issued not in str(result.as_dict())
    assert CLIENT_SECRET not in str(result.as_dict())


def test_oauthbearer_when_xoauth2_is_not_offered():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2)
    assert imap._mechanism({b"AUTH=OAUTHBEARER"}, settings) == "OAUTHBEARER"
    assert imap._mechanism({b"AUTH=XOAUTH2", b"AUTH=OAUTHBEARER"}, settings) == "XOAUTH2"
    assert oauth.initial_response("OAUTHBEARER", "a,b=c", "T") == "n,a=a=2Cb=3Dc,\x01auth=Bearer T\x01\x01"


def test_a_non_ascii_password_goes_by_sasl_plain():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, password="pässwörd")
    assert imap._mechanism({b"AUTH=PLAIN"}, settings) == "PLAIN"
    with pytest.raises(Failure) as refused:
        imap._mechanism(set(), settings)
    assert refused.value.code == "auth_mechanism_unavailable"


# Every cause code, with the field it blames and the step that failed.

def _closed_port():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


@contextlib.contextmanager
def purpose_built(handle, tls=None):
    with SocketServer(handle, tls=tls) as server:
        yield server.port


CAUSES = [
    # code, field, step, what the case is
    ("dns_not_found", "host", "resolve", "unknown host"),
    ("connect_refused", "port", "connect", "closed port"),
    ("connect_timeout", "host", "connect", "unanswered port"),
    ("greeting_timeout", "port", "tls", "silent server"),
    ("greeting_timeout", "security", "greeting", "TLS server dialled for STARTTLS"),
    ("tls_handshake_failed", "security", "tls", "SSL/TLS to the plaintext port"),
    ("tls_certificate_untrusted", "host", "tls", "unknown CA"),
    ("tls_certificate_expired", "host", "tls", "expired certificate"),
    ("tls_hostname_mismatch", "host", "tls", "certificate for another name"),
    ("starttls_unavailable", "security", "starttls", "server without STARTTLS"),
    ("plaintext_refused", "security", "authenticate", "LOGINDISABLED after TLS"),
    ("auth_failed", "password", "authenticate", "wrong password"),
    ("auth_failed", "password", "authenticate", "wrong POP3 password"),
    ("auth_mechanism_unavailable", "auth", "authenticate", "OAuth2 without XOAUTH2"),
    ("folder_not_found", "folder", "folder", "missing folder"),
    ("token_request_failed", "client_secret", "token", "wrong client secret"),
    ("token_request_failed", "token_url", "token", "token answer without access_token"),
    ("protocol_error", "port", "greeting", "web server"),
    ("deadline_exceeded", "port", "greeting", "dripping server"),
]


@pytest.mark.parametrize(("code", "field", "step", "case"), CAUSES, ids=[c[3] for c in CAUSES])
def test_every_cause_names_its_code_field_and_step(request, code, field, step, case):
    dovecot, tokens, certificates = (
        request.getfixturevalue(name) for name in ("dovecot", "token_server", "certificates")
    )
    ca_file, cert, key = certificates
    local = dict(host="127.0.0.1")
    cases = {
        "unknown host": lambda: (contextlib.nullcontext(None), dict(host="nosuchhost.invalid"), dovecot.ca_file),
        "closed port": lambda: (contextlib.nullcontext(_closed_port()), local, None),
        "unanswered port": lambda: (unanswered_port(), local, None),
        "silent server": lambda: (purpose_built(never_greet), local, None),
        "TLS server dialled for STARTTLS": lambda: (
            purpose_built(never_greet, tls=(cert, key)), dict(local, security="starttls"), ca_file),
        "SSL/TLS to the plaintext port": lambda: (contextlib.nullcontext(dovecot.imap_port), {}, dovecot.ca_file),
        "unknown CA": lambda: (contextlib.nullcontext(None), {}, None),
        "expired certificate": lambda: _tls_server(request, "expired_certificates", local),
        "certificate for another name": lambda: _tls_server(request, "other_name_certificates", local),
        "server without STARTTLS": lambda: _without_tls(request),
        "LOGINDISABLED after TLS": lambda: (
            purpose_built(greet_with(b"LOGINDISABLED"), tls=(cert, key)), local, ca_file),
        "wrong password": lambda: (contextlib.nullcontext(None), dict(password="not-it"), dovecot.ca_file),
        "wrong POP3 password": lambda: (
            contextlib.nullcontext(None), dict(protocol="POP3", password="not-it"), dovecot.ca_file),
        "OAuth2 without XOAUTH2": lambda: (
            purpose_built(greet_with(b"AUTH=PLAIN"), tls=(cert, key)), dict(local, **oauth2(tokens)), ca_file),
        "missing folder": lambda: (contextlib.nullcontext(None), dict(folder="Nope"), dovecot.ca_file),
        "wrong client secret": lambda: (
            contextlib.nullcontext(None), oauth2(tokens, client_secret="not-it"), dovecot.ca_file),
        "token answer without access_token": lambda: (
            contextlib.nullcontext(None), oauth2(tokens, client_id=NO_TOKEN_CLIENT_ID), dovecot.ca_file),
        "web server": lambda: (purpose_built(speak_http), dict(local, security="starttls"), None),
        "dripping server": lambda: (purpose_built(drip), dict(local, security="starttls"), None),
    }
    server, values, trusted = cases[case]()
    with server as port:
        result = run(settings_for(dovecot, port=port, **values), trusted)
    assert not result.ok
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (code, field, step)
    assert result.cause.message and result.cause.hint
    after = [s.outcome for s in result.steps[[s.name for s in result.steps].index(step) + 1:]]
    assert set(after) <= {"skipped"}


def _tls_server(request, certificates_fixture, values):
    ca_file, cert, key = request.getfixturevalue(certificates_fixture)
    return purpose_built(greet_with(b"AUTH=PLAIN"), tls=(cert, key)), values, ca_file


def _without_tls(request):
    server = request.getfixturevalue("dovecot_without_tls")
    return contextlib.nullcontext(server.imap_port), dict(host=server.host, security="starttls"), None


# What the causes say.

def test_a_wrong_password_quotes_the_server(dovecot):
    result = run(settings_for(dovecot, password="not-it"), dovecot.ca_file)
    assert "AUTHENTICATIONFAILED" in result.cause.server_reply
    assert result.summary.startswith("Log in failed: The server rejected the username or password.")


def test_a_folder_in_the_wrong_case_suggests_the_real_one(dovecot):
    result = run(settings_for(dovecot, folder="team inbox"), dovecot.ca_file)
    assert result.cause.hint == "Did you mean 'Team Inbox'? Folder names must match exactly."


def test_certificate_failures_never_suggest_turning_verification_off(dovecot, expired_certificates):
    for cause in causes.CATALOGUE:
        assert "disable" not in causes.CATALOGUE[cause][2].lower()
        assert "verif" not in causes.CATALOGUE[cause][2].lower() or "stays on" in causes.CATALOGUE[cause][2]
    result = run(settings_for(dovecot))
    assert "MAILKEEP_CA_FILE" in result.cause.hint


def test_the_password_is_not_sent_when_starttls_is_not_offered(dovecot_without_tls):
    server = dovecot_without_tls
    result = run(settings_for(server, security="starttls", host=server.host, port=server.imap_port))
    assert outcomes(result)["authenticate"] == "skipped"
    assert "so the password was not sent" in result.cause.message


def test_the_port_of_the_other_mode_is_named_in_the_hint():
    settings = probe.Settings("IMAP", "mail.example.com", 143, "ssl_tls", MAILBOX_USER, CANARY)
    hint = causes.security_mismatch_hint(settings)
    assert hint == "Port 143 normally uses STARTTLS: choose STARTTLS, or use port 993 with SSL/TLS."
    pop3 = probe.Settings("POP3", "mail.example.com", 995, "starttls", MAILBOX_USER, CANARY)
    assert causes.security_mismatch_hint(pop3) == \
        "Port 995 normally uses SSL/TLS: choose SSL/TLS, or use port 110 with STARTTLS."


def test_a_known_provider_adds_its_advice_to_auth_failed():
    settings = probe.Settings("IMAP", "imap.gmail.com", 993, "ssl_tls", "someone@gmail.com", CANARY)
    cause = describe(Failure("auth_failed"), settings, ())
    assert "Gmail: Gmail accepts a password only as an App Password" in cause.hint
    office = probe.Settings("IMAP", "outlook.office365.com", 993, "ssl_tls", "a@contoso.com", CANARY)
    assert "use OAuth2" in describe(Failure("auth_failed"), office, ()).hint


def test_server_replies_are_truncated():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, CANARY)
    cause = describe(Failure("auth_failed", reply="x" * 5000), settings, ())
    assert len(cause.server_reply) == probe.result.REPLY_LENGTH


# Hostile and slow servers: every one ends within the deadline, with a named cause and bounded memory.

@pytest.mark.parametrize(
    ("handle", "security", "code", "step", "words"),
    [
        (oversized_line, "starttls", "protocol_error", "greeting", "more than 1000000 bytes"),
        (huge_literal, "starttls", "protocol_error", "greeting", "literal of 5000000000 bytes"),
        (flood, "starttls", "protocol_error", "greeting", "sent more than"),
        (close_mid_command, "starttls", "protocol_error", "starttls", "EOF"),
        (greet_then_stall, "starttls", "deadline_exceeded", "starttls", "stalled at the step 'STARTTLS'"),
        (speak_http, "starttls", "protocol_error", "greeting", "answered like a web server"),
    ],
    ids=["line over 1 MB", "literal of gigabytes", "endless lines", "hangs up mid-command", "stalls after greeting",
         "speaks HTTP"],
)
def test_hostile_servers(handle, security, code, step, words):
    with SocketServer(handle) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, security, MAILBOX_USER, CANARY))
    assert (result.cause.code, result.failed_step.name) == (code, step)
    assert words in result.cause.message


def test_the_watchdog_cuts_a_dripping_server_off(dovecot):
    with SocketServer(drip) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, "starttls", MAILBOX_USER, CANARY))
        assert result.cause.code == "deadline_exceeded"
        # The server is still dripping: only the watchdog's shutdown can have ended the connection.
        assert server.closed_by_client.wait(3)
        deadline = time.monotonic() + 3
        while any(t.name == "connection-test" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.name == "connection-test" for t in threading.enumerate())


def test_a_server_echoing_secrets_has_them_redacted_everywhere(certificates):
    ca_file, cert, key = certificates
    with SocketServer(echo_secrets, tls=(cert, key)) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, "ssl_tls", MAILBOX_USER, CANARY), ca_file)
    # The BYE ends the session (a protocol error); its text, password and all, is in the message.
    assert result.cause.code == "protocol_error" and "you said LOGIN" in result.cause.message
    assert "••••••" in result.cause.message
    assert CANARY not in str(result.as_dict())


def test_redact_replaces_every_secret():
    assert redact(f"a {CANARY} b {CLIENT_SECRET} c", (CANARY, None, "")) == "a •••••• b client-•••••• c"


# Concurrency: a bounded number of tests at once.

def test_no_slot_free_means_busy_and_a_finished_test_frees_its_slot():
    slots = threading.BoundedSemaphore(1)
    with SocketServer(never_greet) as server:
        settings = probe.Settings("IMAP", "127.0.0.1", server.port, "starttls", MAILBOX_USER, CANARY)
        limits = {"deadline": 1.0, "slots": slots, "policy": TEST_POLICY}
        first = threading.Thread(target=probe.run, args=(settings,), kwargs=limits)
        first.start()
        time.sleep(0.2)
        with pytest.raises(probe.Busy):
            probe.run(settings, **limits)
        first.join()
        deadline = time.monotonic() + 2
        while not slots.acquire(blocking=False):
            assert time.monotonic() < deadline, "the slot was never given back"
            time.sleep(0.05)
        slots.release()


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


# The outbound policy: a connection test is no port scanner.

@pytest.mark.parametrize(
    ("host", "port", "field", "words"),
    [
        ("169.254.169.254", 993, "host", "169.254.169.254 is a link-local, metadata"),
        ("fd00:ec2::254", 993, "host", "fd00:ec2::254 is a link-local, metadata"),
        ("::ffff:169.254.169.254", 993, "host", "169.254.169.254 is a link-local, metadata"),
        ("::ffff:0:a9fe:a9fe", 993, "host", "169.254.169.254 is a link-local, metadata"),
        ("::ffff:0:a00:1", 993, "host", "10.0.0.1 is a private or loopback address"),
        ("10.1.2.3", 993, "host", "10.1.2.3 is a private or loopback address"),
        ("127.0.0.1", 993, "host", "127.0.0.1 is a private or loopback address"),
        ("0.0.0.0", 993, "host", "unspecified address"),
        ("224.0.0.1", 993, "host", "multicast"),
        ("192.0.0.192", 993, "host", "192.0.0.192 is a link-local, metadata"),
        ("64:ff9b::a9fe:a9fe", 993, "host", "169.254.169.254 is a link-local, metadata"),
        ("64:ff9b::7f00:1", 993, "host", "127.0.0.1 is a private or loopback address"),
        ("2002:7f00:1::1", 993, "host", "127.0.0.1 is a private or loopback address"),
        ("::1", 993, "host", "::1 is a private or loopback address"),
        ("::7f00:1", 993, "host", "is a private or loopback address"),
        ("93.184.215.14", 22, "port", "port 22 is not one of 110, 143, 993, 995"),
    ],
)
def test_the_default_policy_refuses_without_sending_a_packet(monkeypatch, host, port, field, words):
    dialled = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: dialled.append(address))
    result = run(probe.Settings("IMAP", host, port, "ssl_tls", MAILBOX_USER, CANARY), policy=probe.Policy())
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "destination_not_allowed", field, "resolve")
    assert words in result.cause.message
    assert dialled == []


def test_listed_networks_are_allowed_but_metadata_never():
    policy = probe.Policy.parse("993, 2000-2002", "10.0.0.0/8, 169.254.0.0/16")
    assert policy.ports == {993, 2000, 2001, 2002}
    assert policy.address_problem("10.9.8.7") is None
    assert policy.address_problem("8.8.8.8") is None
    assert "never allowed" in policy.address_problem("169.254.169.254")
    with pytest.raises(probe.policy.PolicyError):
        probe.Policy.parse("99999", "")
    with pytest.raises(probe.policy.PolicyError):
        probe.Policy.parse("993", "not-a-network")


def test_localhost_with_both_loopback_addresses_passes_when_loopback_is_listed():
    """Debian's /etc/hosts gives localhost ::1 as well as 127.0.0.1; ::1 is IPv6's loopback, no IPv4 carrier."""
    localhost = [(socket.AF_INET6, ("::1", 993, 0, 0)), (socket.AF_INET, ("127.0.0.1", 993))]
    TEST_POLICY.check_addresses(localhost)  # raises Failure when refused
    assert "unspecified" in TEST_POLICY.address_problem("::")


def test_a_host_is_resolved_once_and_only_the_checked_address_is_dialled(monkeypatch):
    """DNS rebinding: a name that answers a public address, then a private one, must not reach the private one."""
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 993))],
                    [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 993))]])
    lookups, dialled = [], []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: lookups.append(host) or next(answers))

    def connect(self, address):
        dialled.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(socket.socket, "connect", connect)
    result = run(probe.Settings("IMAP", "rebind.example", 993, "ssl_tls", MAILBOX_USER, CANARY), policy=probe.Policy())
    assert lookups == ["rebind.example"] and dialled == [("93.184.215.14", 993)]
    assert result.cause.code == "connect_refused"


def test_a_rebinding_name_with_any_private_answer_is_refused(monkeypatch):
    both = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 993)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 993))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: both)
    result = run(probe.Settings("IMAP", "rebind.example", 993, "ssl_tls", MAILBOX_USER, CANARY), policy=probe.Policy())
    assert result.cause.code == "destination_not_allowed" and "10.0.0.1" in result.cause.message


def test_the_token_endpoint_must_pass_the_policy_too(token_server):
    settings = probe.Settings("IMAP", "93.184.215.14", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2,
                              client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_url=token_server.token_url)
    asked_before = len(token_server.requests)
    result = run(settings, policy=probe.Policy())
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "destination_not_allowed", "token_url", "token")
    assert result.cause.message.startswith("Mailkeep may not connect to 127.0.0.1:")
    assert len(token_server.requests) == asked_before  # the endpoint never heard of it


# Hostile token endpoints: the token step is held to the same deadline, memory bound and watchdog.

def _http(status_line, body=b"", content_type=b"application/json", pause=0.0):
    """A handler that reads a request, waits `pause` seconds, and answers `status_line` with `body`."""
    def handle(connection, stop):
        connection.recv(65536)
        if stop.wait(pause):
            return
        connection.sendall(b"HTTP/1.1 " + status_line + b"\r\nContent-Type: " + content_type +
                           b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        stop.wait()
    return handle


def http_drip(connection, stop):
    """Read a request, then answer one byte every 0.3 s, forever."""
    connection.recv(65536)
    while not stop.wait(0.3):
        connection.send(b"H")


def http_huge(connection, stop):
    """Read a request, then announce 400 MB and send it."""
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400000000\r\n\r\n")
    chunk = b" " * 65536
    while not stop.is_set():
        connection.sendall(chunk)


@pytest.mark.parametrize(
    ("handle", "code", "field", "words"),
    [
        (http_drip, "token_request_failed", "token_url", "did not answer in time"),
        (http_huge, "token_request_failed", "token_url", "sent more than 65536 bytes"),
        (_http(b"200 OK", b"[]"), "token_request_failed", "token_url", "not a JSON object with an access_token"),
        (_http(b"200 OK", b'{"access_token": 5}'), "token_request_failed", "token_url", "has no access_token"),
        (_http(b"403 Forbidden", b"<h1>Go away</h1>", b"text/html"), "token_request_failed", "token_url",
         "HTTP 403 from the endpoint"),
        (_http(b"401 Unauthorized", b'{"error": "invalid_client", "error_description": "no such client"}'),
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


# Server answers that are not a refusal must not be reported as one.

@pytest.mark.parametrize(
    ("answer", "code", "step", "words"),
    [
        (lambda tag, command: tag + b" NO [PRIVACYREQUIRED] Use TLS\r\n" if command.startswith(b"LOGIN") else None,
         "plaintext_refused", "authenticate", "PRIVACYREQUIRED"),
        (lambda tag, command: tag + b" BAD Unknown command\r\n" if command.startswith(b"LOGIN") else None,
         "protocol_error", "authenticate", "refused the login command as malformed"),
        (lambda tag, command: b"* OK " + b"x" * 1_100_000 + b"\r\n" if command.startswith(b"LOGIN") else None,
         "protocol_error", "authenticate", "more than 1000000 bytes"),
        (lambda tag, command: None, "protocol_error", "authenticate", "EOF"),
    ],
    ids=["NO [PRIVACYREQUIRED]", "BAD", "a line over 1 MB", "hangs up"],
)
def test_only_a_no_to_login_is_a_wrong_password(certificates, answer, code, step, words):
    ca_file, cert, key = certificates
    with SocketServer(lambda connection, stop: converse(connection, b"AUTH=PLAIN", answer), tls=(cert, key)) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, "ssl_tls", MAILBOX_USER, CANARY), ca_file)
    assert (result.cause.code, result.failed_step.name) == (code, step)
    assert words in result.cause.message
    assert result.steps[[s.name for s in result.steps].index("authenticate")].details == f"LOGIN as {MAILBOX_USER}"


def test_a_starttls_that_is_offered_then_refused_sends_no_password():
    with SocketServer(lambda connection, stop: converse(connection, b"STARTTLS AUTH=PLAIN")) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, "starttls", MAILBOX_USER, CANARY))
    assert (result.cause.code, result.failed_step.name) == ("starttls_unavailable", "starttls")


def pop3_server(answers):
    """A POP3 handler: greet, answer CAPA, then each command with `answers` (bytes, or None to hang up)."""
    def handle(connection, stop):
        connection.sendall(b"+OK purpose-built POP3 ready\r\n")
        for line in connection.makefile("rb"):
            command = line.split(b" ")[0].upper().strip()
            if command == b"CAPA":
                connection.sendall(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
                continue
            answer = answers.get(command, b"-ERR unknown\r\n")
            if answer is None:
                connection.close()
                return
            connection.sendall(answer)
    return handle


@pytest.mark.parametrize(
    ("answers", "code", "words"),
    [
        ({b"USER": b"+OK\r\n", b"PASS": b"-ERR [AUTH] Authentication failed.\r\n"}, "auth_failed", ""),
        ({b"USER": b"+OK\r\n", b"PASS": None}, "protocol_error", "the server closed the connection"),
        ({b"USER": b"+OK " + b"x" * 4000 + b"\r\n"}, "protocol_error", "line too long"),
    ],
    ids=["-ERR to PASS", "hangs up at PASS", "a line too long"],
)
def test_pop3_refusals_and_breakdowns(certificates, answers, code, words):
    ca_file, cert, key = certificates
    with SocketServer(pop3_server(answers), tls=(cert, key)) as server:
        result = run(probe.Settings("POP3", "127.0.0.1", server.port, "ssl_tls", MAILBOX_USER, CANARY), ca_file)
    assert (result.cause.code, result.failed_step.name) == (code, "authenticate")
    assert words in result.cause.message


def test_secrets_echoed_quoted_or_escaped_are_redacted_too():
    secret = 'quo"te-secret\\2'
    echoed = f'you said "{secret.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}" and {secret!r}'
    assert secret.replace("\\", "") not in redact(echoed, (secret,)).replace("\\", "")
    assert redact("Token endpoint", ("p",)) == "Token end••••••oint"  # server text only: callers never pass ours


# Without TLS: only where allowed, and a server that refuses passwords in the clear is named for it.

PLAINTEXT_POLICY = dataclasses.replace(TEST_POLICY, plaintext=True)


def test_plaintext_is_refused_unless_allowed(monkeypatch):
    dialled = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: dialled.append(address))
    result = run(probe.Settings("IMAP", "127.0.0.1", 143, "none", MAILBOX_USER, CANARY))
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "plaintext_refused", "security", "resolve")
    assert "MAILKEEP_ALLOW_INSECURE" in result.cause.message and dialled == []


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_plaintext_where_allowed(dovecot, dovecot_without_tls, protocol):
    port = {"IMAP": dovecot.imap_port, "POP3": dovecot.pop3_port}[protocol]
    # Dovecot trusts a client on its own address (127.0.0.1) enough to take a password without TLS...
    ok = run(probe.Settings(protocol, "127.0.0.1", port, "none", MAILBOX_USER, CANARY), policy=PLAINTEXT_POLICY)
    assert ok.ok, ok.cause
    assert [step.name for step in ok.steps][:3] == ["resolve", "connect", "greeting"]
    # ...and no other: from 127.0.0.1 to 127.0.0.2 it announces LOGINDISABLED and refuses USER/PASS.
    server = dovecot_without_tls
    port = {"IMAP": server.imap_port, "POP3": server.pop3_port}[protocol]
    refused = run(probe.Settings(protocol, server.host, port, "none", MAILBOX_USER, CANARY), policy=PLAINTEXT_POLICY)
    assert (refused.cause.code, refused.cause.field, refused.failed_step.name) == (
        "plaintext_refused", "security", "authenticate")


def test_a_refused_mail_server_costs_no_token_request(token_server):
    asked_before = len(token_server.requests)
    settings = probe.Settings("IMAP", "127.0.0.1", 25, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2,
                              client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_url=token_server.token_url)
    result = run(settings, policy=probe.Policy.parse("993", "127.0.0.0/8"))
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "destination_not_allowed", "port", "resolve")
    assert len(token_server.requests) == asked_before


def test_a_token_endpoint_port_must_be_443_or_allowed(token_server):
    settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2,
                              client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_url=token_server.token_url)
    result = run(settings, policy=probe.Policy.parse("993", "127.0.0.0/8"))
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "destination_not_allowed", "token_url", "token")
    assert "is neither 443 nor an allowed port" in result.cause.message
