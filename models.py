"""The models and the queries on them (peewee), on the handle ``database.db``.

Uniqueness that users see as case-insensitive is enforced by unique indexes on
``*_key`` columns holding the casefolded text (SQLite's ``lower()`` folds ASCII
only), and references between rows by foreign keys with ``ON DELETE RESTRICT``,
so the database itself refuses what the forms refuse. Each model says how the
audit log names a row of it (``AUDIT_TYPE``, ``audit_name``) and what still
needs a row before it may be deleted (``blockers``).
"""

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

from peewee import (
    JOIN,
    SQL,
    BooleanField,
    CharField,
    Check,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    fn,
)
from werkzeug.security import check_password_hash, generate_password_hash

import identity_providers
import logins
from database import db, is_sqlite, upsert
from sealing import Sealed, SecretField

from probe import protocols

SUMMARY_LENGTH = 300


# Runs of decimal digits, which sortable pads so that they sort as numbers.
DIGITS = re.compile(r"\d+")
SORT_DIGITS = 20


def fold(text):
    """The form of `text` that case-insensitive comparisons use (``str.casefold``: "Straße" gives "strasse")."""
    return text.casefold()


def sortable(text):
    """`text` in the form that sorts the way people expect, as plain text: casefolded, each run of digits
    padded with zeros to SORT_DIGITS places ("Team 2" before "Team 10"). The ``*_sort`` columns hold it."""
    return DIGITS.sub(lambda digits: digits.group().zfill(SORT_DIGITS), fold(text))


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
    # (column, ``*_sort`` column): the second keeps the first in sortable form, for natural order (migration 3).
    SORTED = ()
    # The columns whose casefolded text, joined by spaces, ``search_text`` keeps for search (migration 2).
    SEARCHED = ()
    AUDIT_TYPE = ""

    class Meta:
        database = db
        only_save_dirty = True

    @property
    def audit_name(self):
        """How the audit log names this row."""
        return getattr(self, "name", "")

    def blockers(self):
        """What still needs this row, so it may not be deleted: (references, why in words), or None.

        `references` is what a refusal shows (a list of rows, or a count).
        """
        return None

    def save(self, *args, **kwargs):
        """Refresh the ``*_key`` and ``search_text`` columns, then save (only the changed columns of an
        existing row)."""
        for source, key in self.FOLDED:
            setattr(self, key, fold(getattr(self, source)))
        for source, key in self.SORTED:
            setattr(self, key, sortable(getattr(self, source)))
        if self.SEARCHED:
            self.search_text = fold(" ".join(getattr(self, name) or "" for name in self.SEARCHED))
        return super().save(*args, **kwargs)

    @classmethod
    def containing(cls, text):
        """A condition: the row's searched columns contain `text`, ignoring case (a substring search).

        Uses the search index migration 2 made: SQLite's FTS5 trigram table
        (a quoted phrase of three or more characters matches substrings), or
        PostgreSQL's pg_trgm GIN index (LIKE with the wildcards escaped).
        Shorter text on SQLite is matched by a scan.
        """
        folded = fold(text)
        if not is_sqlite():
            escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return cls.search_text % f"%{escaped}%"  # LIKE; PostgreSQL's LIKE escapes with a backslash
        if len(folded) < 3:
            return fn.instr(cls.search_text, folded) > 0
        index = f"{cls._meta.table_name}_search"
        phrase = '"' + folded.replace('"', '""') + '"'
        return cls.id.in_(SQL(f'(SELECT rowid FROM "{index}" WHERE "{index}" MATCH ?)', [phrase]))

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

    @classmethod
    def read(cls, name):
        """The value of the setting `name`, or None."""
        row = cls.get_or_none(cls.name == name)
        return None if row is None else row.value

    @classmethod
    def write(cls, name, value):
        """Set the setting `name` to `value`, whether it exists or not."""
        upsert(cls, cls.name, name=name, value=value)


