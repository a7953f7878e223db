"""The database handle, the models, and the queries on them (peewee).

One handle, ``db``, is bound at run time to ``MAILKEEP_DATABASE_URL`` by
``bind()``. Uniqueness that users see as case-insensitive is enforced by unique
indexes on ``*_key`` columns holding the casefolded text (SQLite's ``lower()``
folds ASCII only), and references between rows by foreign keys with
``ON DELETE RESTRICT``, so the database itself refuses what the forms refuse.
"""

import hashlib
import logging
import secrets
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
    SqliteDatabase,
    TextField,
    fn,
)
from playhouse import db_url
from werkzeug.security import check_password_hash, generate_password_hash

from probe import protocols
from encryption import UndecryptableSecret, key_id

db = DatabaseProxy()
log = logging.getLogger(__name__)

# secure_delete overwrites freed pages, so a deleted ciphertext does not linger in the file.
# busy_timeout comes first so that even switching the file to WAL waits for other connections.
SQLITE_PRAGMAS = {"busy_timeout": 5000, "foreign_keys": 1, "journal_mode": "wal", "secure_delete": 1}

SUMMARY_LENGTH = 300


def bind(url):
    """Bind ``db`` to a playhouse ``db_url`` URL (e.g. ``sqlite:////srv/mailkeep.db``); schema.upgrade then
    creates or upgrades the tables."""
    options = {"pragmas": SQLITE_PRAGMAS} if url.startswith("sqlite") else {}
    db.initialize(db_url.connect(url, **options))


def check_then_write():
    """A transaction for a check followed by a write that another request must not slip between.

    The first administrator (the user table is still empty) and the last active
    admin (not demoted or disabled) are such checks. On SQLite it is ``BEGIN
    IMMEDIATE``, which takes the write lock before the check reads, so a second
    request waits (up to the busy timeout) and then sees the first one's write.
    Other databases get a plain ``db.atomic()``.
    """
    return db.atomic("IMMEDIATE") if isinstance(db.obj, SqliteDatabase) else db.atomic()


def checkpoint():
    """Fold SQLite's write-ahead log into the database file and empty it.

    With ``secure_delete`` on, a deleted row's pages are zeroed in the file; the
    checkpoint makes sure no copy of them is left in the ``-wal`` file either. It
    waits for readers up to the busy timeout; a reader holding on longer makes it
    fail, which is logged. Other databases: nothing to do.
    """
    if not isinstance(db.obj, SqliteDatabase):
        return
    busy, _, _ = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("the write-ahead log could not be emptied while a reader held it; "
                    "deleted data stays in mailkeep.db-wal until the next checkpoint")


def fold(text):
    """The form of `text` that case-insensitive comparisons use (``str.casefold``: "Straße" gives "strasse")."""
    return text.casefold()


def utcnow():
    """The current time in UTC, naive (peewee stores naive datetimes)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    """A model on ``db``.

    ``save()`` writes only the columns that changed, so two people changing
    different fields of one row (an edit, a new password) do not undo each
    other. ``FOLDED`` pairs a text column with the ``*_key`` column that keeps
    it casefolded for case-insensitive uniqueness.
    """

    FOLDED = ()

    class Meta:
        database = db
        only_save_dirty = True

    def save(self, *args, **kwargs):
        """Refresh the ``*_key`` columns, then save (only the changed columns of an existing row)."""
        for source, key in self.FOLDED:
            setattr(self, key, fold(getattr(self, source)))
        return super().save(*args, **kwargs)

    @classmethod
    def matching(cls, key, value, exclude_id=None):
        """The row whose ``*_key`` column `key` matches `value` ignoring case, other than row `exclude_id`, or None."""
        query = cls.select().where(key == fold(value))
        if exclude_id is not None:
            query = query.where(cls.id != exclude_id)
        return query.first()


class Setting(BaseModel):
    """A named value the application keeps about the database itself (e.g. its key's fingerprint)."""

    name = CharField(primary_key=True, max_length=100)
    value = TextField()


class Group(BaseModel):
    """A named set of credentials; exactly one group is the default for new credentials."""

    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    description = TextField(default="")
    is_default = BooleanField(default=False)

    DEFAULT_NAME = "Default"
    FOLDED = (("name", "name_key"),)

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
            .order_by(cls.name_key)
        )


