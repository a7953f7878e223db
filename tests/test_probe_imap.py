"""probe's IMAP half: STARTTLS, how it logs in, the round trips it spends, line endings, and folder hints."""

import pytest

import probe
from components import DOVECOT, require_executable
from dovecot import Dovecot, MailUser
from probe import imap
from probe.causes import Failure
from servers import (
    ImapScript,
    SocketServer,
    converse,
    local,
    outcomes,
    run,
    settings_for,
    tls_server_context,
)
from testdata import CANARY, MAILBOX_USER

NON_ASCII_PASSWORD = "pässwörd-7f3c9e2b"


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


def test_a_non_ascii_password_goes_by_sasl_plain():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, password=NON_ASCII_PASSWORD)
    assert imap._mechanism({b"AUTH=PLAIN"}, settings) == "PLAIN"
    with pytest.raises(Failure) as refused:
        imap._mechanism(set(), settings)
    assert refused.value.code == "auth_mechanism_unavailable"


def test_the_password_is_not_sent_when_starttls_is_not_offered(dovecot_without_tls):
    server = dovecot_without_tls
    result = run(settings_for(server, security="starttls", host=server.host, port=server.imap_port))
    assert outcomes(result)["authenticate"] == "skipped"
    assert "so the password was not sent" in result.cause.message


def test_a_starttls_that_is_offered_then_refused_sends_no_password():
    with SocketServer(lambda connection, stop: converse(connection, b"STARTTLS AUTH=PLAIN")) as server:
        result = run(local(server.port, security="starttls"))
    assert (result.cause.code, result.failed_step.name) == ("starttls_unavailable", "starttls")


# Round trips: only those the test needs.

def test_the_greetings_capabilities_are_not_asked_for_again(certificates):
    ca_file, cert, key = certificates
    script = ImapScript(b"IMAP4rev1 AUTH=PLAIN")
    with SocketServer(script, tls=(cert, key)) as server:
        result = run(local(server.port), ca_file)
    assert result.ok, result.cause
    assert [command.split(b" ")[0] for command in script.heard] == [b"LOGIN", b"EXAMINE", b"LOGOUT"]


def test_a_greeting_without_capabilities_makes_the_client_ask(certificates):
    ca_file, cert, key = certificates
    script = ImapScript(b"IMAP4rev1 AUTH=PLAIN", greeting_capabilities=False)
    with SocketServer(script, tls=(cert, key)) as server:
        result = run(local(server.port), ca_file)
    assert result.ok, result.cause
    assert script.sent(b"CAPABILITY") == 1


def test_after_starttls_the_capabilities_are_asked_once_and_nothing_said_before_counts(certificates):
    # Before TLS (and in the STARTTLS answer, which also crosses the network in the clear) the server
    # says LOGIN is disabled; over TLS it allows it. Only what it says over TLS may count.
    ca_file = certificates[0]
    script = ImapScript(b"IMAP4rev1 STARTTLS LOGINDISABLED", starttls=tls_server_context(certificates),
                        starttls_ok=b"OK [CAPABILITY IMAP4rev1 LOGINDISABLED] Begin TLS",
                        capabilities_after_tls=b"IMAP4rev1 AUTH=PLAIN")
    with SocketServer(script) as server:
        result = run(local(server.port, security="starttls"), ca_file)
    assert result.ok, result.cause
    assert [command.split(b" ")[0] for command in script.heard] == [
        b"STARTTLS", b"CAPABILITY", b"LOGIN", b"EXAMINE", b"LOGOUT"]


def test_list_is_sent_only_for_the_folder_picker(certificates):
    ca_file, cert, key = certificates
    for list_folders, expected in ((False, 0), (True, 1)):
        script = ImapScript()
        with SocketServer(script, tls=(cert, key)) as server:
            result = run(local(server.port), ca_file, list_folders=list_folders)
        assert result.ok, result.cause
        assert script.sent(b"LIST") == expected
        assert result.folders == (["INBOX", "Archive"] if list_folders else [])


# Line endings: RFC 3501 asks for CRLF, some servers send LF alone.

def test_a_login_answered_with_bare_line_feeds_succeeds(certificates):
    ca_file, cert, key = certificates
    script = ImapScript(b"IMAP4rev1 AUTH=PLAIN", line_end=b"\n")
    with SocketServer(script, tls=(cert, key)) as server:
        result = run(local(server.port, password=NON_ASCII_PASSWORD), ca_file)
    assert result.ok, result.cause
    assert result.steps[4].details == f"AUTHENTICATE PLAIN as {MAILBOX_USER}"
    assert script.sent(b"AUTHENTICATE") == 1


# Folder hints.

def test_a_folder_in_the_wrong_case_suggests_the_real_one(dovecot):
    result = run(settings_for(dovecot, folder="team inbox"), dovecot.ca_file)
    assert result.cause.hint == "Did you mean 'Team Inbox'? Folder names must match exactly."


@pytest.fixture(scope="module")
def dovecot_under_inbox(tmp_path_factory):
    """A real Dovecot whose folders all live under "INBOX." (as Courier's and Cyrus's do)."""
    require_executable(DOVECOT, "dovecot-imapd")
    with Dovecot(tmp_path_factory.mktemp("dovecot-inbox-prefix"), users=[MailUser(MAILBOX_USER, CANARY)],
                 binary=DOVECOT, namespace_prefix="INBOX.") as server:
        yield server


def test_a_folder_without_the_inbox_prefix_suggests_the_prefixed_one(dovecot_under_inbox):
    server = dovecot_under_inbox
    result = run(settings_for(server, folder="Archive"), server.ca_file)
    assert (result.cause.code, result.cause.field) == ("folder_not_found", "folder")
    assert result.cause.hint.startswith("Did you mean 'INBOX.Archive'?")
    found = run(settings_for(server, folder="INBOX.Team Inbox"), server.ca_file, list_folders=True)
    assert found.ok and found.folders == ["INBOX", "INBOX.Archive", "INBOX.Team Inbox"]


def test_the_personal_namespace_prefix_is_suggested_too(certificates):
    ca_file, cert, key = certificates
    script = ImapScript(b"IMAP4rev1 AUTH=PLAIN NAMESPACE", folders=("INBOX", "Mail/Projects", "Mail/Archive"),
                        namespace="Mail/", answers={"EXAMINE": lambda tag, command: tag + b" NO no such folder\r\n"})
    with SocketServer(script, tls=(cert, key)) as server:
        result = run(local(server.port, folder="Projects"), ca_file)
    assert result.cause.hint.startswith("Did you mean 'Mail/Projects'?")
