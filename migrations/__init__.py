"""Versioned schema migrations: numbered steps that bring any Mailkeep database to the current schema.

Each migration is a module ``mNNNN_<what>.py`` with ``VERSION``, ``TITLE`` and
``apply(keyring)``; the first also has ``adopt(keyring)`` for databases made
before migrations were numbered. ``upgrade`` runs the pending ones in order,
each in its own transaction under the "schema" lock (database.exclusive), and
records each in the ``schema_version`` table in that same transaction: a
migration that fails changes nothing, and two processes starting at once on
the same database run each migration once (the second waits, then finds it
done). The same migrations run on SQLite and PostgreSQL.

On SQLite, playhouse.migrate rebuilds a table for some changes (making a column
NOT NULL, dropping one), and a rebuilt table loses its triggers: a table with
migration 2's search triggers is changed with plain ``ALTER TABLE ... ADD COLUMN``.
Test against a database holding rows: the migrated-equals-fresh tests do.

This is playhouse.migrate with a version table of our own rather than
peewee-migrate: the steps are few and hand-written, each needs database-specific
parts (SQLite's FTS5, PostgreSQL's pg_trgm) that generated migrations would
not write, and peewee-migrate's own bookkeeping takes no lock.
"""

from contextlib import contextmanager

from peewee import CharField, DateTimeField, IntegerField, Model, fn

from config import ConfigurationError
from database import db, exclusive, is_sqlite

from . import (
    m0001_baseline,
    m0002_search,
    m0003_natural_order,
    m0004_list_indexes,
    m0005_token_expiry,
    m0006_watch,
    m0007_service_accounts,
    m0008_oauth_sign_in,
    m0009_oauth_app_expiry,
)

MIGRATIONS = (m0001_baseline, m0002_search, m0003_natural_order, m0004_list_indexes, m0005_token_expiry,
              m0006_watch, m0007_service_accounts, m0008_oauth_sign_in, m0009_oauth_app_expiry)
LATEST = MIGRATIONS[-1].VERSION


class SchemaVersion(Model):
    """One applied migration: its number, what it did, and when (naive UTC)."""

    version = IntegerField(primary_key=True)
    title = CharField(max_length=200)
    applied_at = DateTimeField()

    class Meta:
        database = db
        table_name = "schema_version"


def upgrade(keyring):
    """Run every migration the bound database has not had yet; return the versions applied (a list).

    `keyring` (encryption.KeyRing) must hold every key that made a secret a
    migration re-binds. Raises ConfigurationError, after rolling back the
    migration at hand, when one cannot be applied, and when the database was
    migrated by a newer Mailkeep than this one.
    """
    applied = []
    with db.connection_context():
        while (migration := _apply_next(keyring)) is not None:
            applied.append(migration.VERSION)
    return applied


def current_version():
    """The version of the bound database's schema: 0 for an empty or unversioned one."""
    with db.connection_context():
        if not SchemaVersion.table_exists():
            return 0
        return SchemaVersion.select(fn.MAX(SchemaVersion.version)).scalar() or 0


def _apply_next(keyring):
    """Apply the next pending migration in one locked transaction and return it, or None when none is."""
    from models import utcnow  # models import nothing from here; the clock is theirs

    with _foreign_keys_off(), exclusive("schema"):
        db.create_tables([SchemaVersion], safe=True)
        applied = {row.version for row in SchemaVersion.select(SchemaVersion.version)}
        version = max(applied, default=0)
        if version > LATEST:
            raise ConfigurationError(
                f"the database's schema is version {version}, made by a newer Mailkeep than this one "
                f"(which knows up to {LATEST}); run that version, or restore a backup"
            )
        # Every migration not applied yet, in order: one numbered below the latest applied is run too (a
        # database made between two branches' migrations, say 1 to 5 and 7, still gets 6).
        pending = [migration for migration in MIGRATIONS if migration.VERSION not in applied]
        if not pending:
            return None
        migration = pending[0]
        if version == 0 and "credential" in db.get_tables():
            migration.adopt(keyring)  # made before migrations were numbered
        else:
            migration.apply(keyring)
        SchemaVersion.create(version=migration.VERSION, title=migration.TITLE, applied_at=utcnow())
        return migration


@contextmanager
def _foreign_keys_off():
    """Changing a column makes SQLite rebuild the table; its documented procedure turns foreign keys off
    around that, outside the transaction (where the pragma has effect), and checks them before committing
    (each migration that rebuilds runs ``PRAGMA foreign_key_check``)."""
    if not is_sqlite():
        yield
        return
    db.pragma("foreign_keys", 0)
    try:
        yield
    finally:
        db.pragma("foreign_keys", 1)
