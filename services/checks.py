"""A check's record: every check of a saved credential (scheduled, by hand on a page, through the API, from
the command line) is kept in its history, and what it does to the credential's state, its next check and
the notifications is decided by health.py and written here, inside the caller's transaction (the
connection-test service's, so the outcome, the history, the state and the outbox commit together).

Also what pages and the API read of it: a credential's history and uptime, the summary counts, pausing and
resuming (the only change of a credential's watch that people make; Mailkeep never makes one on its own).
"""

import json
import time
from datetime import timedelta

from flask import current_app
from peewee import fn

import audit
import health
import logins
import notifications
from config import MINIMUM_CHECK_INTERVAL
from database import db
from models import CheckRun, CheckRunItem, Credential, CredentialCheck, HealthChange, OAuthApp, utcnow

SCHEDULER = "(scheduler)"
# Cause codes of the service's own, for checks that never reached probe.
SECRET_UNREADABLE = "secret_unreadable"
SECRET_MISSING = "secret_missing"
# An OAuth2 sign-in that no longer serves (its app gone or changed since): sign in again (services.oauth_tokens).
NOT_SIGNED_IN = "not_signed_in"
MISSING_SECRET_SUMMARY = "No password or client secret is stored, so it cannot log in; set one."
# The summary's filters, in the order the list shows them.
SUMMARY_FILTERS = ("ok", "failing", "expiring", "unchecked", "paused")
SUMMARY_LABELS = {"ok": "OK", "failing": "Failing", "expiring": "Expiring soon", "unchecked": "Never checked",
                  "paused": "Paused"}
# Seconds a process keeps the summary's counts (see ``summary``).
SUMMARY_SECONDS = 5.0
UPTIME_WINDOWS = (("24 h", timedelta(hours=24)), ("7 days", timedelta(days=7)), ("30 days", timedelta(days=30)))


def settings():
    """The watch settings of the running application, as a dict (see config.DEFAULTS)."""
    config = current_app.config
    return {"interval": config["CHECK_INTERVAL"], "threshold": config["CHECK_FAILURES_BEFORE_ALERT"],
            "warning_days": config["EXPIRY_WARNING_DAYS"], "reminder_hours": config["CHECK_REMINDER_HOURS"],
            "retention_days": config["CHECK_RETENTION_DAYS"]}


def scheduled_checks_on():
    """False when MAILKEEP_CHECK_INTERVAL is 0: nothing is then scheduled, claimed or checked on a schedule
    (tests people start still run, and are kept)."""
    return bool(current_app.config["CHECK_INTERVAL"])


def group_interval(own):
    """Seconds between scheduled checks of a group's credentials: `own` (the group's interval in seconds, or
    None) when set, at least config.MINIMUM_CHECK_INTERVAL, else MAILKEEP_CHECK_INTERVAL; 0 when scheduled
    checks are off, whatever the group says."""
    if not scheduled_checks_on():
        return 0
    return max(own, MINIMUM_CHECK_INTERVAL) if own else current_app.config["CHECK_INTERVAL"]


def interval_for(credential):
    """Seconds between scheduled checks of `credential` (``group_interval`` of its group); 0 when off."""
    return group_interval(credential.group.check_interval if credential.group_id else None)


def record_result(credential, result, *, actor, run_id=None, now=None):
    """Record a probe.Result of a test of `credential` as saved (see ``record``)."""
    cause = result.cause
    certificate = result.certificate
    return record(
        credential, ok=result.ok, cause_code=cause.code if cause else "", cause_detail=cause.detail if cause else "",
        summary=result.summary, duration_ms=result.elapsed_ms, actor=actor, run_id=run_id, now=now,
        cause=cause, certificate=certificate,
    )


