"""Secret versions: every change of a credential's stored secret makes a new version; rotation (tested
against the server first), rollback, the grace period, and which version is in which state.

``change_secrets`` is the one way a stored secret changes, whoever asks: a save
with a new secret, the change dialog, the API's secret route, a rotation, a
rollback. It seals the secret into the credential (where every other reader
finds it, unchanged), makes the new version, starts the previous one's grace
period, retires older ones and forgets versions beyond
``MAILKEEP_SECRET_VERSIONS_KEPT``, inside the caller's transaction, which also
writes the change's audit event.

A version's state is computed when it is read, against the clock (``now``, which
tests replace through ``app.extensions["mailkeep.clock"]``): the newest version of
a secret the credential stores is *current*; the one it replaced is *previous*
while now is before its ``readable_until``; every other one is *retired*. No
worker is needed to retire anything. Versions set for another server or login
(logins.binding) are retired at once and never served or restored.

Vault's KV version 2 is the model (versions, check-and-set, a retained history;
https://developer.hashicorp.com/vault/docs/secrets/kv/kv-v2), with one
difference: an old version is readable only during its grace period.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

import audit
import database
import keys
import logins
import notifications
from config import MAX_GRACE_SECONDS
from database import db
from encryption import UndecryptableSecret
from models import SecretVersion, StaleRevision, utcnow
from services import connection_tests

log = logging.getLogger(__name__)

CURRENT, PREVIOUS, RETIRED = "current", "previous", "retired"
MAX_NOTE_LENGTH = 200


def now():
    """The current time (naive UTC) by the application's clock: ``app.extensions["mailkeep.clock"]`` when a
    test set one, else models.utcnow."""
    return current_app.extensions.get("mailkeep.clock", utcnow)()


def kept():
    """How many versions of each secret a credential keeps (MAILKEEP_SECRET_VERSIONS_KEPT, at least 2)."""
    return current_app.config["SECRET_VERSIONS_KEPT"]


def default_grace_seconds():
    """Seconds a replaced secret stays readable when a change does not say (MAILKEEP_SECRET_GRACE_SECONDS)."""
    return current_app.config["SECRET_GRACE_SECONDS"]


class VersionError(Exception):
    """A change of versions that is refused; the message says why, in words for people. `status` is the HTTP
    status the API answers it with."""

    status = 409


class NoSuchVersion(VersionError):
    """The credential keeps no version of that number."""

    status = 404

    def __init__(self, number):
        super().__init__(f"This credential keeps no version {number}.")


class NotRestorable(VersionError):
    """That version cannot be made current again (the message says why)."""


class WrongSecret(VersionError):
    """The secret sent is not the one the credential's login needs."""

    status = 422


class NoReadableVersion(VersionError):
    """No version in the state asked for can be read now (``?version=previous`` after its grace period)."""

    status = 410


class RotationRefused(VersionError):
    """The new secret failed its connection test and the change was not asked to be saved anyway.
    `outcome` is the services.connection_tests.TestOutcome."""

    status = 422

    def __init__(self, outcome):
        cause = outcome.result.cause if outcome.result is not None else None
        reason = cause.message if cause else " ".join(outcome.blamed.values()) or "it could not be tested"
        super().__init__(f"Not rotated: the new secret did not work. {reason}")
        self.outcome = outcome


class TestsBusy(VersionError):
    """Every connection-test slot was taken, so the new secret could not be tested; try again soon."""

    status = 429

    def __init__(self):
        super().__init__(connection_tests.TOO_MANY_TESTS)


@dataclass(frozen=True)
class VersionState:
    """A SecretVersion as people and programs see it at one moment: `state` (CURRENT, PREVIOUS or RETIRED)
    and, for PREVIOUS, `readable_until` (naive UTC)."""

    version: SecretVersion
    state: str
    readable_until: object = None

    def as_dict(self):
        """JSON-ready, never the value: number, secret, created_at, created_by, note, state, readable_until."""
        version = self.version
        return {
            "number": version.number, "secret": version.secret, "created_at": version.created_at.isoformat() + "Z",
            "created_by": version.created_by, "note": version.note, "state": self.state,
            "readable_until": self.readable_until.isoformat() + "Z" if self.readable_until else None,
        }