class Group(BaseModel):
    """A named set of credentials; exactly one group is the default for new credentials."""

    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    description = TextField(default="")
    is_default = BooleanField(default=False)

    DEFAULT_NAME = "Default"
    FOLDED = (("name", "name_key"),)
    AUDIT_TYPE = "group"

    @classmethod
    def default(cls):
        """Return the default group, creating it on first use."""
        group = cls.get_or_none(cls.is_default == True)  # noqa: E712 (peewee expression)
        return group or cls.create(name=cls.DEFAULT_NAME, is_default=True)

    @classmethod
    def by_name(cls):
        """All groups by name (for choosing one)."""
        return cls.select().order_by(cls.name_key)

    @classmethod
    def with_counts(cls):
        """All groups by name, each with ``credential_count``."""
        return (
            cls.select(cls, fn.COUNT(Credential.id).alias("credential_count"))
            .join(Credential, JOIN.LEFT_OUTER)
            .group_by(cls)
            .order_by(cls.name_key)
        )

    def blockers(self):
        """The default group is needed for what it is; another one while it holds credentials."""
        if self.is_default:
            return 0, "the default group"
        count = self.credentials.count()
        return (count, "it holds credentials") if count else None


class OAuthApp(Sealed, BaseModel):
    """An OAuth app registered with an identity provider, that people sign in with (OAuth2 sign-in).

    `kind` is one of identity_providers.KINDS: Microsoft (with a `tenant`: an
    id, a domain or "organizations"), Google, or a custom provider with its own
    `authorization_url` and `token_url` (given, or read from the OpenID Connect
    discovery document of its `issuer`) and the mail `scopes` its servers want.
    The client secret is a SecretField, write-only like every other secret;
    `client_secret_expires_on` (optional) is the day the provider stops taking
    it, and `idle_days` how long a custom provider's refresh tokens may lie
    unused (Microsoft's and Google's are known).
    """

    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    kind = CharField(max_length=16)
    tenant = CharField(max_length=255, default="")
    issuer = CharField(max_length=2000, default="")
    authorization_url = CharField(max_length=2000, default="")
    token_url = CharField(max_length=2000, default="")
    client_id = CharField(max_length=255)
    client_secret_ciphertext = SecretField("client_secret")
    scopes = CharField(max_length=1000, default="")
    client_secret_expires_on = DateField(null=True)
    idle_days = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    FOLDED = (("name", "name_key"),)
    AUDIT_TYPE = "oauth_app"
    # The days before a client secret's expiry from which the apps page warns.
    SECRET_WARNING_DAYS = 30

    @property
    def kind_label(self):
        """The provider as people read it: "Microsoft", "Google", "Custom"."""
        return identity_providers.KIND_LABELS.get(self.kind, self.kind)

    @property
    def button_label(self):
        """What the sign-in button says: "Sign in with Microsoft", or the custom app's name."""
        return f"Sign in with {self.name if self.kind == identity_providers.CUSTOM else self.kind_label}"

    @property
    def authorization_endpoint(self):
        """The URL people are sent to, to sign in and consent (RFC 6749 section 3.1)."""
        fixed = identity_providers.KINDS[self.kind].authorization_endpoint
        tenant = self.tenant or identity_providers.DEFAULT_TENANT
        return fixed.format(tenant=tenant) if fixed else self.authorization_url

    @property
    def token_endpoint(self):
        """The URL tokens come from (RFC 6749 section 3.2)."""
        fixed = identity_providers.KINDS[self.kind].token_endpoint
        tenant = self.tenant or identity_providers.DEFAULT_TENANT
        return fixed.format(tenant=tenant) if fixed else self.token_url

    def sign_in_scopes(self, protocol):
        """What a sign-in for a `protocol` mailbox asks for (identity_providers.sign_in_scopes)."""
        return identity_providers.sign_in_scopes(self.kind, protocol, self.scopes)

    def refresh_scopes(self, protocol):
        """What each refresh for a `protocol` mailbox asks for (identity_providers.refresh_scopes)."""
        return identity_providers.refresh_scopes(self.kind, protocol, self.scopes)

    @property
    def authorization_params(self):
        """The provider's own parameters of an authorization request ({name: value})."""
        return dict(identity_providers.KINDS[self.kind].authorization_params)

    @property
    def idle_limit_days(self):
        """After how many days unused this provider's refresh tokens lapse, or None when unknown."""
        return identity_providers.KINDS[self.kind].idle_days or self.idle_days

    def secret_expiry(self, today=None):
        """"expired", "soon" (within SECRET_WARNING_DAYS days) or None, for the client secret's expiry date
        as of `today` (a date; UTC's today unless given)."""
        if self.client_secret_expires_on is None:
            return None
        today = today or utcnow().date()
        if self.client_secret_expires_on <= today:
            return "expired"
        return "soon" if (self.client_secret_expires_on - today).days <= self.SECRET_WARNING_DAYS else None

    @classmethod
    def by_name(cls):
        """Every app, with how many credentials sign in with it (``credential_count``), by name."""
        return (cls.select(cls, fn.COUNT(Credential.id).alias("credential_count"))
                .join(Credential, JOIN.LEFT_OUTER, on=(Credential.oauth_app == cls.id))
                .group_by(cls).order_by(cls.name_key))

    def save(self, *args, **kwargs):
        """Save with a fresh ``updated_at``."""
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)

    def blockers(self):
        """The credentials that sign in with this app, by name, if any."""
        credentials = list(self.credentials.order_by(Credential.name_sort))
        if credentials:
            return credentials, "signed in with by " + ", ".join(credential.name for credential in credentials)
        return None


