"""The models and the queries on them (peewee), on the handle ``database.db``.

Uniqueness that users see as case-insensitive is enforced by unique indexes on
``*_key`` columns holding the casefolded text (SQLite's ``lower()`` folds ASCII
only), and references between rows by foreign keys with ``ON DELETE RESTRICT``,
so the database itself refuses what the forms refuse. Each model says how the
audit log names a row of it (``AUDIT_TYPE``, ``audit_name``) and what still
needs a row before it may be deleted (``blockers``).
"""

import hashlib
import ipaddress
import re
import secrets
from datetime import datetime, timedelta, timezone

from peewee import (
    JOIN,
    SQL,
    BooleanField,
    Case,
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
from probe import protocols
from sealing import Sealed, SecretField

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
        index, phrase = cls._search_index_match(folded)
        return cls.id.in_(SQL(f'(SELECT rowid FROM "{index}" WHERE "{index}" MATCH ?)', [phrase]))

    @classmethod
    def count_containing(cls, text):
        """How many rows ``containing(text)`` matches. On SQLite, for three characters or more, counted in the
        FTS5 index alone: it holds one entry per row, kept by the table's triggers (migration 2), so the matching
        rows themselves are not visited (at 100,000 credentials, a quarter matching: 5 ms instead of 28 ms).
        Elsewhere a COUNT on the filtered table."""
        folded = fold(text)
        if not is_sqlite() or len(folded) < 3:
            return cls.select().where(cls.containing(text)).count()
        index, phrase = cls._search_index_match(folded)
        return db.execute_sql(f'SELECT count(*) FROM "{index}" WHERE "{index}" MATCH ?', [phrase]).fetchone()[0]

    @classmethod
    def _search_index_match(cls, folded):
        """(the SQLite FTS5 table of this model, the MATCH expression of `folded` text as one quoted phrase)."""
        return f"{cls._meta.table_name}_search", '"' + folded.replace('"', '""') + '"'

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
    # Seconds between scheduled checks of its credentials (None: MAILKEEP_CHECK_INTERVAL), and the days after
    # which a password set is "due for rotation" (None: never). Migration 6.
    check_interval = IntegerField(null=True)
    password_max_age_days = IntegerField(null=True)

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


# A credential's revision as a client sends it back (an If-Match tag, a form's hidden field): digits only, few
# enough to be a number the database keeps.
REVISION_TEXT = re.compile(r"[0-9]{1,18}")


def revision_from_text(text):
    """The revision `text` (a str) names, as an int; None when it names none (empty, not ASCII digits, too
    long), so a check-and-set against it fails instead of raising."""
    return int(text) if REVISION_TEXT.fullmatch(text.strip()) else None


class StaleRevision(Exception):
    """A check-and-set named a revision of a credential that is no longer its revision (HTTP 412):
    someone changed it meanwhile. `current` is the revision it has now (None when it is gone)."""

    def __init__(self, current):
        super().__init__(f"the credential is at revision {current} now")
        self.current = current


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
    # The smallest expiry warning sent for that day (migration 9; scheduler.sweep).
    secret_warned_days = IntegerField(null=True)
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
        """Save with a fresh ``updated_at``; a new client-secret expiry day is warned of afresh."""
        self.updated_at = utcnow()
        if OAuthApp.client_secret_expires_on in self.dirty_fields:
            stored = OAuthApp.select(OAuthApp.client_secret_expires_on).where(OAuthApp.id == self.id).scalar() \
                if self.id is not None else None
            if stored != self.client_secret_expires_on:
                self.secret_warned_days = None
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
    # Moves on with every save (settings, secrets; not a connection test's outcome): the API's ETag, so a
    # change can say which revision it was made against (check-and-set, claim_revision). Migration 7.
    revision = IntegerField(default=1)
    # Watching it (migration 6; health.py owns what they mean): its state ("unknown" until first checked, "ok",
    # "failing"), whether people paused its scheduled checks, consecutive failed checks, since when the state
    # holds, the cause code of the last failure, when the next scheduled check is due and until when a worker
    # holds it, when a failing notice was last sent; the last certificate seen and the smallest expiry warning
    # sent for it; the OAuth2 client secret's expiry day and its warning; when a secret was last set and when
    # "due for rotation" was last said.
    check_state = CharField(max_length=16, default="unknown")
    check_paused = BooleanField(default=False)
    check_failures = IntegerField(default=0)
    check_state_since = DateTimeField(null=True)
    check_cause = CharField(max_length=60, default="")
    check_due_at = DateTimeField(null=True)
    check_claimed_until = DateTimeField(null=True)
    check_noticed_at = DateTimeField(null=True)
    certificate_not_after = DateTimeField(null=True)
    certificate_issuer = CharField(max_length=255, default="")
    certificate_warned_days = IntegerField(null=True)
    client_secret_expires_on = DateField(null=True)
    secret_warned_days = IntegerField(null=True)
    secret_set_at = DateTimeField(null=True)
    rotation_warned_at = DateTimeField(null=True)
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
    EDITABLE = ("name", "description", "group", *logins.CONNECTION_FIELDS, "client_secret_expires_on")
    FOLDED = (("name", "name_key"), ("username", "username_key"))
    SEARCHED = ("name", "description", "host", "username")
    SORTED = (("name", "name_sort"),)
    AUDIT_TYPE = "credential"

    @property
    def security_label(self):
        """The security mode as users read it: "SSL/TLS" or "STARTTLS"."""
        return protocols.SECURITY_LABELS.get(self.security, self.security)

    @classmethod
    def search(cls, text="", group_id=None, protocol=None, auth=None, where=()):
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
        return query.where(*cls._filters(text, group_id, protocol, auth, where))

    @classmethod
    def page_of(cls, page, per_page, text="", group_id=None, protocol=None, auth=None, where=()):
        """One page (1-based `page` of `per_page` rows) of ``search`` with these filters, as a list.

        The page's ids come first, in name order, from an index holding both the
        order and what the filters read (migration 4), and only then those rows
        whole: a search matching tens of thousands reads 20 whole rows, not all.
        """
        ids = [row_id for (row_id,) in cls.select(cls.id).where(*cls._filters(text, group_id, protocol, auth, where))
               .order_by(cls.name_sort, cls.id).paginate(page, per_page).tuples()]
        rows = {row.id: row for row in cls.search().where(cls.id.in_(ids))} if ids else {}
        return [rows[row_id] for row_id in ids if row_id in rows]

    @classmethod
    def count_matching(cls, text="", group_id=None, protocol=None, auth=None, where=()):
        """How many credentials ``search`` finds with these filters: a plain COUNT on the filtered table, or the
        search index's own count when the text is the only filter (``count_containing``). `where` (here and
        above) adds conditions of the caller's (the health summary's filters)."""
        if text and not (group_id or protocol or auth or where):
            return cls.count_containing(text)
        return cls.select().where(*cls._filters(text, group_id, protocol, auth, where)).count()

    @classmethod
    def _filters(cls, text, group_id, protocol, auth, where=()):
        conditions = [cls.containing(text)] if text else []
        conditions.extend(where)
        if group_id:
            conditions.append(cls.group == group_id)
        if protocol:
            conditions.append(cls.protocol == protocol)
        if auth:
            conditions.append(cls.auth == auth)
        return conditions or [SQL("1 = 1")]

    @classmethod
    def signing_in_with(cls, apps):
        """A condition: the credential logs in by OAuth2 sign-in through one of `apps` (an OAuthApp id, or a
        query of ids). A credential switched to another login keeps its oauth_app, and does not match."""
        return (cls.auth == protocols.OAUTH2_SIGN_IN) & (
            cls.oauth_app == apps if isinstance(apps, int) else cls.oauth_app.in_(apps))

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

    def seal(self, keyring, name, plaintext):
        """sealing.Sealed.seal, noting when a secret was last set (for "due for rotation")."""
        super().seal(keyring, name, plaintext)
        self.secret_set_at = utcnow()
        self.rotation_warned_at = None

    def save(self, *args, **kwargs):
        """Save with the host in lowercase (host names ignore case), a fresh ``updated_at`` and the next
        ``revision``."""
        self.host = self.host.lower()
        self.updated_at = utcnow()
        if Credential.client_secret_expires_on in self.dirty_fields:  # a new expiry day is warned of afresh
            self.secret_warned_days = None
        saved = super().save(*args, **kwargs)
        # Moved on in SQL, so two saves at once never both write the same next number.
        Credential.update(revision=Credential.revision + 1).where(Credential.id == self.id).execute()
        self._reread_revision()
        return saved

    def claim_revision(self, expected):
        """Check-and-set: move the stored revision on by one if it is one of `expected` (revision numbers,
        e.g. from an If-Match header); else raise StaleRevision, changing nothing.

        One conditional UPDATE is both the check and the write, so of two requests
        naming the same revision exactly one passes, on SQLite (the write lock) and
        on PostgreSQL (the row lock; the second re-reads the row and finds it moved
        on). Call it first in the change's transaction.
        """
        claimed = (Credential.update(revision=Credential.revision + 1)
                   .where((Credential.id == self.id) & Credential.revision.in_(list(expected))).execute())
        if not claimed:
            raise StaleRevision(Credential.select(Credential.revision).where(Credential.id == self.id).scalar())
        self._reread_revision()

    def _reread_revision(self):
        self.revision = Credential.select(Credential.revision).where(Credential.id == self.id).scalar()
        self._dirty.discard("revision")

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
        """How many aliases ``search`` finds for `text` (``count_containing``), or all of them."""
        return cls.count_containing(text) if text else cls.select().count()


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
        """Keep only a salted hash of `password`, made with ``PASSWORD_HASH_METHOD``."""
        self.password_hash = generate_password_hash(password, method=PASSWORD_HASH_METHOD)

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


PASSWORD_HASH_METHOD = "scrypt"
"""How ``User.set_password`` hashes: a method of werkzeug.security's ``generate_password_hash``, its default scrypt
(N = 2**15, r = 8, p = 1; about 0.1 s of CPU a hash or a check here). The tests choose a cheap one for the users
they make (tests/conftest.py) and prove this one in a process of its own. A hash names its method, so each stored
one is checked as it was made."""


class BearerToken:
    """What a token sent as ``Authorization: Bearer <token>`` is, for a model with ``digest``,
    ``last_used_at`` and ``expires_at`` columns (a person's ApiToken, a ServiceToken).

    Only the SHA-256 of the token is kept (it is 32 random bytes after its
    ``PREFIX``, so a plain hash suffices); the token itself is shown once, when it is made.
    """

    PREFIX = ""
    # last_used_at is written at most this often, so reading the API does not write to the database each time.
    USE_RESOLUTION = timedelta(minutes=1)

    @staticmethod
    def _digest(token):
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def new_token(cls):
        """(a new token text, its digest): PREFIX and 32 random bytes, URL-safe base64."""
        token = cls.PREFIX + secrets.token_urlsafe(32)
        return token, cls._digest(token)

    def expired(self, now=None):
        """True when the token has an expiry and it has come (at `now`, naive UTC, or now)."""
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    def note_use(self, now=None):
        """Record that the token was used now, unless that was recorded less than USE_RESOLUTION ago."""
        now = now or utcnow()
        if self.last_used_at is None or now - self.last_used_at >= self.USE_RESOLUTION:
            self.last_used_at = now
            type(self).update(last_used_at=now).where(type(self).id == self.id).execute()


class ApiToken(BearerToken, BaseModel):
    """A personal API token, sent as ``Authorization: Bearer <token>``; it acts with its user's role.

    Only the SHA-256 of the token is kept (BearerToken); the token itself is shown once, when it is made.
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

    @property
    def audit_name(self):
        return f"{self.name} ({self.user.username})"

    @classmethod
    def issue(cls, user, name, expires_at=None):
        """Make a token for `user` that works until `expires_at` (a naive UTC datetime; None: no end); return
        (the ApiToken row, the token text, never stored)."""
        token, digest = cls.new_token()
        return cls.create(user=user, name=name, digest=digest, expires_at=expires_at), token

    @classmethod
    def find(cls, token):
        """The ApiToken row (with its user) whose text is `token`, or None; whether it may act is the caller's."""
        return cls.select(cls, User).join(User).where(cls.digest == cls._digest(token)).first()


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


# Service accounts and secret versions (issue 11): programs that read connections, and the secrets' history.

# What a service account may be allowed to do: {scope: what it allows, in words}.
SCOPES = {
    "connection:read": "read connection settings, the secret included",
    "connection:test": "run connection tests of the credentials it may read",
}


class ServiceAccount(BaseModel):
    """A program that reads connections: not a person, it cannot sign in to the dashboard.

    It reads the credentials of the groups and the single credentials its
    ``grants`` name, with its ``scopes`` (space-separated keys of SCOPES), from
    the IP networks in ``networks`` (comma-separated CIDR; empty: from
    anywhere), with any of its ``tokens``. The audit log names it ``actor``.
    """

    name = CharField(max_length=80)
    name_key = CharField(max_length=80, unique=True)
    description = TextField(default="")
    scopes = CharField(max_length=200, default="")
    networks = TextField(default="")
    created_at = DateTimeField(default=utcnow)

    FOLDED = (("name", "name_key"),)
    AUDIT_TYPE = "service account"
    # How the audit log names what a service account does, so it is never taken for a person of that name.
    ACTOR_PREFIX = "service:"

    @property
    def actor(self):
        """The audit log's name for this account: ``service:<name>``."""
        return self.ACTOR_PREFIX + self.name

    @property
    def scope_list(self):
        """Its scopes, as a list of SCOPES keys in SCOPES's order."""
        held = set(self.scopes.split())
        return [scope for scope in SCOPES if scope in held]

    def has_scope(self, scope):
        """True when it holds `scope` (a key of SCOPES)."""
        return scope in self.scope_list

    @property
    def network_list(self):
        """The networks it may call from (ipaddress networks); empty: from anywhere."""
        return [ipaddress.ip_network(item.strip()) for item in self.networks.split(",") if item.strip()]

    def allows_address(self, address):
        """True when a request from the IP address text `address` may use this account: it has no networks,
        or one holds the address (an IPv4 address mapped into IPv6 counts as the IPv4 address)."""
        networks = self.network_list
        if not networks:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in networks if network.version == ip.version)

    def may_read(self, credential):
        """True when one of its grants names `credential` or the credential's group."""
        return ServiceGrant.select().where(
            (ServiceGrant.service_account == self.id)
            & ((ServiceGrant.credential == credential.id) | (ServiceGrant.group == credential.group_id))
        ).exists()

    @property
    def granted_groups(self):
        """The groups it may read, in natural order of their names."""
        return list(Group.select().join(ServiceGrant).where(ServiceGrant.service_account == self.id)
                    .order_by(Group.name_key))

    @property
    def granted_credentials(self):
        """The single credentials it may read (besides its groups'), in natural order, as the list shows them."""
        granted = ServiceGrant.select(ServiceGrant.credential).where(
            (ServiceGrant.service_account == self.id) & ServiceGrant.credential.is_null(False))
        return list(Credential.search().where(Credential.id.in_(granted)))

    @classmethod
    def readers_of(cls, credential):
        """The service accounts that may read `credential` (directly or through its group), by name."""
        granted = ServiceGrant.select(ServiceGrant.service_account).where(
            (ServiceGrant.credential == credential.id) | (ServiceGrant.group == credential.group_id))
        return list(cls.select().where(cls.id.in_(granted)).order_by(cls.name_key))

    @classmethod
    def by_name(cls):
        """Every service account, by name."""
        return cls.select().order_by(cls.name_key)


