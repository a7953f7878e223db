"""health.py: what a check's outcome does to a credential's state, its retries, reminders and expiry warnings,
as pure functions of their inputs and an injected time; and what a real token endpoint's failure, as the
probe reports it, does."""

from datetime import datetime, timedelta

import pytest

import health
import probe
from health import FAILING, OK, UNKNOWN, Health
from probe import protocols
from servers import SocketServer, http_answer, run
from testdata import CLIENT_ID, CLIENT_SECRET, MAILBOX_USER

NOW = datetime(2030, 3, 1, 12, 0, 0)
DEFINITE = ["auth_failed", "folder_not_found", "tls_certificate_untrusted", "tls_certificate_expired",
            "tls_hostname_mismatch", "tls_handshake_failed", "starttls_unavailable", "plaintext_refused",
            "auth_mechanism_unavailable", "destination_not_allowed", "oauth_consent_required"]
TRANSIENT = ["dns_not_found", "connect_refused", "connect_timeout", "greeting_timeout", "deadline_exceeded",
             "protocol_error"]


@pytest.mark.parametrize("cause", DEFINITE)
def test_a_cause_that_means_the_settings_are_wrong_fails_at_the_first_check(cause):
    verdict = health.judge(Health(OK, 0), False, cause)
    assert verdict.health == Health(FAILING, 1) and verdict.notify == health.CREDENTIAL_FAILING
    assert verdict.retry_after is None


@pytest.mark.parametrize("cause", TRANSIENT)
def test_a_cause_that_may_pass_fails_only_at_the_third_failure_retried_after_1_2_minutes(cause):
    first = health.judge(Health(OK, 0), False, cause)
    assert first == health.Verdict(Health(OK, 1), None, False, 60)
    second = health.judge(first.health, False, cause)
    assert second == health.Verdict(Health(OK, 2), None, False, 120)
    third = health.judge(second.health, False, cause)
    assert third.health == Health(FAILING, 3) and third.notify == health.CREDENTIAL_FAILING
    assert health.judge(third.health, False, cause).notify is None  # one notification per change


def test_the_threshold_is_configurable_and_the_fourth_retry_waits_4_minutes():
    verdicts = [health.judge(Health(OK, failures), False, "connect_timeout", threshold=5) for failures in range(5)]
    assert [verdict.retry_after for verdict in verdicts] == [60, 120, 240, 240, None]
    assert verdicts[-1].notify == health.CREDENTIAL_FAILING


@pytest.mark.parametrize(("detail", "transient"), [
    ("invalid_client", False), ("unauthorized_client", False), ("invalid_scope", False), ("http_404", False),
    ("timeout", True), ("unreachable", True), ("http_503", True), ("http_500", True)])
def test_a_token_endpoint_failure_counts_by_what_the_endpoint_answered(detail, transient):
    assert health.is_transient("token_request_failed", detail) is transient


@pytest.mark.parametrize(("answer", "detail"), [
    (http_answer(b"503 Service Unavailable", b"<h1>Down for maintenance</h1>", b"text/html"), "http_503"),
    (http_answer(b"200 OK", b"{}", pause=60), "timeout"),
], ids=["answers 503", "does not answer"])
def test_a_token_endpoint_answering_5xx_or_not_at_all_fails_a_credential_only_at_the_third_check(answer, detail):
    """The probe's OAuth2 token request against a real HTTP endpoint on loopback; its cause, judged three times
    in a row, is retried after 1 and 2 minutes and fails only at the third."""
    with SocketServer(answer) as endpoint:
        settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2,
                                  client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                  token_url=f"http://127.0.0.1:{endpoint.port}/token")
        result = run(settings, deadline=1.0)
    cause = result.cause
    assert (result.failed_step.name, cause.code, cause.detail) == ("token", health.TOKEN_REQUEST_FAILED, detail)
    standing, verdicts = Health(OK, 0), []
    for _ in range(3):
        verdict = health.judge(standing, False, cause.code, cause.detail)
        verdicts.append((verdict.health.state, verdict.notify, verdict.retry_after))
        standing = verdict.health
    assert verdicts == [(OK, None, 60), (OK, None, 120), (FAILING, health.CREDENTIAL_FAILING, None)]


def test_a_check_that_passes_recovers_a_failing_credential_and_only_then_says_so():
    assert health.judge(Health(FAILING, 4), True) == health.Verdict(Health(OK, 0), health.CREDENTIAL_RECOVERED,
                                                                      True, None)
    assert health.judge(Health(UNKNOWN, 0), True).notify is None
    assert health.judge(Health(OK, 2), True) == health.Verdict(Health(OK, 0), None, False, None)


def test_the_next_check_is_after_the_interval_or_sooner_after_a_transient_failure_and_never_when_off():
    assert health.next_check(NOW, 900) == NOW + timedelta(seconds=900)
    assert health.next_check(NOW, 900, retry_after=60) == NOW + timedelta(seconds=60)
    assert health.next_check(NOW, 30, retry_after=60) == NOW + timedelta(seconds=30)
    assert health.next_check(NOW, 0) is None


def test_reminders_come_once_a_day_while_failing_and_not_paused():
    assert not health.reminder_due(FAILING, False, NOW, NOW + timedelta(hours=23), 24)
    assert health.reminder_due(FAILING, False, NOW, NOW + timedelta(hours=24), 24)
    assert not health.reminder_due(FAILING, True, NOW, NOW + timedelta(days=3), 24)
    assert not health.reminder_due(OK, False, NOW, NOW + timedelta(days=3), 24)
    assert not health.reminder_due(FAILING, False, NOW, NOW + timedelta(days=3), 0)


def test_expiry_is_warned_at_21_days_and_again_at_7_once_each():
    expires = NOW + timedelta(days=30)
    assert health.expiry_warning(expires, NOW, (21, 7), None) is None
    assert health.expiry_warning(expires, expires - timedelta(days=21), (21, 7), None) == 21
    assert health.expiry_warning(expires, expires - timedelta(days=20), (21, 7), 21) is None
    assert health.expiry_warning(expires, expires - timedelta(days=7), (21, 7), 21) == 7
    assert health.expiry_warning(expires, expires - timedelta(days=1), (21, 7), 7) is None
    assert health.expiry_warning(expires, expires - timedelta(days=3), (21, 7), None) == 7  # both crossed: one


def test_rotation_is_due_once_per_secret_set():
    set_at = NOW - timedelta(days=100)
    assert health.rotation_due(set_at, 90, None)
    assert not health.rotation_due(set_at, 90, NOW)
    assert health.rotation_due(NOW, 90, NOW - timedelta(days=1))  # set again since the last warning
    assert not health.rotation_due(set_at, None, None)
    assert health.rotation_deadline(set_at, 90) == set_at + timedelta(days=90)


def test_uptime_counts_the_time_each_outcome_held():
    since = NOW - timedelta(hours=24)
    outcomes = [(since, True), (since + timedelta(hours=12), False), (since + timedelta(hours=18), True)]
    assert health.uptime(outcomes, since, NOW) == pytest.approx(0.75)
    assert health.uptime([], since, NOW) is None


def test_first_checks_are_spread_over_the_interval():
    times = [health.first_check(NOW, 900, f"{number:08x}" * 4) for number in (0, 0x7FFFFFFF, 0xFFFFFFFF)]
    assert times == [NOW, NOW + timedelta(seconds=450), NOW + timedelta(seconds=900)]
