"""probe's network layer: the shared TLS contexts, and how a connection that ends before the greeting is named."""

import imaplib
import poplib
import shutil

import pytest

import probe
from probe import network
from servers import SocketServer, close_at_once, local, never_greet, run
from testdata import CANARY, MAILBOX_USER

# The verifying SSLContext: built once per CA file, shared, rebuilt when the file changes or grows old.

def test_the_tls_context_is_built_once_per_ca_file_and_rebuilt_when_it_changes(tmp_path, certificates):
    ca_file = tmp_path / "ca.pem"
    shutil.copy(certificates[0], ca_file)
    first = network.tls_context(str(ca_file))
    assert network.tls_context(str(ca_file)) is first
    assert network.tls_context(None) is not first
    ca_file.write_bytes(ca_file.read_bytes() + b"\n")  # same certificates, another size
    changed = network.tls_context(str(ca_file))
    assert changed is not first and network.tls_context(str(ca_file)) is changed


def test_the_system_trust_store_is_read_again_when_the_context_grows_old(monkeypatch):
    first = network.tls_context(None)
    monkeypatch.setattr(network, "SYSTEM_STORE_MAX_AGE", 0.0)
    assert network.tls_context(None) is not first


def test_the_token_endpoint_gets_a_context_of_its_own():
    """httpcore sets ALPN on the context it uses; the mail connections' context must not be that one."""
    mail, https = network.tls_context(None), network.tls_context(None, for_https=True)
    assert https is not mail and https is network.tls_context(None, for_https=True)


def test_a_prober_builds_its_contexts_when_made(tmp_path, certificates, monkeypatch):
    ca_file = tmp_path / "ca.pem"
    shutil.copy(certificates[0], ca_file)
    built = []
    original = network._build_context
    monkeypatch.setattr(network, "_build_context", lambda *args: built.append(args) or original(*args))
    probe.Prober(ca_file=ca_file)
    assert built == [(str(ca_file), False), (str(ca_file), True)]


# A server that says nothing, or hangs up, before its greeting.

@pytest.mark.runs_long
def test_a_server_silent_on_an_ssl_tls_port_is_said_to_ignore_the_handshake():
    with SocketServer(never_greet) as server:
        result = run(local(server.port))
    assert result.summary == (f"TLS handshake failed: 127.0.0.1:{server.port} accepted the connection "
                              "but never answered the TLS handshake.")
    assert "SSL/TLS from the first byte" not in result.cause.hint
    assert result.cause.field == "port"


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_a_server_that_hangs_up_before_greeting_is_the_same_mistake_as_a_silent_one(protocol):
    with SocketServer(close_at_once) as server:
        result = run(local(server.port, protocol=protocol, security="starttls"))
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "greeting_timeout", "security", "greeting")
    assert result.cause.message == (
        f"127.0.0.1:{server.port} accepted the connection, then closed it without a greeting.")


@pytest.mark.parametrize(
    ("protocol", "port", "error", "hint"),
    [
        ("IMAP", 993, imaplib.IMAP4.abort("socket error: EOF"),
         "Port 993 normally uses SSL/TLS: choose SSL/TLS, or use port 143 with STARTTLS."),
        ("POP3", 995, poplib.error_proto("-ERR EOF"),
         "Port 995 normally uses SSL/TLS: choose SSL/TLS, or use port 110 with STARTTLS."),
        ("IMAP", 993, ConnectionResetError(),
         "Port 993 normally uses SSL/TLS: choose SSL/TLS, or use port 143 with STARTTLS."),
    ],
)
def test_starttls_on_the_ssl_tls_port_blames_security_whether_the_server_waits_or_hangs_up(protocol, port, error,
                                                                                           hint):
    settings = probe.Settings(protocol, "mail.example.com", port, "starttls", MAILBOX_USER, CANARY)
    for what_happened in (error, TimeoutError()):
        failure = network.classify(what_happened, "greeting", settings, greeted=False)
        assert (failure.code, failure.field, failure.hint) == ("greeting_timeout", "security", hint)


def test_closed_by_server_reads_each_librarys_way_of_saying_it():
    assert network.closed_by_server(imaplib.IMAP4.abort("socket error: EOF"))
    assert network.closed_by_server(poplib.error_proto("-ERR EOF"))
    assert network.closed_by_server(BrokenPipeError())
    assert not network.closed_by_server(imaplib.IMAP4.abort("socket error: unterminated line"))
    assert not network.closed_by_server(TimeoutError())
