"""The connection test against a real Dovecot and purpose-built socket servers on loopback."""

import socket
import threading
import time

import pytest

import dovecot as test_dovecot
import probe
from testdata import CANARY, MAILBOX_USER
from probe.causes import Failure, describe, redact
from servers import SocketServer, never_greet

DEADLINE = 2.0


def settings_for(server, security="ssl_tls", password=CANARY, folder="INBOX", host="localhost", port=None):
    if port is None:
        port = server.imaps_port if security == "ssl_tls" else server.imap_port
    return probe.Settings("IMAP", host, port, security, MAILBOX_USER, password, folder)


def run(settings, ca_file=None):
    """Run a test and check the promise every test makes: done within the deadline plus one second."""
    started = time.monotonic()
    result = probe.run(settings, deadline=DEADLINE, ca_file=ca_file and str(ca_file))
    assert time.monotonic() - started <= DEADLINE + 1
    return result


def outcomes(result):
    return {step.name: step.outcome for step in result.steps}


def test_success_over_implicit_tls(dovecot):
    result = run(settings_for(dovecot), dovecot.ca_file)
    assert result.ok, result.cause
    assert result.message_count == test_dovecot.INBOX_MESSAGE_COUNT
    assert [step.name for step in result.steps] == [
        "resolve", "connect", "tls", "greeting", "authenticate", "folder", "logout",
    ]
    assert set(outcomes(result).values()) == {"ok"}
    tls = result.steps[2].details
    assert "TLSv1." in tls and "host name matched" in tls
    assert "Connected; INBOX holds 3 messages" in result.summary


def test_success_over_starttls(dovecot):
    result = run(settings_for(dovecot, security="starttls"), dovecot.ca_file)
    assert result.ok, result.cause
    assert [step.name for step in result.steps] == [
        "resolve", "connect", "greeting", "starttls", "authenticate", "folder", "logout",
    ]
    assert "STARTTLS" in result.steps[2].details  # the capability was seen before upgrading
    assert "TLSv1." in result.steps[3].details


def test_folder_with_a_space_is_found(dovecot):
    result = run(settings_for(dovecot, folder="Team Inbox"), dovecot.ca_file)
    assert result.ok, result.cause
    assert result.message_count == 0


def _closed_port():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "code", "field", "step"),
    [
        ("wrong password", "auth_failed", "password", "authenticate"),
        ("unknown host", "dns_not_found", "host", "resolve"),
        ("closed port", "connect_refused", "port", "connect"),
        ("untrusted certificate", "tls_certificate_untrusted", "host", "tls"),
        ("TLS on the plaintext port", "tls_handshake_failed", "security", "tls"),
        ("folder not found", "folder_not_found", "folder", "folder"),
        ("folder in the wrong case", "folder_not_found", "folder", "folder"),
    ],
)
def test_failures_name_cause_field_and_step(dovecot, case, code, field, step):
    trusted = dovecot.ca_file
    values = {
        "wrong password": dict(password="not-the-password"),
        "unknown host": dict(host="nosuchhost.invalid"),
        "closed port": dict(host="127.0.0.1", port=_closed_port()),
        "untrusted certificate": {},
        "TLS on the plaintext port": dict(port=dovecot.imap_port),
        "folder not found": dict(folder="Nope"),
        "folder in the wrong case": dict(folder="team inbox"),
    }[case]
    if case == "untrusted certificate":
        trusted = None
    result = run(settings_for(dovecot, **values), trusted)
    assert not result.ok
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (code, field, step)
    assert result.message_count is None
    later = [s.outcome for s in result.steps[[s.name for s in result.steps].index(step) + 1:]]
    assert set(later) <= {"skipped"}


def test_wrong_password_quotes_the_server(dovecot):
    result = run(settings_for(dovecot, password="not-the-password"), dovecot.ca_file)
    assert "AUTHENTICATIONFAILED" in result.cause.server_reply
    assert result.summary.startswith("Log in failed: The server rejected the username or password.")


def test_folder_in_the_wrong_case_suggests_the_real_one(dovecot):
    result = run(settings_for(dovecot, folder="team inbox"), dovecot.ca_file)
    assert "Did you mean 'Team Inbox'?" in result.cause.hint


def test_certificate_failure_never_suggests_turning_verification_off(dovecot):
    result = run(settings_for(dovecot))
    assert "MAILKEEP_CA_FILE" in result.cause.hint
    assert "disable" not in result.cause.hint.lower()


def test_password_is_not_sent_when_starttls_is_not_offered(dovecot_without_tls):
    server = dovecot_without_tls
    result = run(settings_for(server, security="starttls", host=server.host, port=server.imap_port))
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "starttls_unavailable", "security", "starttls",
    )
    assert outcomes(result)["authenticate"] == "skipped"


@pytest.mark.parametrize(("security", "step"), [("starttls", "greeting"), ("ssl_tls", "tls")])
def test_a_server_that_never_greets_ends_within_the_deadline(security, step):
    with SocketServer(never_greet) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, security, MAILBOX_USER, CANARY))
    assert (result.cause.code, result.failed_step.name) == ("greeting_timeout", step)


def drip(connection, stop):
    """Greet one byte a second, forever: no single read ever times out."""
    while not stop.wait(0.3):
        try:
            connection.send(b"*")
        except OSError:
            return


def test_a_dripping_server_is_cut_off_at_the_deadline():
    with SocketServer(drip) as server:
        result = run(probe.Settings("IMAP", "127.0.0.1", server.port, "starttls", MAILBOX_USER, CANARY))
    assert (result.cause.code, result.failed_step.name) == ("deadline_exceeded", "greeting")
    assert f"within {DEADLINE:g} seconds" in result.cause.message


def test_the_port_of_the_other_mode_is_named_in_the_hint():
    failure = Failure("tls_handshake_failed", reason="WRONG_VERSION_NUMBER")
    settings = probe.Settings("IMAP", "mail.example.com", 143, "ssl_tls", MAILBOX_USER, CANARY)
    from probe.causes import security_mismatch_hint

    hint = security_mismatch_hint(settings)
    assert hint == "Port 143 normally uses STARTTLS: choose STARTTLS, or use port 993 with SSL/TLS."
    assert describe(Failure("tls_handshake_failed", hint=hint), settings, ()).hint == hint
    assert describe(failure, settings, ()).message.endswith("(WRONG_VERSION_NUMBER).")


def test_a_server_echoing_the_password_has_it_redacted():
    settings = probe.Settings("IMAP", "mail.example.com", 993, "ssl_tls", MAILBOX_USER, CANARY)
    cause = describe(Failure("auth_failed", reply=f"NO you said {CANARY}"), settings, (CANARY, None))
    assert CANARY not in cause.server_reply
    assert redact(f"x{CANARY}y", (CANARY,)) == "x••••••y"


def test_the_watchdog_does_not_leave_threads_behind():
    before = threading.active_count()
    with SocketServer(drip) as server:
        run(probe.Settings("IMAP", "127.0.0.1", server.port, "starttls", MAILBOX_USER, CANARY))
    deadline = time.monotonic() + 2
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
