"""Migration 1: the schema of Mailkeep 0.2 (credentials, custom data, groups, aliases, users, API tokens,
the audit log and settings), and the adoption of a database made before migrations were numbered.

The models below are frozen as they were at this version: later changes to
models.py come as later migrations, never as edits here. A database without a
version table was made by the first Mailkeep or by 0.2's ``create_tables``;
``adopt`` brings either to this schema: it adds the missing columns (filling
``*_key`` columns with the folded text, ``uid`` with a new random value, the
rest with their defaults), replaces the first Mailkeep's ``lower(...)``
indexes with these models' own, and binds every stored secret to its row's
new ``uid`` (the first Mailkeep sealed them for ``credential:<id>:<field>``).
"""

import secrets
from datetime import datetime, timezone

from peewee import (
    BooleanField,
    CharField,
    Check,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    IntegrityError,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator, migrate

from config import ConfigurationError
from database import db, is_sqlite
from keys import missing_keys_error
from sealing import Sealed, SecretField

VERSION = 1
TITLE = "Mailkeep 0.2: credentials, aliases, groups, users, API tokens, audit log"


def _utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _fold(text):
    return text.casefold()


class _Frozen(Model):
    FOLDED = ()

    class Meta:
        database = db


class Setting(_Frozen):
    name = CharField(primary_key=True, max_length=100)
    value = TextField()


class Group(_Frozen):
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    description = TextField(default="")
    is_default = BooleanField(default=False)
    FOLDED = (("name", "name_key"),)


class Credential(Sealed, _Frozen):
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    description = TextField()
    group = ForeignKeyField(Group, backref="credentials", on_delete="RESTRICT")
    protocol = CharField(max_length=8, default="IMAP")
    host = CharField(max_length=253)
    port = IntegerField(constraints=[Check("port BETWEEN 1 AND 65535")])
    security = CharField(max_length=16, default="ssl_tls")
    username = CharField(max_length=320)
    username_key = CharField(max_length=320)
    password_ciphertext = SecretField("password")
    folder = CharField(max_length=255, default="INBOX")
    auth = CharField(max_length=32, default="password")
    client_id = CharField(max_length=255, default="")
    client_secret_ciphertext = SecretField("client_secret")
    token_url = CharField(max_length=2000, default="")
    scope = CharField(max_length=1000, default="")
    created_at = DateTimeField(default=_utcnow)
    updated_at = DateTimeField(default=_utcnow)
    last_test_at = DateTimeField(null=True)
    last_test_ok = BooleanField(null=True)
    last_test_summary = CharField(max_length=300, null=True)
    FOLDED = (("name", "name_key"), ("username", "username_key"))


# One credential per mailbox, under the index name 0.2 gave it.
Credential.add_index(Credential.index(
    Credential.protocol, Credential.host, Credential.port, Credential.username_key, Credential.folder,
    unique=True, name="credential_mailbox",
))


class CustomDataItem(_Frozen):
    credential = ForeignKeyField(Credential, backref="custom_data_items", on_delete="CASCADE")
    position = IntegerField()
    key = CharField(max_length=100)
    value = TextField(default="")

    class Meta:
        indexes = ((("credential", "key"), True),)


class Alias(_Frozen):
    address = CharField(max_length=320)
    address_key = CharField(max_length=320, unique=True)
    credential = ForeignKeyField(Credential, backref="aliases", on_delete="RESTRICT")
    workspace = CharField(max_length=100, default="")
    project_type = CharField(max_length=100, default="")
    client = CharField(max_length=100, default="")
    description = TextField(default="")
    FOLDED = (("address", "address_key"),)


class User(_Frozen):
    username = CharField(max_length=100)
    username_key = CharField(max_length=100, unique=True)
    password_hash = CharField(max_length=255)
    role = CharField(max_length=16, default="viewer")
    active = BooleanField(default=True)
    created_at = DateTimeField(default=_utcnow)
    session_epoch = IntegerField(default=0)
    FOLDED = (("username", "username_key"),)


class ApiToken(_Frozen):
    user = ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=_utcnow)
    last_used_at = DateTimeField(null=True)


class AuditEvent(_Frozen):
    at = DateTimeField(default=_utcnow, index=True)
    actor = CharField(max_length=100, default="", index=True)
    action = CharField(max_length=40, index=True)
    entry_type = CharField(max_length=20, default="")
    entry_id = IntegerField(null=True)
    entry_name = CharField(max_length=320, default="")
    outcome = CharField(max_length=60, default="ok")
    details = TextField(default="")


MODELS = (Setting, Group, Credential, CustomDataItem, Alias, User, ApiToken, AuditEvent)


def apply(keyring):
    """Create the tables of a new database, and its default group."""
    db.create_tables(MODELS)
    _default_group()


def adopt(keyring):
    """Bring a database made before migrations were numbered (the first Mailkeep, or 0.2) to this schema.

    Raises ConfigurationError, changing nothing (the caller's transaction rolls
    back), when a secret to re-bind was made with a key `keyring` lacks, or
    when a unique column cannot be filled (two names that ``lower()`` told
    apart but casefolding does not).
    """
    missing = {model: _missing_fields(model) for model in MODELS if model.table_exists()}
    missing = {model: fields for model, fields in missing.items() if fields}
    for model, fields in missing.items():
        _add_columns(model, fields)
    if "uid" in {field.name for field in missing.get(Credential, ())}:
        _rebind_secrets(keyring)
    _check_references()
    db.create_tables(MODELS, safe=True)
    _default_group()


def _default_group():
    if not Group.select().where(Group.is_default == True).exists():  # noqa: E712 (peewee expression)
        Group.create(name="Default", name_key="default", is_default=True)


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
                values[field] = _fold(getattr(row, folded[field.name]))
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


def _check_references():
    if is_sqlite() and (broken := db.execute_sql("PRAGMA foreign_key_check").fetchall()):
        raise ConfigurationError(f"upgrading the database would break references, nothing was changed: {broken[:5]}")
