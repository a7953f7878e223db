"""The database handle, the models, and the queries on them (peewee).

One handle, ``db``, is bound at run time to ``MAILKEEP_DATABASE_URL`` by
``bind()``. Uniqueness that users see as case-insensitive is enforced by
indexes on ``lower(...)``, and references between rows by foreign keys with
``ON DELETE RESTRICT``, so the database itself refuses what the forms refuse.
"""

from datetime import datetime, timezone

from peewee import (
    JOIN,
    BooleanField,
    CharField,
    Check,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    fn,
)
from playhouse import db_url

import protocols

db = DatabaseProxy()

# secure_delete overwrites freed pages, so a deleted ciphertext does not linger in the file.
SQLITE_PRAGMAS = {"foreign_keys": 1, "journal_mode": "wal", "secure_delete": 1, "busy_timeout": 5000}

SUMMARY_LENGTH = 300


def bind(url):
    """Bind ``db`` to a playhouse ``db_url`` URL (e.g. ``sqlite:////srv/mailkeep.db``) and create missing tables."""
    options = {"pragmas": SQLITE_PRAGMAS} if url.startswith("sqlite") else {}
    db.initialize(db_url.connect(url, **options))
    with db.connection_context():
        db.create_tables([Group, Credential, CustomDataItem, Alias], safe=True)
        Group.default()


