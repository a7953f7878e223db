"""The one way a connection test is run and recorded, whoever asks: a page, the API, the command line.

``test`` takes the connection values to test (plain data), the secrets typed
with them and the saved credential they belong to (or None); it finds the
secret to use (logins.py's rule), runs probe with the application's settings,
writes the audit event, and, when what was tested is exactly the saved
credential, records the outcome on it in the same transaction, with the new
refresh token a sign-in's provider sent (kept even when the rest cannot be
written: services.oauth_tokens.storing_rotated). It answers a
``TestOutcome`` that each caller renders in its own terms.

A test of values not yet saved also gets a *receipt*: a signed note of its
outcome and of a keyed digest of exactly what was tested, the secret included
(never the secret itself). The form carries it to Save, and ``record_receipt``
records that test on the credential when the saved settings are the tested
ones: the one rule for when a test of the values on screen counts for the entry.
"""

import dataclasses
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer

import audit
import keys
import probe
from database import db
from encryption import UndecryptableSecret
from logins import UNREADABLE_SECRET, LoginSecrets, settings_for
from models import utcnow
from services import checks, oauth_tokens

TOO_MANY_TESTS = "Too many connection tests are running; try again in a few seconds."
# A receipt counts for a save this soon after its test: long enough to fix a typo and save, too short to
# vouch for a server that may have changed since.
RECEIPT_MAX_AGE_SECONDS = 15 * 60
RECEIPT_SALT = "mailkeep.connection-test-receipt"
DIGEST_CONTEXT = b"mailkeep.tested-settings"
NEW_ENTRY = "new"


@dataclass
class TestOutcome:
    """What a connection test request came to.

    `result` is the probe.Result, or None when nothing was tested; `blamed`
    ({field name: message}) what to say under each field; `ask_secret` the name
    of the secret to type before testing (none typed and no stored one serves);
    `busy` True when every test slot was taken (try again in a moment);
    `receipt` the signed note of what was tested and how it ended (see
    ``record_receipt``), when something was tested.
    """

    result: probe.Result | None = None
    blamed: dict = field(default_factory=dict)
    ask_secret: str | None = None
    busy: bool = False
    receipt: str | None = None


def test(values, typed=None, saved=None, *, actor, list_folders=False, slots=None, run_id=None, now=None,
         audited=True):
    """Test the connection `values` ({name: value} for logins.CONNECTION_FIELDS, already validated).

    `typed` are the secrets typed with them ({name: text}); `saved` the saved
    credential they belong to, or None. `actor` names who asked, for the audit
    log. `list_folders` asks the server for its folders (the folder picker).
    A saved credential tested as saved (its own values and stored secret)
    gets the outcome recorded on it and in its check history (services.checks,
    in the same transaction; `run_id` names the "Test all" run it belongs to,
    `now` the time it counts at, naive UTC, now unless given); an unreadable
    stored secret is then recorded as a failure too. `slots` are the
    concurrency slots to hold (the app's hand-started tests' unless given:
    scheduled checks have their own). `audited` False leaves the audit log out
    (scheduled checks and "Test all" runs, whose every check is in the history
    already and would flood the log; the run itself is logged).
    """
    login = LoginSecrets(saved, values, typed)
    as_saved = saved is not None and not any(login.typed.values()) and values == saved.connection_values()
    try:
        secrets = login.for_test(keys.ring())
    except UndecryptableSecret:
        if as_saved:
            with db.atomic():
                saved.record_test(False, UNREADABLE_SECRET, at=now)
                checks.record(saved, ok=False, cause_code=checks.SECRET_UNREADABLE, summary=UNREADABLE_SECRET,
                              actor=actor, run_id=run_id, now=now)
                if audited:
                    audit.record("connection_test", saved, actor=actor, outcome="failed", details=UNREADABLE_SECRET)
        return TestOutcome(blamed={login.needed.name: UNREADABLE_SECRET})
    if not secrets:
        return TestOutcome(ask_secret=login.needed.name)
    try:
        settings = oauth_tokens.complete(settings_for(values, secrets), saved)
    except oauth_tokens.TokenUnavailable as problem:  # the sign-in's app is gone, changed or unreadable
        if as_saved:
            with db.atomic():
                saved.record_test(False, problem.reason, at=now)
                checks.record(saved, ok=False, cause_code=problem.code, summary=problem.reason, actor=actor,
                              run_id=run_id, now=now)
                if audited:
                    audit.record("connection_test", saved, actor=actor, outcome="failed", details=problem.reason)
        return TestOutcome(blamed={login.needed.name: problem.reason})
    try:
        result = run(settings, list_folders=list_folders, slots=slots)
        if (again := oauth_tokens.retry_settings(saved, settings, result.cause)) is not None:
            # Another process had refreshed first: once more with the refresh token it stored.
            settings, result = again, run(again, list_folders=list_folders, slots=slots)
    except probe.Busy:
        return TestOutcome(busy=True)
    # A refresh token the provider replaced is stored with the outcome, and on its own should the outcome fail
    # to be written: the old one may work no more.
    with oauth_tokens.storing_rotated(saved, settings, result.grant, now):
        if as_saved:
            saved.record_test(result.ok, result.summary, at=now)
            checks.record_result(saved, result, actor=actor, run_id=run_id, now=now)
        if audited:
            audit.record(
                "connection_test", saved, actor=actor, outcome=_outcome(result),
                details=f"{'saved settings' if as_saved else 'values on screen'}: {settings.protocol} "
                        f"{settings.host}:{settings.port} as {settings.username}. {result.summary}",
            )
    return TestOutcome(
        result=result, blamed={result.cause.field: result.cause.message} if result.cause else {},
        # A test of the saved credential as saved is recorded already; only other values need a receipt.
        receipt=None if as_saved else _receipt(result, settings, saved.id if saved is not None else NEW_ENTRY),
    )