class ServiceGrant(BaseModel):
    """One thing a service account may read: a group (every credential in it) or a single credential."""

    service_account = ForeignKeyField(ServiceAccount, backref="grants", on_delete="CASCADE")
    group = ForeignKeyField(Group, null=True, backref="service_grants", on_delete="CASCADE")
    credential = ForeignKeyField(Credential, null=True, backref="service_grants", on_delete="CASCADE")

    class Meta:
        indexes = ((("service_account", "group"), True), (("service_account", "credential"), True))
        constraints = [Check('("group_id" IS NULL) <> ("credential_id" IS NULL)')]


class ServiceToken(BearerToken, BaseModel):
    """A token of a service account (``mks_...``), sent as ``Authorization: Bearer <token>``; an account may
    have several at once, so one can be replaced without a gap. Only its SHA-256 is kept (BearerToken)."""

    service_account = ForeignKeyField(ServiceAccount, backref="tokens", on_delete="CASCADE")
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)

    PREFIX = "mks_"
    AUDIT_TYPE = "service token"

    @property
    def audit_name(self):
        return f"{self.name} ({self.service_account.name})"

    @classmethod
    def issue(cls, account, name, expires_at=None):
        """Make a token for the ServiceAccount `account` that works until `expires_at` (naive UTC; None: no
        end); return (the ServiceToken row, the token text, never stored)."""
        token, digest = cls.new_token()
        return cls.create(service_account=account, name=name, digest=digest, expires_at=expires_at), token

    @classmethod
    def find(cls, token):
        """The ServiceToken row (with its account) whose text is `token`, or None."""
        return (cls.select(cls, ServiceAccount).join(ServiceAccount)
                .where(cls.digest == cls._digest(token)).first())