def utcnow():
    """The current time in UTC, naive (peewee stores naive datetimes)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = db

    @classmethod
    def matching(cls, field, value, exclude_id=None):
        """The row whose `field` equals `value` ignoring case, other than row `exclude_id`, or None."""
        query = cls.select().where(fn.lower(field) == value.lower())
        if exclude_id is not None:
            query = query.where(cls.id != exclude_id)
        return query.first()


class Group(BaseModel):
    """A named set of credentials; exactly one group is the default for new credentials."""

    name = CharField(max_length=100)
    description = TextField(default="")
    is_default = BooleanField(default=False)

    DEFAULT_NAME = "Default"

    @classmethod
    def default(cls):
        """Return the default group, creating it on first use."""
        group = cls.get_or_none(cls.is_default == True)  # noqa: E712 (peewee expression)
        return group or cls.create(name=cls.DEFAULT_NAME, is_default=True)

    @classmethod
    def ordered(cls):
        """All groups by name, each with ``credential_count``."""
        return (
            cls.select(cls, fn.COUNT(Credential.id).alias("credential_count"))
            .join(Credential, JOIN.LEFT_OUTER)
            .group_by(cls)
            .order_by(fn.lower(cls.name))
        )



Group.add_index(Group.index(fn.lower(Group.name), unique=True, name="group_name_ci"))


class Credential(BaseModel):
    """An IMAP or POP3 login: where to connect, how, as whom, and which folder to read.

    The password is kept only as an AES-GCM ciphertext bound to this row (see
    ``encryption``); ``last_test_*`` record the latest connection test.
    """

    name = CharField(max_length=100)
    description = TextField()
    group = ForeignKeyField(Group, backref="credentials", on_delete="RESTRICT")
    protocol = CharField(max_length=8, default=protocols.IMAP)
    host = CharField(max_length=253)
    port = IntegerField(constraints=[Check("port BETWEEN 1 AND 65535")])
    security = CharField(max_length=16, default=protocols.IMPLICIT_TLS)
    username = CharField(max_length=320)
    password_ciphertext = TextField(null=True)
    folder = CharField(max_length=255, default="INBOX")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    last_test_at = DateTimeField(null=True)
    last_test_ok = BooleanField(null=True)
    last_test_summary = CharField(max_length=SUMMARY_LENGTH, null=True)

    EDITABLE = ("name", "description", "group", "protocol", "host", "port", "security", "username", "folder")

    @property
    def security_label(self):
        return protocols.SECURITY_LABELS.get(self.security, self.security)

    @classmethod
    def search(cls, text="", group_id=None, protocol=None):
        """Credentials matching the filters, by name, each with ``alias_count``.

        `text` matches name, description, host and username case-insensitively;
        `group_id` and `protocol` match exactly when given.
        """
        query = (
            cls.select(cls, Group, fn.COUNT(Alias.id).alias("alias_count"))
            .join(Group)
            .switch(cls)
            .join(Alias, JOIN.LEFT_OUTER)
            .group_by(cls, Group)
            .order_by(fn.lower(cls.name), cls.id)
        )
        if text:
            query = query.where(
                cls.name.contains(text)
                | cls.description.contains(text)
                | cls.host.contains(text)
                | cls.username.contains(text)
            )
        if group_id:
            query = query.where(cls.group == group_id)
        if protocol:
            query = query.where(cls.protocol == protocol)
        return query

    @classmethod
    def same_mailbox(cls, protocol, host, port, username, folder, exclude_id=None):
        """The credential that already reads this mailbox, other than `exclude_id`, or None.

        Host and username compare case-insensitively, the folder exactly (it is
        case-sensitive on some servers).
        """
        query = cls.select().where(
            (cls.protocol == protocol)
            & (fn.lower(cls.host) == host.lower())
            & (cls.port == port)
            & (fn.lower(cls.username) == username.lower())
            & (cls.folder == folder)
        )
        if exclude_id is not None:
            query = query.where(cls.id != exclude_id)
        return query.first()

    @classmethod
    def add(cls, keyring, password, custom_data=(), **fields):
        """Create a credential with its encrypted password and custom data; return it.

        `fields` are the ``EDITABLE`` columns, `custom_data` ordered (key, value)
        pairs. Raises peewee.IntegrityError on a duplicate name or mailbox.
        """
        with db.atomic():
            credential = cls.create(**fields)
            credential.set_password(keyring, password)
            credential.save()
            credential.replace_custom_data(custom_data)
        return credential

    def change(self, custom_data=(), **fields):
        """Update the ``EDITABLE`` columns and the custom data; the password is untouched.

        Raises peewee.IntegrityError on a duplicate name or mailbox.
        """
        for name, value in fields.items():
            setattr(self, name, value)
        with db.atomic():
            self.save()
            self.replace_custom_data(custom_data)

    def save(self, *args, **kwargs):
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)

    def _secret_context(self, field):
        # Binding to table, row and field makes a ciphertext useless anywhere else.
        return f"credential:{self.id}:{field}"

    def set_password(self, keyring, password):
        """Encrypt `password` into this row (not saved until ``save()``); needs ``self.id``."""
        self.password_ciphertext = keyring.encrypt(password, self._secret_context("password"))

    def password(self, keyring):
        """Return the stored password, or None when none is stored.

        Raises encryption.UndecryptableSecret when the stored one cannot be read.
        """
        if self.password_ciphertext is None:
            return None
        return keyring.decrypt(self.password_ciphertext, self._secret_context("password"))

    @property
    def custom_data(self):
        """The custom data as ordered (key, value) pairs."""
        return [(item.key, item.value) for item in self.custom_data_items.order_by(CustomDataItem.position)]

    def replace_custom_data(self, pairs):
        """Replace the custom data with `pairs`, keeping their order."""
        with db.atomic():
            CustomDataItem.delete().where(CustomDataItem.credential == self).execute()
            rows = [
                {"credential": self, "position": position, "key": key, "value": value}
                for position, (key, value) in enumerate(pairs)
            ]
            if rows:
                CustomDataItem.insert_many(rows).execute()

    def record_test(self, ok, summary):
        """Store the outcome of a connection test (one line, truncated) without touching ``updated_at``."""
        self.last_test_at = utcnow()
        self.last_test_ok = ok
        self.last_test_summary = summary[:SUMMARY_LENGTH]
        Credential.update(
            last_test_at=self.last_test_at, last_test_ok=ok, last_test_summary=self.last_test_summary
        ).where(Credential.id == self.id).execute()


Credential.add_index(Credential.index(fn.lower(Credential.name), unique=True, name="credential_name_ci"))
Credential.add_index(
    Credential.index(
        Credential.protocol,
        fn.lower(Credential.host),
        Credential.port,
        fn.lower(Credential.username),
        Credential.folder,
        unique=True,
        name="credential_mailbox",
    )
)


class CustomDataItem(BaseModel):
    """One key/value pair of a credential's custom data; keys are unique per credential."""

    credential = ForeignKeyField(Credential, backref="custom_data_items", on_delete="CASCADE")
    position = IntegerField()
    key = CharField(max_length=100)
    value = TextField(default="")

    class Meta:
        indexes = ((("credential", "key"), True),)


class Alias(BaseModel):
    """An address whose mail is routed through a credential, with defaults for what it creates."""

    address = CharField(max_length=320)
    credential = ForeignKeyField(Credential, backref="aliases", on_delete="RESTRICT")
    workspace = CharField(max_length=100, default="")
    project_type = CharField(max_length=100, default="")
    client = CharField(max_length=100, default="")
    description = TextField(default="")

    @classmethod
    def ordered(cls):
        """All aliases by address, with their credential."""
        return cls.select(cls, Credential).join(Credential).order_by(fn.lower(cls.address))


Alias.add_index(Alias.index(fn.lower(Alias.address), unique=True, name="alias_address_ci"))