def record(credential, *, ok, cause_code="", cause_detail="", summary="", duration_ms=0, actor, run_id=None,
           now=None, cause=None, certificate=None):
    """Keep one check of `credential` and apply its verdict (health.judge): the state, the failures in a row,
    the next scheduled check, a change of state, and the notifications (notifications.publish) of a change
    and of a certificate nearing its expiry. Call it inside the transaction that records the test.

    `cause` (a probe.Cause) and `certificate` (a probe.Certificate) give the
    notification its words and the history the certificate's expiry and issuer.
    `now` is when the check counts (naive UTC; now unless given). Returns the
    health.Verdict.
    """
    now = now or utcnow()
    config = settings()
    not_after = certificate.not_after.replace(tzinfo=None) if certificate else None
    CredentialCheck.create(
        credential=credential.id, at=now, ok=ok, cause_code=cause_code or "", cause_detail=cause_detail or "",
        summary=(summary or "")[:300], duration_ms=duration_ms or 0, actor=actor, run_id=run_id,
        certificate_not_after=not_after, certificate_issuer=(certificate.issuer if certificate else "")[:255],
    )
    previous = health.Health(credential.check_state, credential.check_failures)
    verdict = health.judge(previous, ok, cause_code, cause_detail, threshold=config["threshold"])
    changes = {
        Credential.check_state: verdict.health.state, Credential.check_failures: verdict.health.failures,
        Credential.check_cause: "" if ok else (cause_code or "")[:60],
        Credential.check_due_at: health.next_check(now, interval_for(credential), verdict.retry_after),
        Credential.check_claimed_until: None,
    }
    if verdict.changed:
        changes[Credential.check_state_since] = now
        HealthChange.create(credential=credential.id, at=now, from_state=previous.state,
                            to_state=verdict.health.state, cause_code=cause_code or "", actor=actor)
    if verdict.notify and not credential.check_paused:
        notifications.publish(verdict.notify, credential=credential, actor=actor, at=now,
                              details=_check_details(credential, ok, cause_code, cause, summary, verdict))
        changes[Credential.check_noticed_at] = now
    if not_after is not None:
        warned = credential.certificate_warned_days if credential.certificate_not_after == not_after else None
        warn_at = health.expiry_warning(not_after, now, config["warning_days"], warned)
        if warn_at is not None and not credential.check_paused:
            notifications.publish(health.CERTIFICATE_EXPIRING, credential=credential, actor=actor, at=now, details={
                "expires_at": not_after.isoformat() + "Z", "issuer": certificate.issuer,
                "days_left": max((not_after - now).days, 0), "warning_days": warn_at, "field": "host",
                "message": f"The server certificate of {credential.host} expires on {not_after:%Y-%m-%d}.",
            })
            warned = warn_at
        changes.update({Credential.certificate_not_after: not_after,
                        Credential.certificate_issuer: certificate.issuer[:255],
                        Credential.certificate_warned_days: warned})
    Credential.update(changes).where(Credential.id == credential.id).execute()
    if verdict.changed:
        forget_summary()
    for field, value in changes.items():
        setattr(credential, field.name, value)
    # Any "Test all" run started by now that still waits for this credential has its check: this one (a
    # scheduled check that got there first counts too), done in the same transaction as the check.
    started = CheckRun.select(CheckRun.id).where(CheckRun.started_at <= now)
    CheckRunItem.update(done=True, ok=ok).where(
        (CheckRunItem.credential == credential.id) & (CheckRunItem.done == False)  # noqa: E712
        & ((CheckRunItem.run == run_id) | CheckRunItem.run.in_(started))).execute()
    return verdict


def _check_details(credential, ok, cause_code, cause, summary, verdict):
    """What a credential.failing or credential.recovered notification says: the cause in words, the field to
    fix, how many checks failed in a row. Never a secret, never the server's own words."""
    details = {"state": verdict.health.state, "summary": summary, "failures": verdict.health.failures}
    if not ok:
        details.update(cause=cause_code, message=cause.message if cause else summary, hint=cause.hint if cause else "",
                       field=cause.field if cause else _field_of(credential, cause_code))
    return details


# The service's own cause codes (and services.oauth_tokens') that blame the secret the login needs.
SECRET_CAUSES = (SECRET_UNREADABLE, SECRET_MISSING, NOT_SIGNED_IN)


def _field_of(credential, cause_code):
    """The field to fix for the service's own cause codes: the secret `credential`'s login needs (logins)."""
    return logins.login_for(credential.auth).secret.name if cause_code in SECRET_CAUSES else None


def set_paused(credential, paused, *, actor, now=None):
    """Pause or resume the scheduled checks of `credential` (people's choice, logged with its audit event and
    as a change of state). A resumed credential is checked at its next due time, or at once when it is past."""
    now = now or utcnow()
    with db.atomic():
        Credential.update(check_paused=paused, check_claimed_until=None).where(
            Credential.id == credential.id).execute()
        HealthChange.create(credential=credential.id, at=now, from_state=credential.check_state,
                            to_state=health.PAUSED if paused else "resumed", actor=actor)
        audit.record("check_pause" if paused else "check_resume", credential, actor=actor)
    credential.check_paused = paused
    forget_summary()


def history(credential_id, limit=20):
    """The latest `limit` checks of a credential, newest first (a list of CredentialCheck)."""
    return list(CredentialCheck.of(credential_id).limit(limit))