class SecretVersion(Sealed, BaseModel):
    """One version of one of a credential's secrets: numbered 1, 2, ... per credential (across its secrets),
    encrypted and bound to this row like every stored secret.

    The credential's own SecretField holds the current secret (what every
    other reader uses); this row keeps a copy with when, by whom and why it
    was set. ``login_digest`` is logins.binding of the settings it was set
    for: a version set for another server or login is never served or restored.
    A superseded version stays readable by service accounts while now <
    ``readable_until`` (its grace period) unless ``retired``.
    """

    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    credential = ForeignKeyField(Credential, backref="secret_versions", on_delete="CASCADE")
    secret = CharField(max_length=32)
    number = IntegerField(constraints=[Check("number > 0")])
    value_ciphertext = SecretField("value")
    login_digest = CharField(max_length=64)
    created_at = DateTimeField(default=utcnow)
    created_by = CharField(max_length=100, default="")
    note = CharField(max_length=200, default="")
    readable_until = DateTimeField(null=True)
    retired = BooleanField(default=False)

    class Meta:
        indexes = ((("credential", "number"), True),)

    @classmethod
    def of(cls, credential, secret=None):
        """The versions of `credential` (of the secret `secret` only, when given), newest first, without
        their ciphertexts."""
        listed = [field for field in cls._meta.sorted_fields if not isinstance(field, SecretField)]
        # ``value_set`` makes an unseal of a listed row fail loudly (sealing.Sealed.ciphertext), never answer "".
        query = cls.select(*listed, cls.value_ciphertext.is_null(False).alias("value_set")).where(
            cls.credential == credential.id)
        if secret is not None:
            query = query.where(cls.secret == secret)
        return query.order_by(cls.number.desc())

    @classmethod
    def next_number(cls, credential):
        """The number the next version of `credential` gets."""
        return (cls.select(fn.MAX(cls.number)).where(cls.credential == credential.id).scalar() or 0) + 1


