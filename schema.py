"""Bring the bound database to the current models: create what is missing, upgrade what an older Mailkeep made.

The first Mailkeep kept case-insensitive uniqueness in indexes on ``lower(...)``,
had no OAuth2 columns, and bound each ciphertext to ``credential:<id>:<field>``.
An upgrade adds the missing columns (filling ``*_key`` columns with the folded
text, ``uid`` with a new random value, the rest with their defaults), replaces
the ``lower(...)`` indexes with the models' own, and binds every stored secret
to its row's new ``uid``. It all happens in one transaction (playhouse.migrate,
SQLite's table-rebuild procedure with foreign keys off), so an upgrade that
fails changes nothing.
"""

from contextlib import contextmanager

from peewee import IntegrityError
from playhouse.migrate import SchemaMigrator, migrate

from config import ConfigurationError
from database import db, exclusive, is_sqlite
from keys import missing_keys_error
from models import (
    Alias,
    ApiToken,
    AuditEvent,
    Credential,
    CustomDataItem,
    Group,
    Setting,
    User,
    fold,
)

MODELS = (Setting, Group, Credential, CustomDataItem, Alias, User, ApiToken, AuditEvent)


def upgrade(keyring):
    """Create missing tables and columns and the default group; rebind secrets made before ``uid`` existed.

    `keyring` (encryption.KeyRing) must hold every key that made a secret to be
    rebound; otherwise ConfigurationError is raised and nothing changes. So is
    it when an added column cannot be filled (two names that ``lower()`` told
    apart but casefolding does not).
    """
    # Write-locked from the first look at the schema, so a second process starting at the same time waits
    # and then finds the work done.
    with db.connection_context(), _foreign_keys_off(), exclusive():
        missing = {model: _missing_fields(model) for model in MODELS if model.table_exists()}
        missing = {model: fields for model, fields in missing.items() if fields}
        if missing:
            for model, fields in missing.items():
                _add_columns(model, fields)
            if "uid" in {field.name for field in missing.get(Credential, ())}:
                _rebind_secrets(keyring)
            _check_references()
        db.create_tables(MODELS, safe=True)
        Group.default()


def _missing_fields(model):
    present = {column.name for column in db.get_columns(model._meta.table_name)}
    return [field for field in model._meta.sorted_fields if field.column_name not in present]


def _add_columns(model, fields):
    """Add `fields` to `model`'s table, fill them row by row, then make them NOT NULL as the model says."""
    table = model._meta.table_name
    migrator = SchemaMigrator.from_database(db)
    # Indexes on lower(...) are the first Mailkeep's; create_tables makes the models' own afterwards.
    legacy_indexes = [index.name for index in db.get_indexes(table) if "lower(" in (index.sql or "").lower()]
    migrate(*(migrator.drop_index(table, name) for name in legacy_indexes))
    for field in fields:
        nullable = field.clone()
        nullable.null, nullable.unique, nullable.index = True, False, False
        migrate(migrator.add_column(table, field.column_name, nullable))
    folded = {key: source for source, key in model.FOLDED}
    for row in model.select():
        values = {}
        for field in fields:
            if field.name in folded:
                values[field] = fold(getattr(row, folded[field.name]))
            elif field.default is not None:
                values[field] = field.default() if callable(field.default) else field.default
        model.update(values).where(model._meta.primary_key == row._pk).execute()
    migrate(*(migrator.add_not_null(table, field.column_name) for field in fields if not field.null))
    try:
        db.create_tables([model], safe=True)  # the unique indexes: a clash of folded names shows here
    except IntegrityError as error:
        raise ConfigurationError(
            f"upgrading the table {table} failed, nothing was changed: {error}. The earlier Mailkeep compared "
            "those columns ignoring case in ASCII letters only; now every letter counts (e.g. 'Müller' and "
            "'MÜLLER', 'Straße' and 'STRASSE' are the same), and two rows differ only that way. Change one, "
            "then start again."
        ) from error


def _rebind_secrets(keyring):
    """Bind each secret sealed for ``credential:<id>:<field>`` to its row's new ``uid`` (sealing.Sealed.reseal)."""
    if missing := Credential.keys_missing_from(keyring):
        raise missing_keys_error(missing)
    for credential in Credential.select():
        # A secret unreadable before the upgrade stays so, and its page says so.
        credential.reseal(keyring, sealed_for=lambda name, row_id=credential.id: f"credential:{row_id}:{name}")


@contextmanager
def _foreign_keys_off():
    """Changing a column makes SQLite rebuild the table; its documented procedure turns foreign keys off
    around that, outside the transaction (where the pragma has effect), and checks them before committing."""
    if not is_sqlite():
        yield
        return
    db.pragma("foreign_keys", 0)
    try:
        yield
    finally:
        db.pragma("foreign_keys", 1)


def _check_references():
    if is_sqlite() and (broken := db.execute_sql("PRAGMA foreign_key_check").fetchall()):
        raise ConfigurationError(f"upgrading the database would break references, nothing was changed: {broken[:5]}")