def states(credential, at=None):
    """Every version `credential` keeps, newest first, as VersionStates at `at` (naive UTC; now unless given)."""
    at = at or now()
    rows = list(SecretVersion.of(credential))
    seen = {}
    answer = []
    for version in rows:
        position = seen[version.secret] = seen.get(version.secret, -1) + 1
        answer.append(_state(credential, version, position, at))
    return answer


def _state(credential, version, position, at):
    """The VersionState of `version`, the `position`-th newest (0 first) of its secret's versions."""
    usable = not version.retired and version.login_digest == logins.binding(credential, version.secret)
    if usable and position == 0 and credential.has_secret(version.secret):
        return VersionState(version, CURRENT)
    if usable and position == 1 and version.readable_until is not None and at < version.readable_until:
        return VersionState(version, PREVIOUS, version.readable_until)
    return VersionState(version, RETIRED)


def serving(credential, which, at=None):
    """The VersionState a service account is served for `which` ("current" or "previous") of the secret
    `credential`'s login needs, at `at` (naive UTC; now unless given).

    "current" answers the current version, or None when the stored secret has
    no version (stored before versions were kept and unreadable then, or by a
    model-level save; the credential's own secret is served all the same).
    Raises NoReadableVersion for "previous" outside its grace period, or when none was kept.
    """
    needed = logins.login_for(credential.auth).secret.name
    at = at or now()
    rows = list(SecretVersion.of(credential, needed).limit(2))
    found = [_state(credential, version, position, at) for position, version in enumerate(rows)]
    wanted = CURRENT if which == CURRENT else PREVIOUS
    for state in found:
        if state.state == wanted:
            return state
    if which == CURRENT:
        return None
    raise NoReadableVersion("No previous version of this secret is readable now: there is none, or its grace "
                            "period has ended.")


@dataclass
class SecretsChanged:
    """What ``change_secrets`` did: the new `versions` (SecretVersion rows, one a secret set), the version each
    replaced that stays readable (`previous`, by secret name, a SecretVersion or None), and how many old
    versions it forgot (`pruned`)."""

    versions: list
    previous: dict
    pruned: int = 0


def change_secrets(credential, changes, *, actor, note="", grace_seconds=0, expected_revision=None):
    """The one way a credential's stored secrets change: store `changes` ({secret name: new plaintext, or None
    to forget the stored one}) and make a version of each new one. Returns SecretsChanged.

    Call it inside the transaction that writes the change's audit event (it opens
    none of its own that would commit). The credential is written first, so its
    row is locked before any version is read (numbers never clash). With
    `expected_revision` (revision numbers, from If-Match) it is a check-and-set:
    models.StaleRevision when the credential has moved on. The version a new
    one replaces stays readable for `grace_seconds` (0: retired at once) when it
    was set for the same server and login; every older one is retired. A
    forgotten secret (its login changed) retires all its versions. Versions
    beyond ``kept()`` of each secret are deleted. `actor` and `note` (at most
    MAX_NOTE_LENGTH characters) are kept on the new version.
    """
    if expected_revision is not None:
        credential.claim_revision(expected_revision)
    keyring, at = keys.ring(), now()
    for name, plaintext in changes.items():
        credential.seal(keyring, name, plaintext)
    credential.save()
    changed = SecretsChanged(versions=[], previous={})
    for name, plaintext in changes.items():
        rows = list(SecretVersion.of(credential, name))
        binding = logins.binding(credential, name)
        replaced = rows[0] if rows and not rows[0].retired and rows[0].login_digest == binding else None
        stays = replaced if replaced is not None and plaintext is not None and grace_seconds > 0 else None
        retire = [row.id for row in rows if row is not stays and not row.retired]
        if retire:
            SecretVersion.update(retired=True, readable_until=None).where(SecretVersion.id.in_(retire)).execute()
        if stays is not None:
            stays.readable_until = at + timedelta(seconds=grace_seconds)
            SecretVersion.update(readable_until=stays.readable_until).where(SecretVersion.id == stays.id).execute()
        changed.previous[name] = stays
        if plaintext is None:
            continue
        version = SecretVersion.create(
            credential=credential, secret=name, number=SecretVersion.next_number(credential), login_digest=binding,
            created_at=at, created_by=actor[:100], note=(note or "")[:MAX_NOTE_LENGTH],
        )
        version.seal(keyring, "value", plaintext)  # bound to its own row, which needs its id first
        version.save()
        changed.versions.append(version)
        forgotten = [row.id for row in rows[kept() - 1:]]
        if forgotten:
            changed.pruned += SecretVersion.delete().where(SecretVersion.id.in_(forgotten)).execute()
    return changed