class SecretRead(BaseModel):
    """How often a service account read a credential's connection in one UTC day, and when it last did:
    what the credential's "Used by" shows, counted without reading the audit log."""

    service_account = ForeignKeyField(ServiceAccount, backref="reads", on_delete="CASCADE")
    credential = ForeignKeyField(Credential, backref="reads", on_delete="CASCADE")
    day = DateField()
    count = IntegerField(default=0)
    last_at = DateTimeField()

    class Meta:
        indexes = ((("credential", "service_account", "day"), True),)

    @classmethod
    def note(cls, account, credential, at):
        """Count one read by `account` of `credential` at `at` (naive UTC), in one statement (an upsert that
        adds one, so reads at once never lose a count)."""
        cls.insert(service_account=account.id, credential=credential.id, day=at.date(), count=1, last_at=at) \
            .on_conflict(conflict_target=[cls.credential, cls.service_account, cls.day],
                         update={cls.count: cls.count + 1, cls.last_at: at}).execute()

    @classmethod
    def summary(cls, credential, since):
        """{service account id: (last read, naive UTC; reads on the days from the date `since` on)} for
        `credential`: one grouped query over its day rows."""
        recent = fn.SUM(Case(None, [(cls.day >= since, cls.count)], 0))
        rows = (cls.select(cls.service_account, fn.MAX(cls.last_at), recent)
                .where(cls.credential == credential.id).group_by(cls.service_account).tuples())
        return {account: (_as_datetime(last), int(count or 0)) for account, last, count in rows}