class Credential(BaseModel):
    """An IMAP or POP3 login: where to connect, how, as whom, and which folder to read.

    It logs in with a password or with OAuth2 client credentials. Both secrets
    (``SECRETS``) are kept only as AES-GCM ciphertexts bound to this row and
    field (see ``encryption``); ``last_test_*`` record the latest connection test.
    """

    # Random per row and part of every ciphertext's binding: a database may hand a deleted row's id to a
    # new row (SQLite does without AUTOINCREMENT), and the old ciphertext must not open the new one.
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    description = TextField()
    group = ForeignKeyField(Group, backref="credentials", on_delete="RESTRICT")
    protocol = CharField(max_length=8, default=protocols.IMAP)
    host = CharField(max_length=253)
    port = IntegerField(constraints=[Check("port BETWEEN 1 AND 65535")])
    security = CharField(max_length=16, default=protocols.IMPLICIT_TLS)
    username = CharField(max_length=320)
    username_key = CharField(max_length=320)
    password_ciphertext = TextField(null=True)
    folder = CharField(max_length=255, default="INBOX")
    auth = CharField(max_length=32, default=protocols.PASSWORD)
    client_id = CharField(max_length=255, default="")
    client_secret_ciphertext = TextField(null=True)
    token_url = CharField(max_length=2000, default="")
    scope = CharField(max_length=1000, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    last_test_at = DateTimeField(null=True)
    last_test_ok = BooleanField(null=True)
    last_test_summary = CharField(max_length=SUMMARY_LENGTH, null=True)

    EDITABLE = (
        "name", "description", "group", "protocol", "host", "port", "security", "username", "folder",
        "auth", "client_id", "token_url", "scope",
    )
    SECRETS = ("password", "client_secret")
    FOLDED = (("name", "name_key"), ("username", "username_key"))

    @property
    def security_label(self):
        """The security mode as users read it: "SSL/TLS" or "STARTTLS"."""
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
            .order_by(cls.name_key)
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

        Host (stored lowercase) and username compare case-insensitively, the
        folder exactly (it is case-sensitive on some servers).
        """
        query = cls.select().where(
            (cls.protocol == protocol)
            & (cls.host == host.lower())
            & (cls.port == port)
            & (cls.username_key == fold(username))
            & (cls.folder == folder)
        )
        if exclude_id is not None:
            query = query.where(cls.id != exclude_id)
        return query.first()

    def store(self, keyring, secrets, custom_data=(), **fields):
        """Save the ``EDITABLE`` columns, the custom data and the secrets named in `secrets`; return self.

        A new credential is inserted first, since its id binds its ciphertexts to
        it. `secrets` maps names in ``SECRETS`` to new plaintext, or to None to
        forget the stored one; secrets not named stay. `custom_data` is ordered
        (key, value) pairs. Raises peewee.IntegrityError on a duplicate name or mailbox.
        """
        for name, value in fields.items():
            setattr(self, name, value)
        with db.atomic():
            if self.id is None:
                self.save()
            for name, plaintext in secrets.items():
                if plaintext is None:
                    setattr(self, f"{name}_ciphertext", None)
                else:
                    self.set_secret(keyring, name, plaintext)
            self.save()
            self.replace_custom_data(custom_data)
        return self

    def save(self, *args, **kwargs):
        """Save with the host in lowercase (host names ignore case) and a fresh ``updated_at``."""
        self.host = self.host.lower()
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)

    @classmethod
    def keys_missing_from(cls, keyring):
        """The fingerprints (a set) of keys that made stored ciphertexts and that `keyring` lacks.

        Reads each ciphertext's key id (encryption.key_id); a malformed ciphertext
        names no key and is left to its entry's "cannot be read" notice.
        """
        columns = [getattr(cls, f"{name}_ciphertext") for name in cls.SECRETS]
        named = {key_id(token) for row in cls.select(*columns).tuples() for token in row if token}
        return named - set(keyring.fingerprints) - {None}

    def _secret_context(self, name):
        # Binding to table, row and field makes a ciphertext useless anywhere else.
        return f"credential:{self.id}:{self.uid}:{name}"

    def set_secret(self, keyring, name, plaintext):
        """Encrypt the secret `name` (one of ``SECRETS``) into this row; saved by ``save()``; needs ``self.id``."""
        setattr(self, f"{name}_ciphertext", keyring.encrypt(plaintext, self._secret_context(name)))

    def has_secret(self, name):
        """True when the secret `name` (one of ``SECRETS``) is stored."""
        return getattr(self, f"{name}_ciphertext") is not None

    @property
    def stored_secrets(self):
        """The names of the secrets this credential has stored."""
        return [name for name in self.SECRETS if self.has_secret(name)]

    def secret(self, keyring, name):
        """Return the stored secret `name` (one of ``SECRETS``), or "" when none is stored.

        Raises encryption.UndecryptableSecret when the stored one cannot be read.
        """
        ciphertext = getattr(self, f"{name}_ciphertext")
        return "" if ciphertext is None else keyring.decrypt(ciphertext, self._secret_context(name))

    def unreadable_secrets(self, keyring):
        """The names of stored secrets `keyring` cannot decrypt (another key, altered, or copied from
        another row); the secrets themselves are not kept."""
        unreadable = []
        for name in self.stored_secrets:
            try:
                self.secret(keyring, name)
            except UndecryptableSecret:
                unreadable.append(name)
        return unreadable

    def reencrypt(self, keyring, sealed_for=None):
        """Re-encrypt the stored secrets that the active key did not make; return (re-encrypted, unreadable)
        counts. Saves only the ciphertext columns (not ``updated_at``: nothing a user set changed).

        `sealed_for` (secret name -> associated data), when given, is the binding the
        stored ciphertexts were made with instead of this row's; then every readable
        secret is re-encrypted, so it ends bound to this row as it is now.
        """
        done = unreadable = 0
        for name in self.stored_secrets:
            column = f"{name}_ciphertext"
            token = getattr(self, column)
            if sealed_for is None and keyring.is_current(token):
                continue
            try:
                plaintext = keyring.decrypt(token, (sealed_for or self._secret_context)(name))
            except UndecryptableSecret:
                unreadable += 1
                continue
            self.set_secret(keyring, name, plaintext)
            Credential.update({getattr(Credential, column): getattr(self, column)}).where(
                Credential.id == self.id).execute()
            done += 1
        return done, unreadable

    @property
    def login_secret(self):
        """The name of the secret this credential logs in with: "password" or "client_secret"."""
        return "client_secret" if self.auth == protocols.OAUTH2 else "password"

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


Credential.add_index(
    Credential.index(
        Credential.protocol, Credential.host, Credential.port, Credential.username_key, Credential.folder,
        unique=True, name="credential_mailbox",
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
    address_key = CharField(max_length=320, unique=True)
    credential = ForeignKeyField(Credential, backref="aliases", on_delete="RESTRICT")
    workspace = CharField(max_length=100, default="")
    project_type = CharField(max_length=100, default="")
    client = CharField(max_length=100, default="")
    description = TextField(default="")

    FOLDED = (("address", "address_key"),)

    @classmethod
    def ordered(cls):
        """All aliases by address, with their credential."""
        return cls.select(cls, Credential).join(Credential).order_by(cls.address_key)


ROLES = ("viewer", "editor", "admin")


class User(BaseModel):
    """A person who signs in. `role` is one of ``ROLES``; each may do what the one before may, and more:
    a viewer reads the lists, an editor changes entries and runs tests, an admin also manages users.

    Carries the four attributes Flask-Login asks of a user object.
    """

    username = CharField(max_length=100)
    username_key = CharField(max_length=100, unique=True)
    password_hash = CharField(max_length=255)
    role = CharField(max_length=16, default="viewer")
    active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    # Part of the id in every session cookie: raising it ends the user's sessions everywhere, even a
    # copied cookie (signing out, being disabled).
    session_epoch = IntegerField(default=0)

    FOLDED = (("username", "username_key"),)
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self):
        return self.active

    def get_id(self):
        return f"{self.id}:{self.session_epoch}"

    def end_sessions(self):
        """End every session of this user, at once: the stored epoch is raised in SQL, so a concurrent
        sign-out or sign-in cannot write an older value back."""
        User.update(session_epoch=User.session_epoch + 1).where(User.id == self.id).execute()

    @classmethod
    def add(cls, username, password, role):
        """Create an active user with `role` (one of ``ROLES``); return it."""
        user = cls(username=username, role=role)
        user.set_password(password)
        user.save()
        return user

    def set_password(self, password):
        """Keep only a salted hash of `password` (Werkzeug's default, scrypt)."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    def may(self, role):
        """True when this user's role includes `role` (one of ``ROLES``)."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @classmethod
    def active_admins(cls):
        return cls.select().where((cls.role == "admin") & (cls.active == True))  # noqa: E712 (peewee expression)

    def is_last_active_admin(self):
        """True when this user, as stored now, is the only active admin (to be kept so: see check_then_write)."""
        stored = User.get_by_id(self.id)
        return stored.role == "admin" and stored.active and User.active_admins().count() == 1


class ApiToken(BaseModel):
    """A personal API token, sent as ``Authorization: Bearer <token>``; it acts with its user's role.

    Only the SHA-256 of the token is kept (it is 32 random bytes, so a plain
    hash suffices); the token itself is shown once, when it is made.
    """

    user = ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)

    PREFIX = "mkp_"

    @staticmethod
    def _digest(token):
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name):
        """Make a token for `user`; return (the ApiToken row, the token text, never stored)."""
        token = cls.PREFIX + secrets.token_urlsafe(32)
        return cls.create(user=user, name=name, digest=cls._digest(token)), token

    @classmethod
    def holder(cls, token):
        """The active user a token text belongs to, or None; notes when the token was last used."""
        row = cls.select(cls, User).join(User).where(cls.digest == cls._digest(token)).first()
        if row is None or not row.user.active:
            return None
        cls.update(last_used_at=utcnow()).where(cls.id == row.id).execute()
        return row.user


class AuditEvent(BaseModel):
    """One thing that happened: who (`actor`, a username, "" when nobody was signed in), when, what
    (`action`), to which entry (type, id, name), how it ended (`outcome`: "ok", "refused", "failed" or a
    connection test's cause code) and `details` in words. Never a secret."""

    at = DateTimeField(default=utcnow, index=True)
    actor = CharField(max_length=100, default="", index=True)
    action = CharField(max_length=40, index=True)
    entry_type = CharField(max_length=20, default="")
    entry_id = IntegerField(null=True)
    entry_name = CharField(max_length=320, default="")
    outcome = CharField(max_length=60, default="ok")
    details = TextField(default="")

    @classmethod
    def search(cls, actor="", entry="", action="", since=None, until=None):
        """Events, newest first, filtered by actor (exact), entry name (part of it), action and a date range."""
        query = cls.select().order_by(cls.at.desc(), cls.id.desc())
        if actor:
            query = query.where(cls.actor == actor)
        if entry:
            query = query.where(cls.entry_name.contains(entry))
        if action:
            query = query.where(cls.action == action)
        if since:
            query = query.where(cls.at >= since)
        if until:
            query = query.where(cls.at < until)
        return query