def _check_grace(grace_seconds):
    """`grace_seconds` as a whole number from 0 to MAX_GRACE_SECONDS (the default when None); ValueError
    otherwise (the forms and the API check first, with their own messages)."""
    if grace_seconds is None:
        return default_grace_seconds()
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int) or \
            not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValueError(f"grace_seconds must be a whole number from 0 to {MAX_GRACE_SECONDS}")
    return grace_seconds


def change_secret(credential, name, plaintext, *, actor, note="", grace_seconds=None, expected_revision=None):
    """Replace the stored secret `name` of `credential` with `plaintext` (the change dialog, the API's secret
    route), untested; log it as secret_change; announce it. The replaced version stays readable for
    `grace_seconds` (MAILKEEP_SECRET_GRACE_SECONDS unless given). Returns the new SecretVersion.

    Raises models.StaleRevision for a stale `expected_revision`.
    """
    grace_seconds = _check_grace(grace_seconds)
    with db.atomic():
        changed = change_secrets(credential, {name: plaintext}, actor=actor, note=note, grace_seconds=grace_seconds,
                                 expected_revision=expected_revision)
        version = changed.versions[0]
        # The words the change dialog and the API's secret route have always logged; the version list says more.
        audit.record("secret_change", credential, actor=actor, details=f"{logins.SECRETS[name].noun} changed")
        announce_rotation(credential, version, changed.previous[name], actor=actor)
    _after(changed)
    return version


# Why a secret nobody types (an OAuth2 sign-in's refresh token) is not rotated by hand.
NOT_TYPED = ("This credential signs in with OAuth2: its {noun} comes from the provider, never typed. Sign in again "
             "on the credential's page to replace it.")


def rotate(credential, name, plaintext, *, actor, note="", grace_seconds=None, save_anyway=False,
           expected_revision=None):
    """Rotate the secret of `credential`'s login to `plaintext`: test it against the server first (through
    services.connection_tests, the one path), then make it the current version, keeping the replaced one
    readable for `grace_seconds` (MAILKEEP_SECRET_GRACE_SECONDS unless given); log it as secret_rotation;
    record the test on the credential; announce it. Returns the new SecretVersion.

    `name` must be the secret the login needs (WrongSecret). A failed test
    refuses the rotation (RotationRefused, with the test's outcome and cause)
    unless `save_anyway`; TestsBusy when no test slot is free. A stale
    `expected_revision` raises models.StaleRevision, before the test and again
    when saving (someone may have changed it while the test ran).
    """
    needed = logins.login_for(credential.auth).secret
    if not needed.typed:
        raise WrongSecret(NOT_TYPED.format(noun=needed.noun))
    if name != needed.name:
        raise WrongSecret(f"This credential logs in with {needed.noun}; send the new {needed.noun}.")
    grace_seconds = _check_grace(grace_seconds)
    _check_revision(credential, expected_revision)
    outcome = connection_tests.test(credential.connection_values(), {name: plaintext}, credential, actor=actor)
    if outcome.busy:
        raise TestsBusy()
    if outcome.result is None or (not outcome.result.ok and not save_anyway):
        raise RotationRefused(outcome)
    tested = "tested: working" if outcome.result.ok else f"tested: failing ({outcome.result.cause.code}), saved anyway"
    with db.atomic():
        changed = change_secrets(credential, {name: plaintext}, actor=actor, note=note, grace_seconds=grace_seconds,
                                 expected_revision=expected_revision)
        version = changed.versions[0]
        audit.record("secret_rotation", credential, actor=actor,
                     details=f"{needed.noun} rotated to version {version.number}"
                             f"{_previous_words(changed.previous[name])}; {tested}")
        announce_rotation(credential, version, changed.previous[name], actor=actor)
    # The test was of exactly what is now saved: its outcome is the credential's health (the one rule).
    connection_tests.record_receipt(credential, outcome.receipt, tested_for=credential.id, actor=actor)
    _after(changed)
    return version


