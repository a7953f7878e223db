"""probe's Prober and run: the steps of a test, every cause it can name, its deadline and greeting budget,
the watchdog, the slots, and what a Result carries."""

import contextlib
import datetime
import pathlib
import re
import socket
import threading
import time

import pytest

import dovecot as test_dovecot
import probe
from servers import (
    DEADLINE,
    ImapScript,
    SocketServer,
    close_mid_command,
    drip,
    flood,
    greet_then_stall,
    greet_with,
    huge_literal,
    local,
    never_greet,
    oauth2,
    outcomes,
    oversized_line,
    purpose_built,
    run,
    settings_for,
    speak_http,
    unanswered_port,
)
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET, MAILBOX_USER, NO_TOKEN_CLIENT_ID

IMAP_STEPS = ["resolve", "connect", "tls", "greeting", "authenticate", "folder", "logout"]
PROBE_PACKAGE = pathlib.Path(probe.__file__).parent


# Success, step by step.

def test_imap_over_implicit_tls(dovecot):
    result = run(settings_for(dovecot), dovecot.ca_file, list_folders=True)
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


def test_folders_are_listed_only_when_asked_for(dovecot):
    result = run(settings_for(dovecot), dovecot.ca_file)
    assert result.ok, result.cause
    assert result.folders == []
    assert result.steps[IMAP_STEPS.index("folder")].details == "EXAMINE INBOX: 3 messages"


def test_the_server_certificate_is_in_the_result(dovecot):
    for security in ("ssl_tls", "starttls"):
        result = run(settings_for(dovecot, security=security), dovecot.ca_file)
        certificate = result.certificate
        assert (certificate.subject, certificate.issuer) == ("localhost", "Dovecot test CA")
        now = datetime.datetime.now(datetime.timezone.utc)
        assert now + datetime.timedelta(days=29) < certificate.not_after <= now + datetime.timedelta(days=31)
        shown = result.as_dict()["certificate"]
        assert datetime.datetime.fromisoformat(shown["not_after"]) == certificate.not_after
        assert shown["issuer"] == "Dovecot test CA"
        assert probe.Certificate.from_dict(shown) == certificate  # as a receipt carries it back
    # Kept when a later step fails; absent when the handshake did not verify.
    refused = run(settings_for(dovecot, password="not-it"), dovecot.ca_file)
    assert refused.cause.code == "auth_failed" and refused.certificate.subject == "localhost"
    untrusted = run(settings_for(dovecot))
    assert untrusted.cause.code == "tls_certificate_untrusted" and untrusted.certificate is None
    assert untrusted.as_dict()["certificate"] is None


def test_one_prober_serves_many_tests_and_the_module_run_still_works(dovecot):
    prober = probe.Prober(deadline=5, ca_file=str(dovecot.ca_file), policy=probe.Policy.parse("1-65535", "127.0.0.0/8"))
    assert all(prober.run(settings_for(dovecot, host="127.0.0.1")).ok for _ in range(3))
    once = probe.run(settings_for(dovecot, host="127.0.0.1"), deadline=5, ca_file=str(dovecot.ca_file),
                     policy=prober.policy, list_folders=True)
    assert once.ok and once.folders == ["INBOX", "Archive", "Team Inbox"]


def test_a_ca_file_that_cannot_be_read_fails_the_tls_step_not_the_start(tmp_path, dovecot):
    broken = tmp_path / "broken-ca.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    result = run(settings_for(dovecot), broken)  # probe.Prober(ca_file=broken) must not raise
    assert (result.cause.code, result.failed_step.name) == ("tls_handshake_failed", "tls")


def test_probe_stands_alone():
    """probe imports nothing of the application and names none of its settings: the caller passes them in."""
    application_modules = "config|providers|models|forms|services|views|access|audit|encryption|app|cli"
    imports = re.compile(rf"^\s*(?:import|from)\s+(?:{application_modules})\b", re.MULTILINE)
    for source in PROBE_PACKAGE.glob("*.py"):
        text = source.read_text()
        assert not imports.search(text), source.name
        assert "MAILKEEP_" not in text, source.name


# Every cause code, with the field it blames and the step that failed.

def _closed_port():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


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


