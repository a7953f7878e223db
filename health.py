"""A credential's health: the one owner of what a check's outcome does to its state, when it is checked next,
when people are told, and when an expiry deserves a warning.

Pure functions of plain values and an explicit ``now`` (naive UTC datetimes),
so every schedule, retry, reminder and warning is tested with an injected
clock. Nothing here reads the database or changes a credential's settings:
Mailkeep never disables, pauses or edits a credential on its own.

States: ``UNKNOWN`` (never checked), ``OK``, ``FAILING``; ``paused`` is a
separate flag people set, shown instead of the state. A failure's cause code
decides how fast it counts:

- *definite* causes mean the credential or its server settings are wrong
  (a wrong password, a missing folder, a bad certificate, ...): failing at
  the first check;
- *transient* causes may pass on their own (DNS, refused or silent
  connections, a server's own trouble, a token endpoint timing out or
  answering 5xx): failing only after ``threshold`` failures in a row
  (MAILKEEP_CHECK_FAILURES_BEFORE_ALERT), retried sooner than the regular
  interval meanwhile (RETRY_DELAYS).

A cause code this module does not know (one added later) is definite: a new
way to fail is assumed to need a person.
"""

from dataclasses import dataclass
from datetime import timedelta

UNKNOWN, OK, FAILING, PAUSED = "unknown", "ok", "failing", "paused"
LABELS = {UNKNOWN: "Never checked", OK: "OK", FAILING: "Failing", PAUSED: "Paused"}

# probe/causes.py codes (and the connection-test service's own) that mean the settings are wrong.
DEFINITE_CAUSES = frozenset({
    "auth_failed", "folder_not_found", "tls_certificate_untrusted", "tls_certificate_expired",
    "tls_hostname_mismatch", "tls_handshake_failed", "starttls_unavailable", "plaintext_refused",
    "auth_mechanism_unavailable", "destination_not_allowed", "secret_unreadable", "secret_missing",
    "oauth_consent_required",
})
# Codes that may pass without anyone changing anything.
TRANSIENT_CAUSES = frozenset({
    "dns_not_found", "connect_refused", "connect_timeout", "greeting_timeout", "deadline_exceeded",
    "protocol_error", "server_unavailable",
})
# A token endpoint's failure (token_request_failed) is transient when it timed out, could not be reached or
# answered 5xx (its cause_detail, see probe Cause.detail); an OAuth2 error such as invalid_client is definite.
TOKEN_REQUEST_FAILED = "token_request_failed"
TRANSIENT_TOKEN_DETAILS = ("timeout", "unreachable", "http_5")

# Seconds before a check that failed for a transient cause is tried again, by failures so far (1, 2, 3, ...);
# the last one repeats.
RETRY_DELAYS = (60, 120, 240)

CREDENTIAL_FAILING = "credential.failing"
CREDENTIAL_RECOVERED = "credential.recovered"
CERTIFICATE_EXPIRING = "certificate.expiring"
SECRET_EXPIRING = "secret.expiring"
ROTATION_DUE = "rotation.due"


def is_transient(cause_code, cause_detail=""):
    """True when a failure with `cause_code` (and `cause_detail`, for a token endpoint) may pass on its own."""
    if cause_code == TOKEN_REQUEST_FAILED:
        return any((cause_detail or "").startswith(prefix) for prefix in TRANSIENT_TOKEN_DETAILS)
    return cause_code in TRANSIENT_CAUSES


@dataclass(frozen=True)
class Health:
    """Where a credential stands: `state` (UNKNOWN, OK or FAILING) and `failures`, its failed checks in a row."""

    state: str = UNKNOWN
    failures: int = 0


@dataclass(frozen=True)
class Verdict:
    """What one check does: the new Health, the notification to publish (CREDENTIAL_FAILING,
    CREDENTIAL_RECOVERED or None), whether the state changed, and `retry_after`: seconds until the next
    check when it must come sooner than the regular interval, else None."""

    health: Health
    notify: str | None
    changed: bool
    retry_after: int | None


