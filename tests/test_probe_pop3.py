"""probe's POP3 half: USER/PASS and STAT, over SSL/TLS and STLS, and servers that end lines with LF alone."""

import pytest

import dovecot as test_dovecot
from servers import SocketServer, local, pop3_server, run, settings_for
from testdata import MAILBOX_USER


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
    assert result.certificate.issuer == "Dovecot test CA"


def test_a_server_ending_lines_with_bare_line_feeds_is_understood(certificates):
    ca_file, cert, key = certificates
    answers = {b"USER": b"+OK\r\n", b"PASS": b"+OK logged in\r\n", b"STAT": b"+OK 2 320\r\n", b"QUIT": b"+OK bye\r\n"}
    with SocketServer(pop3_server(answers, line_end=b"\n"), tls=(cert, key)) as server:
        result = run(local(server.port, protocol="POP3"), ca_file)
    assert result.ok, result.cause
    assert result.message_count == 2