def uptimes(credential_id, now=None):
    """[(label, share 0.0-1.0 or None)] of a credential over 24 hours, 7 and 30 days (health.uptime)."""
    now = now or utcnow()
    longest = now - UPTIME_WINDOWS[-1][1]
    before = (CredentialCheck.select(CredentialCheck.at, CredentialCheck.ok)
              .where((CredentialCheck.credential == credential_id) & (CredentialCheck.at < longest))
              .order_by(CredentialCheck.at.desc()).limit(1).tuples())
    outcomes = [*before, *CredentialCheck.outcomes_since(credential_id, longest)]
    return [(label, health.uptime(_window(outcomes, now - span), now - span, now)) for label, span in UPTIME_WINDOWS]


def _window(outcomes, since):
    """The (at, ok) pairs that tell the time from `since` on: the last check before it (counted from `since`)
    and every check after it."""
    before = [ok for at, ok in outcomes if at < since]
    return ([(since, before[-1])] if before else []) + [(at, ok) for at, ok in outcomes if at >= since]


def changes(credential_id, limit=50):
    """A credential's changes of state, newest first."""
    return list(HealthChange.select().where(HealthChange.credential == credential_id)
                .order_by(HealthChange.at.desc(), HealthChange.id.desc()).limit(limit))


def expiring_condition(now=None):
    """A condition: the credential's certificate or client secret expires within the largest warning window,
    or the client secret of the OAuth app it signs in with does (every sign-in of that app stops then)."""
    now = now or utcnow()
    horizon = now + timedelta(days=max(current_app.config["EXPIRY_WARNING_DAYS"]))
    expiring_apps = OAuthApp.select(OAuthApp.id).where(
        OAuthApp.client_secret_expires_on.is_null(False) & (OAuthApp.client_secret_expires_on <= horizon.date()))
    return ((Credential.certificate_not_after.is_null(False) & (Credential.certificate_not_after <= horizon))
            | (Credential.client_secret_expires_on.is_null(False)
               & (Credential.client_secret_expires_on <= horizon.date()))
            | Credential.signing_in_with(expiring_apps))


def summary_condition(name, now=None):
    """The condition of the summary filter `name` (one of SUMMARY_FILTERS)."""
    active = Credential.check_paused == False  # noqa: E712 (peewee expression)
    return {
        "ok": active & (Credential.check_state == health.OK),
        "failing": active & (Credential.check_state == health.FAILING),
        "unchecked": active & (Credential.check_state == health.UNKNOWN),
        "paused": Credential.check_paused == True,  # noqa: E712
        "expiring": expiring_condition(now),
    }[name]


def summary(now=None, fresh=False):
    """{filter name: count} for SUMMARY_FILTERS: OK, failing, never checked and paused count each credential
    once (paused ones only as paused); expiring soon counts those whose certificate or client secret (or their
    OAuth app's client secret) expires within the largest warning window, whatever their state.

    Counting reads every row's state (from an index): at 100,000 credentials
    that is 10 to 30 ms, so each process keeps the counts for SUMMARY_SECONDS
    (a check or a pause in this process forgets them at once); `fresh` counts
    anew.
    """
    cache = current_app.extensions.setdefault("mailkeep.summary", {})
    key = current_app.config["EXPIRY_WARNING_DAYS"]
    if not fresh and now is None and cache.get("key") == key and cache.get("until", 0) > time.monotonic():
        return dict(cache["counts"])
    counts = dict.fromkeys(SUMMARY_FILTERS, 0)
    rows = (Credential.select(Credential.check_paused, Credential.check_state, fn.COUNT(Credential.id))
            .group_by(Credential.check_paused, Credential.check_state).tuples())
    for paused, state, count in rows:
        counted = "paused" if paused else {health.OK: "ok", health.FAILING: "failing"}.get(state, "unchecked")
        counts[counted] += count
    counts["expiring"] = Credential.select().where(expiring_condition(now)).count()
    if now is None:
        cache.update(counts=dict(counts), key=key, until=time.monotonic() + SUMMARY_SECONDS)
    return counts


def forget_summary():
    """Have the next ``summary`` count anew (after a change of state in this process)."""
    current_app.extensions.get("mailkeep.summary", {}).clear()


def check_json(check):
    """A check as the API shows it."""
    return {
        "id": check.id, "at": check.at.isoformat() + "Z", "ok": check.ok, "cause": check.cause_code or None,
        "cause_detail": check.cause_detail or None, "summary": check.summary, "duration_ms": check.duration_ms,
        "actor": check.actor, "run_id": check.run_id,
        "certificate": None if check.certificate_not_after is None else {
            "not_after": check.certificate_not_after.isoformat() + "Z", "issuer": check.certificate_issuer},
    }


def details_of(event):
    """The details (a dict) of a models.NotificationEvent."""
    return json.loads(event.details or "{}")