def _as_datetime(value):
    """A datetime from an aggregate over a DateTimeField (SQLite answers MAX(...) as text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


# Scheduled checks, health history and notifications (migration 6). What the rows mean is health.py's and
# notifications.py's; here are the rows and their queries.

class CredentialCheck(BaseModel):
    """One check of a saved credential, however it was started: when (`at`, naive UTC), how it ended (`ok`,
    `cause_code` and `cause_detail`, the summary line), how long it took (milliseconds), who or what started it
    (`actor`: a username, "(scheduler)", "(command line)"), the "Test all" run it belonged to, and the
    certificate the server showed (expiry and issuer), when TLS got that far."""

    credential = ForeignKeyField(Credential, backref="checks", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    ok = BooleanField()
    cause_code = CharField(max_length=60, default="")
    cause_detail = CharField(max_length=60, default="")
    summary = CharField(max_length=SUMMARY_LENGTH, default="")
    duration_ms = IntegerField(default=0)
    actor = CharField(max_length=100, default="")
    run_id = IntegerField(null=True)
    certificate_not_after = DateTimeField(null=True)
    certificate_issuer = CharField(max_length=255, default="")

    class Meta:
        table_name = "credential_check"

    @classmethod
    def of(cls, credential_id):
        """The checks of one credential, newest first."""
        return cls.select().where(cls.credential == credential_id).order_by(cls.at.desc(), cls.id.desc())

    @classmethod
    def outcomes_since(cls, credential_id, since):
        """(at, ok) of one credential's checks from `since` on, oldest first, as tuples."""
        return list(cls.select(cls.at, cls.ok).where((cls.credential == credential_id) & (cls.at >= since))
                    .order_by(cls.at).tuples())


