"""What the pages, the JSON API and the command line share: the key ring; connection tests run with
the application's settings, their outcome recorded on the credential and in the audit log; saving and
deleting entries, each with its audit event in the same transaction."""

from flask import current_app

from peewee import IntegrityError

import audit
import models
import probe
from encryption import UndecryptableSecret
from forms import ConnectionForm, field_values
from models import Alias, Credential, Group, db

TOO_MANY_TESTS = "Too many connection tests are running; try again in a few seconds."
UNREADABLE_SECRET = "This secret cannot be read with the current keys; set it again."


def keyring():
    """The application's ``encryption.KeyRing``."""
    return current_app.extensions["mailkeep.keyring"]


def run_connection_test(settings):
    """Run a connection test with the app's deadline, CA file, concurrency slots and outbound policy;
    return the probe.Result. Raises probe.Busy when all slots are taken.
    """
    return probe.run(
        settings,
        deadline=current_app.config["CONNECTION_TEST_DEADLINE"],
        ca_file=current_app.config["CA_FILE"],
        slots=current_app.extensions["mailkeep.test_slots"],
        policy=current_app.extensions["mailkeep.policy"],
    )


def test_saved_credential(credential):
    """Test a saved credential with its stored secret; record the outcome on it and in the audit log.

    Returns the probe.Result, or None when the secret could not be decrypted
    (recorded as the outcome instead). Raises probe.Busy when all slots are taken.
    """
    try:
        secret = credential.secret(keyring(), credential.login_secret)
    except UndecryptableSecret:
        with db.atomic():
            credential.record_test(False, UNREADABLE_SECRET)
            audit.record("connection_test", credential, outcome="failed", details=UNREADABLE_SECRET)
        return None
    settings = probe.Settings(
        **{credential.login_secret: secret}, **field_values(credential, ConnectionForm.CONNECTION_FIELDS)
    )
    result = run_connection_test(settings)
    with db.atomic():
        credential.record_test(result.ok, result.summary)
        audit_connection_test(result, credential, "saved settings")
    return result


def audit_connection_test(result, credential, what):
    """Log a connection test: its outcome ("ok" or the cause code), what was tested, where, and the summary."""
    settings = result.settings
    audit.record(
        "connection_test", credential, outcome=result.cause.code if result.cause else "ok",
        details=f"{what}: {settings.protocol} {settings.host}:{settings.port} as {settings.username}. {result.summary}",
    )


class StillInUse(Exception):
    """The database refused a delete (``ON DELETE RESTRICT``), or it would remove the default group.

    `references` is what still needs the entry: a credential's aliases, or a
    group's credential count (0 for the default group, needed for what it is).
    """

    def __init__(self, entry, references):
        super().__init__(f"{audit.describe(entry)[2]} is still in use")
        self.entry = entry
        self.references = references


def save_credential(form, credential=None):
    """Store a validated CredentialForm into `credential` (a new one when None) and log it; return it.

    Raises peewee.IntegrityError when another entry took the name or mailbox meanwhile.
    """
    action = "update" if credential else "create"
    secrets = form.secret_changes()
    with db.atomic():
        credential = (credential or Credential()).store(
            keyring(), secrets, form.custom_data_pairs(), **field_values(form, Credential.EDITABLE)
        )
        audit.record(action, credential, details=_secret_note(secrets))
    return credential


def _secret_note(secrets):
    """What a save did to the secrets, in words for the audit log (never the secrets)."""
    return "; ".join(
        f"{name.replace('_', ' ')} {'forgotten (its login changed)' if value is None else 'set'}"
        for name, value in secrets.items()
    )


def save_entry(form, entry):
    """Store a validated AliasForm or GroupForm (its ``FIELDS``) into `entry`, new or not, and log it.

    Raises peewee.IntegrityError when another entry took the address or name meanwhile.
    """
    action = "update" if entry.id else "create"
    with db.atomic():
        for name, value in field_values(form, form.FIELDS).items():
            setattr(entry, name, value)
        entry.save()
        audit.record(action, entry)
    return entry


def delete_entry(entry):
    """Delete a credential, alias or group and log it; then clear the freed pages out of SQLite's WAL.

    Raises StillInUse (after logging the refusal) when something still needs the entry.
    """
    if isinstance(entry, Group) and entry.is_default:
        _refuse_delete(entry, 0, "the default group")
    try:
        with db.atomic():
            audit.record("delete", entry)
            entry.delete_instance()
    except IntegrityError:
        if isinstance(entry, Credential):
            aliases = list(entry.aliases.order_by(Alias.address_key))
            _refuse_delete(entry, aliases, "used by " + ", ".join(alias.address for alias in aliases))
        _refuse_delete(entry, entry.credentials.count(), "it holds credentials")
    models.checkpoint()


def _refuse_delete(entry, references, why):
    with db.atomic():
        audit.record("delete", entry, outcome="refused", details=why)
    raise StillInUse(entry, references)