def _outcome(result):
    """The audit outcome of a probe.Result: "ok", or its cause code."""
    return result.cause.code if result.cause else "ok"


def test_saved(credential, *, actor, slots=None, run_id=None, now=None, audited=True):
    """Test a saved credential with its stored secret and record the outcome on it (see ``test``)."""
    return test(credential.connection_values(), saved=credential, actor=actor, slots=slots, run_id=run_id, now=now,
                audited=audited)


def record_receipt(credential, receipt, *, tested_for, actor):
    """Record on `credential`, just saved, the test a `receipt` (``TestOutcome.receipt``) describes, when
    that test was of exactly the settings now saved, its stored secret included; and log it.

    `tested_for` is what the form that carried the receipt was for: the
    credential's id when editing, ``NEW_ENTRY`` when adding; a receipt made for
    another entry, altered, or older than RECEIPT_MAX_AGE_SECONDS counts for
    nothing. Returns True when the test was recorded.
    """
    if not receipt:
        return False
    try:
        note = _serializer().loads(receipt, max_age=RECEIPT_MAX_AGE_SECONDS)
    except BadData:
        return False
    if note.get("for") != tested_for or not hmac.compare_digest(str(note.get("digest")), _saved_digest(credential)):
        return False
    tested_at = datetime.fromisoformat(note["at"])
    with db.atomic():
        credential.record_test(note["ok"], note["summary"], at=tested_at)
        certificate = note.get("certificate")
        checks.record(credential, ok=note["ok"], cause_code="" if note["ok"] else note["outcome"],
                      summary=note["summary"], duration_ms=note.get("ms", 0), actor=actor, now=tested_at,
                      certificate=probe.Certificate.from_dict(certificate) if certificate else None)
        audit.record(
            "connection_test", credential, actor=actor, outcome=note["outcome"],
            details=f"values on screen, tested at {tested_at:%H:%M:%S} UTC and saved unchanged: {note['summary']}",
        )
    return True


def _receipt(result, settings, tested_for):
    """The signed receipt of a test of probe.Settings `settings` (secrets included) that gave `result`."""
    return _serializer().dumps({
        "for": tested_for, "ok": result.ok, "outcome": _outcome(result), "summary": result.summary,
        "at": utcnow().isoformat(), "digest": _digest(settings), "ms": result.elapsed_ms,
        "certificate": result.certificate.as_dict() if result.certificate else None,
    })


def _saved_digest(credential):
    """The digest of the settings `credential` would be tested with as saved: its values and stored secret."""
    login = LoginSecrets(credential, credential.connection_values())
    try:
        secrets = login.for_test(keys.ring())
        return _digest(oauth_tokens.complete(settings_for(credential.connection_values(), secrets), credential))
    except (UndecryptableSecret, oauth_tokens.TokenUnavailable):
        return ""


def _digest(settings):
    """A keyed digest (HMAC-SHA256 under a key derived from the app's secret key) of every field of
    probe.Settings `settings`: equal settings give equal digests, and it reveals nothing of the secret.

    A sign-in's refresh token is left out: every use may replace it (a test's own refresh included), and
    what it stands for, the sign-in for this server with this OAuth app, is in the other fields.
    """
    key = hmac.new(current_app.config["SECRET_KEY"].encode(), DIGEST_CONTEXT, hashlib.sha256).digest()
    fields = dataclasses.asdict(settings)
    fields.pop("refresh_token", None)
    canonical = json.dumps(fields, sort_keys=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=RECEIPT_SALT)


def run(settings, list_folders=False, slots=None):
    """Run a connection test of probe.Settings with the application's Prober (its deadline, CA file,
    outbound policy and provider advice) and concurrency `slots` (the hand-started tests' unless given);
    return the probe.Result. Raises probe.Busy when all slots are taken."""
    return current_app.extensions["mailkeep.prober"].run(
        settings, slots=slots or current_app.extensions["mailkeep.test_slots"], list_folders=list_folders,
    )