@pytest.mark.runs_long
@pytest.mark.parametrize(("code", "field", "step", "case"), CAUSES, ids=[c[3] for c in CAUSES])
def test_every_cause_names_its_code_field_and_step(request, code, field, step, case):
    dovecot, tokens, certificates = (
        request.getfixturevalue(name) for name in ("dovecot", "token_server", "certificates")
    )
    ca_file, cert, key = certificates
    local_host = dict(host="127.0.0.1")
    cases = {
        "unknown host": lambda: (contextlib.nullcontext(None), dict(host="nosuchhost.invalid"), dovecot.ca_file),
        "closed port": lambda: (contextlib.nullcontext(_closed_port()), local_host, None),
        "unanswered port": lambda: (unanswered_port(), local_host, None),
        "silent server": lambda: (purpose_built(never_greet), local_host, None),
        "TLS server dialled for STARTTLS": lambda: (
            purpose_built(never_greet, tls=(cert, key)), dict(local_host, security="starttls"), ca_file),
        "SSL/TLS to the plaintext port": lambda: (contextlib.nullcontext(dovecot.imap_port), {}, dovecot.ca_file),
        "unknown CA": lambda: (contextlib.nullcontext(None), {}, None),
        "expired certificate": lambda: _tls_server(request, "expired_certificates", local_host),
        "certificate for another name": lambda: _tls_server(request, "other_name_certificates", local_host),
        "server without STARTTLS": lambda: _without_tls(request),
        "LOGINDISABLED after TLS": lambda: (
            purpose_built(greet_with(b"LOGINDISABLED"), tls=(cert, key)), local_host, ca_file),
        "wrong password": lambda: (contextlib.nullcontext(None), dict(password="not-it"), dovecot.ca_file),
        "wrong POP3 password": lambda: (
            contextlib.nullcontext(None), dict(protocol="POP3", password="not-it"), dovecot.ca_file),
        "OAuth2 without XOAUTH2": lambda: (
            purpose_built(greet_with(b"AUTH=PLAIN"), tls=(cert, key)),
            dict(local_host, **oauth2(tokens, CLIENT_ID, CLIENT_SECRET)), ca_file),
        "missing folder": lambda: (contextlib.nullcontext(None), dict(folder="Nope"), dovecot.ca_file),
        "wrong client secret": lambda: (
            contextlib.nullcontext(None), oauth2(tokens, CLIENT_ID, "not-it"), dovecot.ca_file),
        "token answer without access_token": lambda: (
            contextlib.nullcontext(None), oauth2(tokens, NO_TOKEN_CLIENT_ID, CLIENT_SECRET), dovecot.ca_file),
        "web server": lambda: (purpose_built(speak_http), dict(local_host, security="starttls"), None),
        "dripping server": lambda: (purpose_built(drip), dict(local_host, security="starttls"), None),
    }
    server, values, trusted = cases[case]()
    with server as port:
        settings = settings_for(dovecot, port=port, **values)
        result = run(settings, trusted)
    assert not result.ok
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (code, field, step)
    assert result.cause.message and result.cause.hint
    after = [s.outcome for s in result.steps[[s.name for s in result.steps].index(step) + 1:]]
    assert set(after) <= {"skipped"}
    chosen = probe.protocols.SECURITY_LABELS[settings.security]
    assert f"choose {chosen}".casefold() not in result.cause.hint.casefold(), "a hint asks for what was chosen"
    assert ".)" not in result.cause.message and ".." not in result.cause.message


def _tls_server(request, certificates_fixture, values):
    ca_file, cert, key = request.getfixturevalue(certificates_fixture)
    return purpose_built(greet_with(b"AUTH=PLAIN"), tls=(cert, key)), values, ca_file


def _without_tls(request):
    server = request.getfixturevalue("dovecot_without_tls")
    return contextlib.nullcontext(server.imap_port), dict(host=server.host, security="starttls"), None


# Hostile and slow servers: every one ends within the deadline, with a named cause and bounded memory.

@pytest.mark.runs_long
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
        result = run(local(server.port, security=security))
    assert (result.cause.code, result.failed_step.name) == (code, step)
    assert words in result.cause.message


