"""Saving and deleting credentials, aliases and groups, each with its audit event in the same transaction."""

from peewee import IntegrityError

import audit
import database
import keys
from database import db
from logins import SECRETS
from services import versions


class StillInUse(Exception):
    """Something still needs the entry, so it was not deleted (the database's RESTRICT foreign key, or
    the default group's role). `references` is what needs it (a list of rows, or a count); `why` in words."""

    def __init__(self, references, why):
        super().__init__(why)
        self.references = references
        self.why = why


def save_credential(credential, values, secret_changes, custom_data, *, actor, expected_revision=None):
    """Store `values` (Credential.EDITABLE names), `secret_changes` (logins.LoginSecrets.changes) and
    `custom_data` ((key, value) pairs) into `credential` (a new Credential() to add one); log it. A new secret
    becomes a new version (services.versions.change_secrets, the one way secrets change).

    Returns the credential. Raises peewee.IntegrityError when another entry
    took the name or mailbox meanwhile, and models.StaleRevision when
    `expected_revision` (revision numbers, from If-Match) is not the
    credential's revision any more.
    """
    action = "update" if credential.id else "create"
    with db.atomic():
        if expected_revision is not None and credential.id:
            credential.claim_revision(expected_revision)
        credential.store(keys.ring(), values, {}, custom_data)
        if secret_changes:
            versions.change_secrets(credential, secret_changes, actor=actor)
        audit.record(action, credential, actor=actor, details=_secret_note(secret_changes))
    return credential


def _secret_note(changes):
    """What a save did to the secrets, in words for the audit log (never the secrets)."""
    return "; ".join(
        f"{SECRETS[name].noun} {'forgotten (its login changed)' if text is None else 'set'}"
        for name, text in changes.items()
    )


def change_secret(credential, name, plaintext, *, actor, expected_revision=None):
    """Replace the stored secret `name` of `credential` with `plaintext` as a new version, and log it (never
    the secret); see services.versions.change_secret."""
    return versions.change_secret(credential, name, plaintext, actor=actor, expected_revision=expected_revision)


def save_entry(entry, values, *, actor):
    """Set `values` ({field name: value}) on an alias or group, new or not, save it and log it; return it.

    Raises peewee.IntegrityError when another entry took the address or name meanwhile.
    """
    action = "update" if entry.id else "create"
    with db.atomic():
        for name, value in values.items():
            setattr(entry, name, value)
        entry.save()
        audit.record(action, entry, actor=actor)
    return entry


def delete_entry(entry, *, actor):
    """Delete a credential, alias or group and log it; then wipe the freed pages (database.wipe_freed_pages).

    Raises StillInUse, after logging the refusal, when something still needs
    the entry (``entry.blockers()``), before or while deleting.
    """
    blockers = entry.blockers()
    if blockers is None:
        try:
            with db.atomic():
                audit.record("delete", entry, actor=actor)
                entry.delete_instance()
        except IntegrityError:  # something came to need it meanwhile; the database refused
            blockers = entry.blockers() or ([], "something came to need it meanwhile")
    if blockers is not None:
        references, why = blockers
        with db.atomic():
            audit.record("delete", entry, actor=actor, outcome="refused", details=why)
        raise StillInUse(references, why)
    database.wipe_freed_pages()