class HealthChange(BaseModel):
    """A credential's state changed (``from_state`` to ``to_state``: "unknown", "ok", "failing", "paused",
    "resumed"), at `at`, because of a check ending in `cause_code` or of `actor` pausing or resuming it."""

    credential = ForeignKeyField(Credential, backref="health_changes", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    from_state = CharField(max_length=16)
    to_state = CharField(max_length=16)
    cause_code = CharField(max_length=60, default="")
    actor = CharField(max_length=100, default="")

    class Meta:
        table_name = "health_change"


class CheckRun(BaseModel):
    """A "Test all" run: who started it, when, and how many credentials it checks (its items)."""

    started_at = DateTimeField(default=utcnow)
    actor = CharField(max_length=100, default="")
    total = IntegerField(default=0)

    class Meta:
        table_name = "check_run"

    def progress(self):
        """{"total", "done", "ok", "failing"}: how far the run is, counted from its items."""
        rows = (CheckRunItem.select(CheckRunItem.done, CheckRunItem.ok, fn.COUNT(CheckRunItem.id))
                .where(CheckRunItem.run == self.id).group_by(CheckRunItem.done, CheckRunItem.ok).tuples())
        counts = {"total": self.total, "done": 0, "ok": 0, "failing": 0}
        for done, ok, count in rows:
            if done:
                counts["done"] += count
                counts["ok" if ok else "failing"] += count
        return counts


class CheckRunItem(BaseModel):
    """One credential of a "Test all" run, and whether (and how) it has been checked."""

    run = ForeignKeyField(CheckRun, backref="items", on_delete="CASCADE")
    credential = ForeignKeyField(Credential, on_delete="CASCADE")
    done = BooleanField(default=False)
    ok = BooleanField(null=True)

    class Meta:
        table_name = "check_run_item"


class NotificationChannel(Sealed, BaseModel):
    """Where notifications go: a webhook (`url`, signed with its sealed `signing_secret`, Standard Webhooks)
    or email (`recipients`, comma-separated, through the SMTP relay); for every group or the chosen ones."""

    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    kind = CharField(max_length=16)
    url = CharField(max_length=2000, default="")
    signing_secret_ciphertext = SecretField("signing_secret")
    recipients = CharField(max_length=2000, default="")
    all_groups = BooleanField(default=True)
    enabled = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)

    FOLDED = (("name", "name_key"),)
    AUDIT_TYPE = "channel"
    WEBHOOK, EMAIL = "webhook", "email"

    class Meta:
        table_name = "notification_channel"

    @property
    def group_ids(self):
        """The ids of the groups it hears about (when not all), as a set."""
        return {row.group_id for row in ChannelGroup.select(ChannelGroup.group).where(ChannelGroup.channel == self)}

    def hears(self, group_id):
        """True when it is on and hears about the group `group_id` (None: an event about no group)."""
        return self.enabled and (self.all_groups or group_id is None or group_id in self.group_ids)