@pytest.mark.runs_long
def test_the_watchdog_cuts_a_dripping_server_off():
    with SocketServer(drip) as server:
        result = run(local(server.port, security="starttls"))
        assert result.cause.code == "deadline_exceeded"
        # The server is still dripping: only the watchdog's shutdown can have ended the connection.
        assert server.closed_by_client.wait(3)
        deadline = time.monotonic() + 3
        while any(t.name == "connection-test" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.name == "connection-test" for t in threading.enumerate())


# The greeting's own budget: a silent server is named quickly; a slow login still gets the deadline.

@pytest.mark.parametrize("security", ["ssl_tls", "starttls"])
def test_a_silent_server_is_named_within_the_greeting_budget(security):
    with SocketServer(never_greet) as server:
        started = time.monotonic()
        result = run(local(server.port, security=security), deadline=4.0, greeting_timeout=0.5)
    assert result.cause.code == "greeting_timeout"
    assert time.monotonic() - started < 1.5


def test_a_slow_refusal_is_not_taken_for_silence(certificates):
    ca_file, cert, key = certificates

    def refuse_slowly(tag, command):
        time.sleep(1.0)
        return tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"

    script = ImapScript(answers={"LOGIN": refuse_slowly})
    with SocketServer(script, tls=(cert, key)) as server:
        result = run(local(server.port), ca_file, deadline=4.0, greeting_timeout=0.5)
    assert (result.cause.code, result.failed_step.name) == ("auth_failed", "authenticate")


def test_a_greeting_left_unfinished_is_named_for_the_greeting():
    # It greets without capabilities, so the client asks for them, and never answers.
    script = ImapScript(greeting_capabilities=False, answers={"CAPABILITY": lambda tag, command: time.sleep(3) or b""})
    with SocketServer(script) as server:
        started = time.monotonic()
        result = run(local(server.port, security="starttls"), deadline=4.0, greeting_timeout=0.5)
    assert (result.cause.code, result.failed_step.name) == ("greeting_timeout", "greeting")
    assert "began its greeting but did not finish it within 0.5 seconds" in result.cause.message
    assert time.monotonic() - started < 1.5


def test_a_slow_name_lookup_is_not_waited_for_past_the_deadline_but_keeps_its_slot(monkeypatch):
    answer = threading.Event()

    def slow_resolver(host, *args, **kwargs):
        answer.wait(10)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    slots = threading.BoundedSemaphore(1)
    started = time.monotonic()
    result = probe.Prober(deadline=1.0).run(local(993, host="slow.example"), slots=slots)
    assert time.monotonic() - started < 1.0 + probe.GRACE_SECONDS
    assert (result.cause.code, result.failed_step.name) == ("deadline_exceeded", "resolve")
    assert not slots.acquire(blocking=False), "the lookup still runs: its slot must still be taken"
    answer.set()
    deadline = time.monotonic() + 2
    while not slots.acquire(blocking=False):
        assert time.monotonic() < deadline, "the slot was never given back"
        time.sleep(0.01)


# Concurrency: a bounded number of tests at once.

def test_no_slot_free_means_busy_and_a_finished_test_frees_its_slot():
    slots = threading.BoundedSemaphore(1)
    with SocketServer(never_greet) as server:
        settings = local(server.port, security="starttls")
        limits = {"deadline": 1.0, "slots": slots, "policy": probe.Policy.parse("1-65535", "127.0.0.0/8")}
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


def test_any_slots_object_with_acquire_and_release_will_do():
    class Counted:
        """Like a slot store shared between processes: says yes or no at once, and counts."""

        def __init__(self):
            self.held = 0

        def acquire(self, blocking=True):
            assert blocking is False
            if self.held:
                return False
            self.held += 1
            return True

        def release(self):
            self.held -= 1

    slots = Counted()
    result = probe.Prober(deadline=DEADLINE).run(probe.Settings("IMAP", "nosuchhost.invalid", 993, "ssl_tls",
                                                                MAILBOX_USER, CANARY), slots=slots)
    assert result.cause.code == "dns_not_found"
    deadline = time.monotonic() + 2
    while slots.held:
        assert time.monotonic() < deadline, "the slot was never given back"
        time.sleep(0.01)
    slots.held = 1
    with pytest.raises(probe.Busy):
        probe.Prober().run(local(993), slots=slots)
