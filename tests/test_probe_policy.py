"""probe's outbound policy: a connection test is no port scanner."""

import socket

import pytest

import probe
from probe import protocols
from servers import TEST_POLICY, run
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET, MAILBOX_USER


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
    assert result.summary.startswith("Check destination failed: Mailkeep may not connect to")
    assert "MAILKEEP_ALLOWED_NETWORKS and MAILKEEP_ALLOWED_PORTS" in result.cause.hint


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


def test_plaintext_is_refused_unless_allowed(monkeypatch):
    dialled = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: dialled.append(address))
    result = run(probe.Settings("IMAP", "127.0.0.1", 143, "none", MAILBOX_USER, CANARY))
    assert (result.cause.code, result.cause.field, result.failed_step.name) == (
        "plaintext_refused", "security", "resolve")
    assert "MAILKEEP_ALLOW_INSECURE" in result.cause.message and dialled == []
