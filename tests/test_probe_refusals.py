"""Refused logins: only what nothing else explains is a wrong password. TLS required, a server-side problem
(RFC 5530, RFC 3206 response codes), a refused command and a broken connection are each named for what they are."""

import pytest

from probe import refusals
from servers import (
    PLAINTEXT_POLICY,
    ImapScript,
    SocketServer,
    converse,
    local,
    pop3_server,
    run,
)
from testdata import MAILBOX_USER

# IMAP.

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
        result = run(local(server.port), ca_file)
    assert (result.cause.code, result.failed_step.name) == (code, step)
    assert words in result.cause.message
    assert result.steps[[s.name for s in result.steps].index("authenticate")].details == f"LOGIN as {MAILBOX_USER}"


def _no(words):
    return {"LOGIN": lambda tag, command: tag + b" NO " + words + b"\r\n"}


@pytest.mark.parametrize(
    ("capabilities", "answers", "code", "field"),
    [
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"[AUTHENTICATIONFAILED] Invalid credentials"), "auth_failed", "password"),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"[UNAVAILABLE] Backend not reachable, try later"), "server_unavailable", None),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"[SERVERBUG] Internal error"), "server_unavailable", None),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"[AUTHORIZATIONFAILED] Not allowed as this user"), "auth_failed", "username"),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"LOGIN Command disabled"), "auth_mechanism_unavailable", "password"),
    ],
    ids=["AUTHENTICATIONFAILED", "UNAVAILABLE", "SERVERBUG", "AUTHORIZATIONFAILED", "LOGIN disabled over TLS"],
)
def test_imap_refusals_over_tls_are_read_by_their_response_code(certificates, capabilities, answers, code, field):
    ca_file, cert, key = certificates
    with SocketServer(ImapScript(capabilities, answers=answers), tls=(cert, key)) as server:
        result = run(local(server.port), ca_file)
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (code, field, "authenticate")


@pytest.mark.parametrize(
    ("capabilities", "answers", "sent"),
    [
        (b"IMAP4rev1 XTLSREQUIRED AUTH=PLAIN", _no(b"LOGIN Command disabled"), False),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"LOGIN Command disabled"), True),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"[ALERT] Please use SSL/TLS to log in"), True),
        (b"IMAP4rev1 AUTH=PLAIN", _no(b"Plaintext logins are not allowed without encryption"), True),
    ],
    ids=["XTLSREQUIRED announced", "LOGIN disabled", "use SSL/TLS", "no plaintext"],
)
def test_imap_without_tls_a_refusal_asking_for_tls_blames_security(capabilities, answers, sent):
    script = ImapScript(capabilities, answers=answers)
    with SocketServer(script) as server:
        result = run(local(server.port, security="none"), policy=PLAINTEXT_POLICY)
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "plaintext_refused", "security", "authenticate")
    assert script.sent(b"LOGIN") == int(sent)  # a server that announced it never gets the password


# POP3.

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
        result = run(local(server.port, protocol="POP3"), ca_file)
    assert (result.cause.code, result.failed_step.name) == (code, "authenticate")
    assert words in result.cause.message


@pytest.mark.parametrize(
    ("answers", "code", "field"),
    [
        ({b"USER": b"+OK\r\n", b"PASS": b"-ERR [SYS/TEMP] Backend unavailable\r\n"}, "server_unavailable", None),
        ({b"USER": b"+OK\r\n", b"PASS": b"-ERR [IN-USE] Mailbox locked by another session\r\n"},
         "server_unavailable", None),
        ({b"USER": b"+OK\r\n", b"PASS": b"-ERR [LOGIN-DELAY] Wait before logging in again\r\n"},
         "server_unavailable", None),
    ],
    ids=["SYS/TEMP", "IN-USE", "LOGIN-DELAY"],
)
def test_pop3_refusals_over_tls_are_read_by_their_response_code(certificates, answers, code, field):
    ca_file, cert, key = certificates
    with SocketServer(pop3_server(answers), tls=(cert, key)) as server:
        result = run(local(server.port, protocol="POP3"), ca_file)
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (code, field, "authenticate")


@pytest.mark.parametrize(
    ("capabilities", "answers", "heard_pass"),
    [
        (b"STLS\r\nSASL PLAIN\r\n", {}, False),
        (b"USER\r\n", {b"USER": b"-ERR [AUTH] USER command only available under a layer\r\n"}, False),
        (b"USER\r\n", {b"USER": b"+OK\r\n", b"PASS": b"-ERR TLS required to log in.\r\n"}, True),
        (b"USER\r\n", {b"USER": b"-ERR Incorrect state\r\n"}, False),
    ],
    ids=["CAPA without USER", "only under a layer", "TLS required", "incorrect state"],
)
def test_pop3_without_tls_a_refusal_asking_for_tls_blames_security(capabilities, answers, heard_pass):
    heard = []
    with SocketServer(pop3_server(answers, capabilities=capabilities, heard=heard)) as server:
        result = run(local(server.port, protocol="POP3", security="none"), policy=PLAINTEXT_POLICY)
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "plaintext_refused", "security", "authenticate")
    assert any(line.startswith(b"PASS") for line in heard) == heard_pass


def test_response_codes_are_read_from_either_protocol():
    assert refusals.response_code("NO [AUTHENTICATIONFAILED] Authentication failed.") == "AUTHENTICATIONFAILED"
    assert refusals.response_code("-ERR [sys/temp] later") == "SYS/TEMP"
    assert refusals.response_code("NO Authentication failed [really]") is None


# Without TLS: only where allowed, and a server that refuses passwords in the clear is named for it.

@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_plaintext_where_allowed(dovecot, dovecot_without_tls, protocol):
    port = {"IMAP": dovecot.imap_port, "POP3": dovecot.pop3_port}[protocol]
    # Dovecot trusts a client on its own address (127.0.0.1) enough to take a password without TLS...
    ok = run(local(port, protocol=protocol, security="none"), policy=PLAINTEXT_POLICY)
    assert ok.ok, ok.cause
    assert [step.name for step in ok.steps][:3] == ["resolve", "connect", "greeting"]
    # ...and no other: from 127.0.0.1 to 127.0.0.2 it announces LOGINDISABLED and refuses USER/PASS.
    server = dovecot_without_tls
    port = {"IMAP": server.imap_port, "POP3": server.pop3_port}[protocol]
    refused = run(local(port, protocol=protocol, security="none", host=server.host), policy=PLAINTEXT_POLICY)
    assert (refused.cause.code, refused.cause.field, refused.failed_step.name) == (
        "plaintext_refused", "security", "authenticate")
