"""Key bookkeeping: where the encryption keys come from, the check at start, and rotation.

The keys are ``MAILKEEP_ENCRYPTION_KEYS`` or, when that is not set, the file
``encryption_keys`` in the instance folder, generated on the very first start
only. The database remembers the fingerprint of the key that encrypts it: a
later start whose keys lack it stops with a message naming the missing key
(never by making a new key the old secrets do not open), and ``rotate`` moves
every secret to the first key and records the new fingerprint.
"""

import logging
from pathlib import Path

from flask import current_app

import audit
import encryption
from config import ConfigurationError, read_or_create
from database import db
from models import SEALED_MODELS, Setting

ENCRYPTION_KEYS_FILE = "encryption_keys"
FINGERPRINT_SETTING = "encryption_key_fingerprint"

log = logging.getLogger(__name__)


def load(app):
    """The application's key ring (encryption.KeyRing), from the configuration or the instance folder.

    Needs the database bound. Generates the key file only when neither exists
    nor the database records a key, and then says once where it is. Raises
    ConfigurationError for a malformed key, or for a missing key file when the
    database records the key its secrets were encrypted with.
    """
    text = app.config.get("ENCRYPTION_KEYS")
    if not text:
        path = Path(app.instance_path) / ENCRYPTION_KEYS_FILE
        if not path.exists() and (recorded := recorded_fingerprint()) is not None:
            # Never a new key here: it would open none of the secrets, and hide which key is missing.
            raise ConfigurationError(f"the key file {path} is missing; {missing_keys_error({recorded})}")
        text = read_or_create(path, encryption.generate_key, announce=(
            "Generated the encryption key {path}. Back it up now, somewhere else than the database backup: "
            "without it nobody can read the stored secrets."
        ))
    try:
        return encryption.KeyRing(encryption.parse_keys(str(text)))
    except encryption.InvalidKeyError as error:
        raise ConfigurationError(f"MAILKEEP_ENCRYPTION_KEYS: {error}") from None


def recorded_fingerprint():
    """The fingerprint of the key the database was last encrypted with, or None (a new database)."""
    with db.connection_context():
        return Setting.read(FINGERPRINT_SETTING) if Setting.table_exists() else None


def check(keyring):
    """Make sure `keyring` holds the key the bound database was last encrypted with.

    The first start records the active key's fingerprint, and ``rotate`` the
    new one. A later start with a key ring that lacks it (a lost key file
    replaced by a new one, instances configured with different keys) raises
    ConfigurationError. Secrets made with another missing key (an old key
    dropped before ``rotate`` ran) are logged as a warning: their entries say
    they cannot be read, and adding the key back brings them back.
    """
    with db.connection_context():
        recorded = Setting.read(FINGERPRINT_SETTING)
        if recorded is not None and recorded not in keyring.fingerprints:
            raise missing_keys_error({recorded})
        if recorded is None:
            Setting.write(FINGERPRINT_SETTING, keyring.active_fingerprint)
        if missing := missing_from(keyring):
            log.warning("some stored secrets were encrypted with the key(s) %s, which are not configured; "
                        "they cannot be read until the key is added back (or the secret is set again)",
                        ", ".join(sorted(missing)))


def missing_from(keyring):
    """The fingerprints (a set) of keys that made stored secrets, in any table, and that `keyring` lacks."""
    return set().union(*(model.keys_missing_from(keyring) for model in SEALED_MODELS))


def missing_keys_error(fingerprints):
    """The ConfigurationError for stored secrets whose keys (a set of fingerprints) the key ring lacks."""
    return ConfigurationError(
        f"the database's secrets are encrypted with the key(s) {', '.join(sorted(fingerprints))}, which are not "
        "among the configured encryption keys (MAILKEEP_ENCRYPTION_KEYS or instance/encryption_keys). Restore "
        "them from your backup; every instance sharing this database needs them."
    )


def rotate(keyring, actor, dry_run=False):
    """Re-encrypt every stored secret with the active (first) key of `keyring`, in one transaction.

    Records the new fingerprint and an audit event by `actor`. With `dry_run`
    everything is rolled back. Returns (re-encrypted, unreadable) counts;
    unreadable secrets stay as they are.
    """
    with db.atomic() as transaction:
        counts = [row.reseal(keyring) for model in SEALED_MODELS for row in model.select()]
        done, unreadable = sum(count[0] for count in counts), sum(count[1] for count in counts)
        Setting.write(FINGERPRINT_SETTING, keyring.active_fingerprint)
        audit.record("key_rotation", actor=actor, outcome="ok" if not unreadable else "failed",
                     details=f"{done} secrets re-encrypted, {unreadable} unreadable{' (dry run)' if dry_run else ''}")
        if dry_run:
            transaction.rollback()
    return done, unreadable


def ring():
    """The running application's key ring (built by ``load`` at start)."""
    return current_app.extensions["mailkeep.keyring"]
