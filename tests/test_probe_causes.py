"""probe's causes: the words users read, the hints that name the operator's settings, the caller's advice,
and the security mismatch hint."""

import probe
import providers
from probe import causes
from probe.causes import Failure, describe
from probe.redaction import Redactor
from servers import SETTING_NAMES, run, settings_for
from testdata import CANARY, MAILBOX_USER

NOTHING_SECRET = Redactor(())


def test_a_wrong_password_quotes_the_server(dovecot):
    result = run(settings_for(dovecot, password="not-it"), dovecot.ca_file)
    assert "AUTHENTICATIONFAILED" in result.cause.server_reply
    assert result.summary.startswith("Log in failed: The server rejected the username or password.")


def test_certificate_failures_never_suggest_turning_verification_off(dovecot):
    for cause in causes.CATALOGUE:
        assert "disable" not in causes.CATALOGUE[cause][2].lower()
        assert "verif" not in causes.CATALOGUE[cause][2].lower() or "stays on" in causes.CATALOGUE[cause][2]
    result = run(settings_for(dovecot))
    assert "MAILKEEP_CA_FILE" in result.cause.hint


def test_hints_name_the_callers_settings_and_plain_words_without_them():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, CANARY)
    plain = describe(Failure("tls_certificate_untrusted"), settings, NOTHING_SECRET)
    assert "with the extra CA file setting. Verification stays on." in plain.hint
    named = describe(Failure("destination_not_allowed"), settings, NOTHING_SECRET, setting_names=SETTING_NAMES)
    assert named.hint.endswith("can allow more with MAILKEEP_ALLOWED_NETWORKS and MAILKEEP_ALLOWED_PORTS.")


def test_the_port_of_the_other_mode_is_named_in_the_hint():
    settings = probe.Settings("IMAP", "mail.example.com", 143, "ssl_tls", MAILBOX_USER, CANARY)
    hint = causes.security_mismatch_hint(settings)
    assert hint == "Port 143 normally uses STARTTLS: choose STARTTLS, or use port 993 with SSL/TLS."
    pop3 = probe.Settings("POP3", "mail.example.com", 995, "starttls", MAILBOX_USER, CANARY)
    assert causes.security_mismatch_hint(pop3) == \
        "Port 995 normally uses SSL/TLS: choose SSL/TLS, or use port 110 with STARTTLS."


def test_a_known_provider_adds_its_advice_to_auth_failed():
    settings = probe.Settings("IMAP", "imap.gmail.com", 993, "ssl_tls", "someone@gmail.com", CANARY)
    cause = describe(Failure("auth_failed"), settings, NOTHING_SECRET, advice=providers.advice)
    assert "Gmail: Gmail accepts a password only as an App Password" in cause.hint
    office = probe.Settings("IMAP", "outlook.office365.com", 993, "ssl_tls", "a@contoso.com", CANARY)
    assert "use OAuth2" in describe(Failure("auth_failed"), office, NOTHING_SECRET, advice=providers.advice).hint


def test_advice_is_asked_with_the_settings_and_code_and_added_only_when_it_says_something():
    asked = []

    def advice(settings, code):
        asked.append((settings.host, code))
        return "Ask the helpdesk." if code == "auth_failed" else None

    settings = probe.Settings("IMAP", "mail.example.com", 993, "ssl_tls", MAILBOX_USER, CANARY)
    refused = describe(Failure("auth_failed"), settings, NOTHING_SECRET, advice=advice)
    assert refused.hint == "Check the Username (often the full email address) and the Password. Ask the helpdesk."
    missing = describe(Failure("folder_not_found"), settings, NOTHING_SECRET, advice=advice)
    assert missing.hint == causes.CATALOGUE["folder_not_found"][2]
    assert asked == [("mail.example.com", "auth_failed"), ("mail.example.com", "folder_not_found")]


def test_server_replies_are_truncated():
    settings = probe.Settings("IMAP", "h", 993, "ssl_tls", MAILBOX_USER, CANARY)
    cause = describe(Failure("auth_failed", reply="x" * 5000), settings, NOTHING_SECRET)
    assert len(cause.server_reply) == probe.result.REPLY_LENGTH


def test_a_reason_ending_in_a_period_reads_as_one_sentence():
    settings = probe.Settings("IMAP", "1.1.1.1", 993, "ssl_tls", MAILBOX_USER, CANARY)
    failure = Failure("tls_hostname_mismatch",
                      reason="IP address mismatch, certificate is not valid for '1.1.1.1'.")
    message = describe(failure, settings, NOTHING_SECRET).message
    assert message == ("The server's certificate is not valid for the name 1.1.1.1 "
                       "(IP address mismatch, certificate is not valid for '1.1.1.1').")


def test_the_starttls_hint_names_the_protocols_own_ssl_port():
    for protocol, port in (("IMAP", 993), ("POP3", 995)):
        settings = probe.Settings(protocol, "h", 143, "starttls", MAILBOX_USER, CANARY)
        hint = describe(Failure("starttls_unavailable"), settings, NOTHING_SECRET).hint
        assert f"Choose SSL/TLS (usually port {port})" in hint