def judge(previous, ok, cause_code="", cause_detail="", *, threshold=3):
    """The Verdict of a check that ended `ok` (or with `cause_code`/`cause_detail`) on a credential whose
    Health was `previous`; `threshold` is the number of transient failures in a row that make it failing.

    One notification per change of state: failing when it becomes failing,
    recovered when a failing one passes a check (a credential never checked
    that passes is simply OK).
    """
    if ok:
        recovered = previous.state == FAILING
        return Verdict(Health(OK, 0), CREDENTIAL_RECOVERED if recovered else None, previous.state != OK, None)
    failures = previous.failures + 1
    if not is_transient(cause_code, cause_detail) or failures >= threshold:
        becomes = previous.state != FAILING
        return Verdict(Health(FAILING, failures), CREDENTIAL_FAILING if becomes else None, becomes, None)
    # A transient failure below the threshold: nothing changes yet, and the next check comes soon.
    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
    return Verdict(Health(previous.state, failures), None, False, delay)


def next_check(now, interval, retry_after=None):
    """When the next scheduled check is due after a check at `now`: after `retry_after` seconds when given
    (a transient failure), else after `interval` seconds. None when `interval` is 0 (scheduled checks off)."""
    if not interval:
        return None
    return now + timedelta(seconds=min(retry_after, interval) if retry_after else interval)


def first_check(now, interval, uid):
    """When a credential never scheduled is first checked: somewhere within the next `interval` seconds,
    at a fixed place for its `uid` (hex text), so that many credentials are spread over the interval rather
    than all checked at once."""
    fraction = int(uid[:8], 16) / 0xFFFFFFFF if uid else 0.0
    return now + timedelta(seconds=round(fraction * interval, 3))


def reminder_due(state, paused, noticed_at, now, every_hours):
    """True when a credential that stays FAILING (not paused) should be reminded of: its last notice was
    `every_hours` hours ago or more (0: never reminds)."""
    if state != FAILING or paused or not every_hours or noticed_at is None:
        return False
    return now - noticed_at >= timedelta(hours=every_hours)


def expiry_warning(expires_at, now, thresholds, warned_days):
    """The threshold (days, one of `thresholds`, e.g. (21, 7)) to warn at now, or None.

    `expires_at` is when something expires (naive UTC datetime), `warned_days`
    the smallest threshold already warned at for this expiry (None: none yet).
    Warns once per threshold crossed: at 21 days, then again at 7; a single
    warning at the smallest crossed threshold when several were crossed at once.
    """
    if expires_at is None:
        return None
    left = expires_at - now
    crossed = [days for days in thresholds if left <= timedelta(days=days)]
    if not crossed:
        return None
    smallest = min(crossed)
    return smallest if warned_days is None or smallest < warned_days else None


def rotation_due(secret_set_at, max_age_days, warned_at):
    """True when a secret set at `secret_set_at` is older than `max_age_days` (a group's password age; None:
    never) and "due for rotation" has not been said since it was set."""
    if not max_age_days or secret_set_at is None:
        return False
    return warned_at is None or warned_at < secret_set_at


def rotation_deadline(secret_set_at, max_age_days):
    """When a secret set at `secret_set_at` becomes due for rotation (None when the group sets no age)."""
    if not max_age_days or secret_set_at is None:
        return None
    return secret_set_at + timedelta(days=max_age_days)


def uptime(outcomes, since, now):
    """The share (0.0 to 1.0) of the time from `since` to `now` the checks found working, or None when no
    check tells: each check's outcome holds until the next one; `outcomes` is (at, ok) pairs oldest first."""
    if not outcomes:
        return None
    start = max(outcomes[0][0], since)
    total = (now - start).total_seconds()
    if total <= 0:
        return 1.0 if outcomes[-1][1] else 0.0
    up = 0.0
    for (at, ok), following in zip(outcomes, [*outcomes[1:], (now, None)], strict=True):
        if ok:
            up += (following[0] - max(at, start)).total_seconds()
    return max(0.0, min(up / total, 1.0))


def displayed(state, paused):
    """The state people see: PAUSED when paused, else the state."""
    return PAUSED if paused else state