class ChannelGroup(BaseModel):
    """A group a channel hears about (when it does not hear about all)."""

    channel = ForeignKeyField(NotificationChannel, on_delete="CASCADE")
    group = ForeignKeyField(Group, on_delete="CASCADE")

    class Meta:
        table_name = "notification_channel_group"


class SmtpRelay(Sealed, BaseModel):
    """The one SMTP relay email notifications go through: host, port, security ("ssl_tls" or "starttls"),
    username, a sealed write-only password, and the sender address."""

    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    host = CharField(max_length=253, default="")
    port = IntegerField(default=587)
    security = CharField(max_length=16, default="starttls")
    username = CharField(max_length=320, default="")
    password_ciphertext = SecretField("password")
    sender = CharField(max_length=320, default="")

    AUDIT_TYPE = "smtp relay"

    class Meta:
        table_name = "smtp_relay"

    @property
    def audit_name(self):
        return self.host

    @classmethod
    def current(cls):
        """The relay's row (made empty on first use)."""
        return cls.select().order_by(cls.id).first() or cls.create()


class NotificationEvent(BaseModel):
    """Something to tell people about (the outbox): `kind` ("credential.failing", ...), when, about which
    credential (its name kept should it be deleted) and group, who caused it, and `details` (JSON text, no
    secret). ``fanned_out`` once a delivery row exists for every channel that hears about it."""

    kind = CharField(max_length=40, index=True)
    at = DateTimeField(default=utcnow, index=True)
    credential = ForeignKeyField(Credential, null=True, on_delete="SET NULL")
    credential_name = CharField(max_length=100, default="")
    group_id = IntegerField(null=True)
    actor = CharField(max_length=100, default="")
    details = TextField(default="{}")
    fanned_out = BooleanField(default=False, index=True)

    class Meta:
        table_name = "notification_event"


class NotificationDelivery(BaseModel):
    """One event on its way to one channel: "pending" (with ``next_attempt_at``), "delivered" or "failed"
    (given up after the retry window); a worker holds it until ``claimed_until`` while it tries."""

    event = ForeignKeyField(NotificationEvent, backref="deliveries", on_delete="CASCADE")
    channel = ForeignKeyField(NotificationChannel, backref="deliveries", on_delete="CASCADE")
    status = CharField(max_length=16, default="pending", index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow, index=True)
    claimed_until = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    last_error = CharField(max_length=300, default="")

    class Meta:
        table_name = "notification_delivery"


class DeliveryAttempt(BaseModel):
    """One try at a delivery: when, whether it worked, the HTTP status (webhooks), the error in words,
    how long it took (milliseconds)."""

    delivery = ForeignKeyField(NotificationDelivery, backref="attempt_log", on_delete="CASCADE")
    at = DateTimeField(default=utcnow, index=True)
    ok = BooleanField()
    status_code = IntegerField(null=True)
    error = CharField(max_length=300, default="")
    duration_ms = IntegerField(default=0)

    class Meta:
        table_name = "delivery_attempt"


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
SEALED_MODELS = (Credential, SecretVersion, NotificationChannel, SmtpRelay, OAuthApp, OAuthSignIn)