class Credential(Sealed, BaseModel):
    """An IMAP or POP3 login: where to connect, how, as whom, and which folder to read.

    It logs in with a password or with OAuth2 client credentials (which secret
    a login needs is logins.py's rule). Both secrets are ``SecretField``
    ciphertexts bound to this row (see sealing.py); ``last_test_*`` record the
    latest connection test.
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
    password_ciphertext = SecretField("password")
    folder = CharField(max_length=255, default="INBOX")
    auth = CharField(max_length=32, default=protocols.PASSWORD)
    client_id = CharField(max_length=255, default="")
    client_secret_ciphertext = SecretField("client_secret")
    token_url = CharField(max_length=2000, default="")
    scope = CharField(max_length=1000, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    last_test_at = DateTimeField(null=True)
    last_test_ok = BooleanField(null=True)
    last_test_summary = CharField(max_length=SUMMARY_LENGTH, null=True)
    search_text = TextField(default="")
    name_sort = CharField(max_length=255, default="", index=True)
    # OAuth2 sign-in (migration 8): the app signed in with, the refresh token (sealed like every secret), the
    # scopes granted, the account that signed in, when, when the refresh token was last used, and the client
    # and token endpoint origin it was issued to.
    oauth_app = ForeignKeyField(OAuthApp, null=True, backref="credentials", on_delete="RESTRICT")
    refresh_token_ciphertext = SecretField("refresh_token")
    oauth_scopes = CharField(max_length=1000, default="")
    oauth_account = CharField(max_length=320, default="")
    oauth_signed_in_at = DateTimeField(null=True)
    oauth_used_at = DateTimeField(null=True)
    # The client and the token endpoint's origin the refresh token was issued to: it is sent nowhere else.
    oauth_client_id = CharField(max_length=255, default="")
    oauth_token_origin = CharField(max_length=2000, default="")

    # What a person edits: the connection settings (the fields of a connection test), and how it is listed.
    EDITABLE = ("name", "description", "group", *logins.CONNECTION_FIELDS)
    FOLDED = (("name", "name_key"), ("username", "username_key"))
    SEARCHED = ("name", "description", "host", "username")
    SORTED = (("name", "name_sort"),)
    AUDIT_TYPE = "credential"

    @property
    def security_label(self):
        """The security mode as users read it: "SSL/TLS" or "STARTTLS"."""
        return protocols.SECURITY_LABELS.get(self.security, self.security)

    @classmethod
    def search(cls, text="", group_id=None, protocol=None, auth=None):
        """Credentials matching the filters, in natural order of their names, with their group; never their
        ciphertexts.

        `text` matches name, description, host and username case-insensitively
        (``containing``); `group_id`, `protocol` and `auth` match exactly when
        given. Each row knows which secrets are set (``has_secret``) from a
        boolean column instead. Count the aliases of the rows shown with
        ``count_aliases``.
        """
        secret_set = [field.is_null(False).alias(f"{name}_set") for name, field in cls.secret_fields().items()]
        listed = [field for field in cls._meta.sorted_fields
                  if not isinstance(field, SecretField) and field.name not in ("search_text", "name_sort")]
        query = cls.select(*listed, *secret_set, Group.id, Group.name).join(Group).order_by(cls.name_sort, cls.id)
        return query.where(*cls._filters(text, group_id, protocol, auth))

    @classmethod
    def page_of(cls, page, per_page, text="", group_id=None, protocol=None, auth=None):
        """One page (1-based `page` of `per_page` rows) of ``search`` with these filters, as a list.

        The page's ids come first, in name order, from an index holding both the
        order and what the filters read (migration 4), and only then those rows
        whole: a search matching tens of thousands reads 20 whole rows, not all.
        """
        ids = [row_id for (row_id,) in cls.select(cls.id).where(*cls._filters(text, group_id, protocol, auth))
               .order_by(cls.name_sort, cls.id).paginate(page, per_page).tuples()]
        rows = {row.id: row for row in cls.search().where(cls.id.in_(ids))} if ids else {}
        return [rows[row_id] for row_id in ids if row_id in rows]

    @classmethod
    def count_matching(cls, text="", group_id=None, protocol=None, auth=None):
        """How many credentials ``search`` finds with these filters: a plain COUNT on the filtered table."""
        return cls.select().where(*cls._filters(text, group_id, protocol, auth)).count()

    @classmethod
    def _filters(cls, text, group_id, protocol, auth):
        conditions = [cls.containing(text)] if text else []
        if group_id:
            conditions.append(cls.group == group_id)
        if protocol:
            conditions.append(cls.protocol == protocol)
        if auth:
            conditions.append(cls.auth == auth)
        return conditions or [SQL("1 = 1")]

    @staticmethod
    def count_aliases(credentials):
        """Set ``alias_count`` on each of `credentials` (a page of them), in one query; return them as a list."""
        credentials = list(credentials)
        counts = dict(
            Alias.select(Alias.credential, fn.COUNT(Alias.id))
            .where(Alias.credential.in_([credential.id for credential in credentials]))
            .group_by(Alias.credential).tuples()
        ) if credentials else {}
        for credential in credentials:
            credential.alias_count = counts.get(credential.id, 0)
        return credentials

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

    def store(self, keyring, values, secret_changes, custom_data=()):
        """Save `values` (``EDITABLE`` names), the custom data and the secret changes; return self.

        `secret_changes` maps secret names to new plaintext, or to None to forget
        the stored one (logins.LoginSecrets.changes); secrets not named stay. A
        new credential is inserted first, since its id binds its ciphertexts.
        `custom_data` is ordered (key, value) pairs. Raises peewee.IntegrityError
        on a duplicate name or mailbox.
        """
        for name, value in values.items():
            setattr(self, name, value)
        with db.atomic():
            if self.id is None:
                self.save()
            for name, plaintext in secret_changes.items():
                self.seal(keyring, name, plaintext)
            self.save()
            self.replace_custom_data(custom_data)
        return self

    def save(self, *args, **kwargs):
        """Save with the host in lowercase (host names ignore case) and a fresh ``updated_at``."""
        self.host = self.host.lower()
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)

    def connection_values(self):
        """The saved connection settings, {name: value} for ``logins.CONNECTION_FIELDS``."""
        return {name: getattr(self, name) for name in logins.CONNECTION_FIELDS}

    @property
    def custom_data(self):
        """The custom data as ordered (key, value) pairs (fetched by ``fetch_custom_data`` for a page of rows)."""
        if "_custom_data" not in self.__dict__:
            self._custom_data = [(item.key, item.value)
                                 for item in self.custom_data_items.order_by(CustomDataItem.position)]
        return self._custom_data

    @staticmethod
    def fetch_custom_data(credentials):
        """Fetch the custom data of every one of `credentials` (a page of them) in one query; return them as
        a list."""
        credentials = list(credentials)
        by_id = {credential.id: credential for credential in credentials}
        for credential in credentials:
            credential._custom_data = []
        items = (CustomDataItem.select(CustomDataItem.credential, CustomDataItem.key, CustomDataItem.value)
                 .where(CustomDataItem.credential.in_(list(by_id)))
                 .order_by(CustomDataItem.credential, CustomDataItem.position).tuples()) if by_id else ()
        for credential_id, key, value in items:
            by_id[credential_id]._custom_data.append((key, value))
        return credentials

    def replace_custom_data(self, pairs):
        """Replace the custom data with `pairs`, keeping their order."""
        self.__dict__.pop("_custom_data", None)
        with db.atomic():
            CustomDataItem.delete().where(CustomDataItem.credential == self).execute()
            rows = [
                {"credential": self, "position": position, "key": key, "value": value}
                for position, (key, value) in enumerate(pairs)
            ]
            if rows:
                CustomDataItem.insert_many(rows).execute()

    def record_test(self, ok, summary, at=None):
        """Store the outcome of a connection test (one line, truncated) run `at` (naive UTC; now unless
        given) without touching ``updated_at``."""
        self.last_test_at = at or utcnow()
        self.last_test_ok = ok
        self.last_test_summary = summary[:SUMMARY_LENGTH]
        Credential.update(
            last_test_at=self.last_test_at, last_test_ok=ok, last_test_summary=self.last_test_summary
        ).where(Credential.id == self.id).execute()

    def blockers(self):
        """The aliases that route through this credential, by address, if any."""
        aliases = list(self.aliases.order_by(Alias.address_key))
        return (aliases, "used by " + ", ".join(alias.address for alias in aliases)) if aliases else None


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
    search_text = TextField(default="")
    address_sort = CharField(max_length=400, default="", index=True)

    FOLDED = (("address", "address_key"),)
    SORTED = (("address", "address_sort"),)
    SEARCHED = ("address", "workspace", "project_type", "client", "description")
    AUDIT_TYPE = "alias"

    @property
    def audit_name(self):
        return self.address

    @classmethod
    def search(cls, text=""):
        """Aliases in natural order of their addresses, each with its credential's id and name; `text`
        matches address, workspace, project type, client and description case-insensitively (``containing``)."""
        listed = [field for field in cls._meta.sorted_fields if field.name not in ("search_text", "address_sort")]
        query = cls.select(*listed, Credential.id, Credential.name).join(Credential).order_by(cls.address_sort, cls.id)
        return query.where(cls.containing(text)) if text else query

    @classmethod
    def count_matching(cls, text=""):
        """How many aliases ``search`` finds for `text`: a plain COUNT on the filtered table."""
        return (cls.select().where(cls.containing(text)) if text else cls.select()).count()


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
    AUDIT_TYPE = "user"
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self):
        return self.active

    def get_id(self):
        return f"{self.id}:{self.session_epoch}"

    @property
    def audit_name(self):
        return self.username

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
        """True when this user, as stored now, is the only active admin (to be kept so: see database.exclusive)."""
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
    # The moment (naive UTC) it stops working, or None for a token that does not expire.
    expires_at = DateTimeField(null=True)

    PREFIX = "mkp_"
    AUDIT_TYPE = "token"
    # last_used_at is written at most this often, so reading the API does not write to the database each time.
    USE_RESOLUTION = timedelta(minutes=1)

    @staticmethod
    def _digest(token):
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def audit_name(self):
        return f"{self.name} ({self.user.username})"

    @classmethod
    def issue(cls, user, name, expires_at=None):
        """Make a token for `user` that works until `expires_at` (a naive UTC datetime; None: no end); return
        (the ApiToken row, the token text, never stored)."""
        token = cls.PREFIX + secrets.token_urlsafe(32)
        return cls.create(user=user, name=name, digest=cls._digest(token), expires_at=expires_at), token

    def expired(self, now=None):
        """True when the token has an expiry and it has come (at `now`, naive UTC, or now)."""
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    @classmethod
    def find(cls, token):
        """The ApiToken row (with its user) whose text is `token`, or None; whether it may act is the caller's."""
        return cls.select(cls, User).join(User).where(cls.digest == cls._digest(token)).first()

    def note_use(self, now=None):
        """Record that the token was used now, unless that was recorded less than USE_RESOLUTION ago."""
        now = now or utcnow()
        if self.last_used_at is None or now - self.last_used_at >= self.USE_RESOLUTION:
            self.last_used_at = now
            ApiToken.update(last_used_at=now).where(ApiToken.id == self.id).execute()


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