def restore(credential, number, *, actor, note="", grace_seconds=None, expected_revision=None):
    """Make version `number` of `credential` current again, as a new version (rollback); log it as
    secret_restore; announce it. The version it replaces stays readable for `grace_seconds` (the default unless
    given). Returns the new SecretVersion.

    Raises NoSuchVersion; NotRestorable when it is current already, set for
    another server or login, of a secret the login does not use, or
    unreadable with the configured keys; models.StaleRevision for a stale
    `expected_revision`.
    """
    grace_seconds = _check_grace(grace_seconds)
    _check_revision(credential, expected_revision)
    version = SecretVersion.get_or_none((SecretVersion.credential == credential.id) & (SecretVersion.number == number))
    if version is None:
        raise NoSuchVersion(number)
    needed = logins.login_for(credential.auth).secret
    state = next((state for state in states(credential) if state.version.id == version.id), None)
    if version.secret != needed.name:
        raise NotRestorable(f"Version {number} is a {logins.SECRETS[version.secret].noun}; this credential logs in "
                            f"with {needed.noun}.")
    if state is not None and state.state == CURRENT:
        raise NotRestorable(f"Version {number} is the current one already.")
    if version.login_digest != logins.binding(credential, version.secret):
        raise NotRestorable(f"Version {number} was set for another server or login; type the {needed.noun} "
                            "again instead.")
    try:
        plaintext = version.unseal(keys.ring(), "value")
    except UndecryptableSecret:
        raise NotRestorable(f"Version {number} cannot be read with the current keys.") from None
    with db.atomic():
        changed = change_secrets(credential, {version.secret: plaintext}, actor=actor,
                                 note=note or f"restored from version {number}", grace_seconds=grace_seconds,
                                 expected_revision=expected_revision)
        made = changed.versions[0]
        audit.record("secret_restore", credential, actor=actor,
                     details=f"{needed.noun}: version {number} restored as version {made.number}"
                             f"{_previous_words(changed.previous[version.secret])}")
        announce_rotation(credential, made, changed.previous[version.secret], actor=actor)
    _after(changed)
    return made


def _check_revision(credential, expected_revision):
    """Fail early (models.StaleRevision) when a check-and-set names a revision `credential` has moved on from;
    ``change_secrets`` checks again, atomically, when it writes."""
    if expected_revision is not None and credential.revision not in set(expected_revision):
        raise StaleRevision(credential.revision)


def _previous_words(previous):
    """What became of the replaced version, for the audit log: "; version 3 readable until ... UTC", or ""."""
    if previous is None:
        return ""
    return f"; version {previous.number} readable until {previous.readable_until:%Y-%m-%d %H:%M} UTC"


def _after(changed):
    """After the change committed: wipe the pages of forgotten versions (database.wipe_freed_pages)."""
    if changed.pruned:
        database.wipe_freed_pages()


def announce_rotation(credential, version, previous=None, *, actor=None):
    """Announce that `credential`'s current secret is now `version` (a SecretVersion), so tools that listen
    read it at once: a ``secret.rotated`` event in the notification outbox (notifications.publish), whose
    `details` this returns: {"version": n, "secret": "password" | "client_secret", "previous_version": n - 1
    or None, "previous_readable_until": ISO 8601 UTC or None}. Never a secret. `previous` is the version it
    replaced while that stays readable, else None; `actor` who changed it.

    This is the one place a rotation is announced. Called inside the change's transaction, by every change
    that keeps the credential's login (a rotation, a rollback, the change dialog and the API's secret route;
    not a save whose new secret belongs to a new login): the event is kept exactly when the change commits.
    """
    details = {
        "version": version.number, "secret": version.secret,
        "previous_version": previous.number if previous is not None else None,
        "previous_readable_until": previous.readable_until.isoformat() + "Z" if previous is not None else None,
    }
    notifications.publish(notifications.SECRET_ROTATED, credential, details=details, actor=actor)
    log.info("secret.rotated: credential %s, %s version %s", credential.id, version.secret, version.number)
    return details