class OAuthSignIn(Sealed, BaseModel):
    """A sign-in under way: sent to the provider, not yet back (RFC 6749 section 4.1).

    Found again by the digest of its `state` (the value itself is only in the
    URL), it is bound to the session that started it (`session_digest`), its
    user, the credential it signs in for and the app; it keeps the PKCE code
    verifier (sealed, RFC 7636 section 4.1) and the OpenID Connect nonce.
    `used_at` is set once, when the provider sends the browser back: a second
    return with the same state is refused. `return_to` is where the person goes
    afterwards ("edit": the credential form, "show": the credential's page).
    """

    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    state_digest = CharField(max_length=64, unique=True)
    session_digest = CharField(max_length=64)
    user = ForeignKeyField(User, on_delete="CASCADE")
    credential = ForeignKeyField(Credential, on_delete="CASCADE")
    oauth_app = ForeignKeyField(OAuthApp, on_delete="CASCADE")
    nonce = CharField(max_length=64)
    code_verifier_ciphertext = SecretField("code_verifier")
    return_to = CharField(max_length=16, default="edit")
    created_at = DateTimeField(default=utcnow, index=True)
    used_at = DateTimeField(null=True)


# Every model that keeps secrets (sealing.Sealed): what key checks and rotation go through.
SEALED_MODELS = (Credential, OAuthApp, OAuthSignIn)
