"""Migration 6: every credential watched: scheduled checks, their history, states, notifications.

Credentials get their watch state (OK / failing / never checked, paused, the
consecutive failures, when the next check is due and which worker holds it,
the last certificate seen, the OAuth2 client secret's expiry, when a secret was
last set); groups an optional check interval and password age. New tables keep
every check, every change of state, the "Test all" runs, the notification
channels (webhook signing secrets sealed), the SMTP relay (its password
sealed), the outbox of events and each delivery and attempt.

The credential and group columns are added with plain ``ALTER TABLE ... ADD
COLUMN`` (never a rebuild: migration 2's triggers would be lost). The new
tables are frozen peewee models below, never imports of models.py.
"""

import secrets

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from database import db, is_sqlite
from sealing import SecretField

VERSION = 6
TITLE = "scheduled checks, health history, notification channels and deliveries"


class _Frozen(Model):
    class Meta:
        database = db


class _Credential(_Frozen):
    class Meta:
        table_name = "credential"


class _Group(_Frozen):
    class Meta:
        table_name = "group"


class CredentialCheck(_Frozen):
    credential = ForeignKeyField(_Credential, on_delete="CASCADE")
    at = DateTimeField()
    ok = BooleanField()
    cause_code = CharField(max_length=60, default="")
    cause_detail = CharField(max_length=60, default="")
    summary = CharField(max_length=300, default="")
    duration_ms = IntegerField(default=0)
    actor = CharField(max_length=100, default="")
    run_id = IntegerField(null=True)
    certificate_not_after = DateTimeField(null=True)
    certificate_issuer = CharField(max_length=255, default="")

    class Meta:
        table_name = "credential_check"
        indexes = ((("credential", "at"), False), (("at",), False))


class HealthChange(_Frozen):
    credential = ForeignKeyField(_Credential, on_delete="CASCADE")
    at = DateTimeField()
    from_state = CharField(max_length=16)
    to_state = CharField(max_length=16)
    cause_code = CharField(max_length=60, default="")
    actor = CharField(max_length=100, default="")

    class Meta:
        table_name = "health_change"
        indexes = ((("credential", "at"), False),)


class CheckRun(_Frozen):
    started_at = DateTimeField()
    actor = CharField(max_length=100, default="")
    total = IntegerField(default=0)

    class Meta:
        table_name = "check_run"


class CheckRunItem(_Frozen):
    run = ForeignKeyField(CheckRun, on_delete="CASCADE")
    credential = ForeignKeyField(_Credential, on_delete="CASCADE")
    done = BooleanField(default=False)
    ok = BooleanField(null=True)

    class Meta:
        table_name = "check_run_item"
        indexes = ((("run", "credential"), True),)


class NotificationChannel(_Frozen):
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    kind = CharField(max_length=16)
    url = CharField(max_length=2000, default="")
    signing_secret_ciphertext = SecretField("signing_secret")
    recipients = CharField(max_length=2000, default="")
    all_groups = BooleanField(default=True)
    enabled = BooleanField(default=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "notification_channel"


class ChannelGroup(_Frozen):
    channel = ForeignKeyField(NotificationChannel, on_delete="CASCADE")
    group = ForeignKeyField(_Group, on_delete="CASCADE")

    class Meta:
        table_name = "notification_channel_group"
        indexes = ((("channel", "group"), True),)


class SmtpRelay(_Frozen):
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    host = CharField(max_length=253, default="")
    port = IntegerField(default=587)
    security = CharField(max_length=16, default="starttls")
    username = CharField(max_length=320, default="")
    password_ciphertext = SecretField("password")
    sender = CharField(max_length=320, default="")

    class Meta:
        table_name = "smtp_relay"


class NotificationEvent(_Frozen):
    kind = CharField(max_length=40, index=True)
    at = DateTimeField(index=True)
    credential = ForeignKeyField(_Credential, null=True, on_delete="SET NULL")
    credential_name = CharField(max_length=100, default="")
    group_id = IntegerField(null=True)
    actor = CharField(max_length=100, default="")
    details = TextField(default="{}")
    fanned_out = BooleanField(default=False, index=True)

    class Meta:
        table_name = "notification_event"


class NotificationDelivery(_Frozen):
    event = ForeignKeyField(NotificationEvent, on_delete="CASCADE")
    channel = ForeignKeyField(NotificationChannel, on_delete="CASCADE")
    status = CharField(max_length=16, default="pending", index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(index=True)
    claimed_until = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    last_error = CharField(max_length=300, default="")

    class Meta:
        table_name = "notification_delivery"
        indexes = ((("event", "channel"), True),)


class DeliveryAttempt(_Frozen):
    delivery = ForeignKeyField(NotificationDelivery, on_delete="CASCADE")
    at = DateTimeField(index=True)
    ok = BooleanField()
    status_code = IntegerField(null=True)
    error = CharField(max_length=300, default="")
    duration_ms = IntegerField(default=0)

    class Meta:
        table_name = "delivery_attempt"


TABLES = [CredentialCheck, HealthChange, CheckRun, CheckRunItem, NotificationChannel, ChannelGroup, SmtpRelay,
          NotificationEvent, NotificationDelivery, DeliveryAttempt]

# (table, column, SQL type and constraints): added in place, never by rebuilding the table.
COLUMNS = [
    ("credential", "check_state", "VARCHAR(16) NOT NULL DEFAULT 'unknown'"),
    ("credential", "check_paused", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("credential", "check_failures", "INTEGER NOT NULL DEFAULT 0"),
    ("credential", "check_state_since", "{timestamp}"),
    ("credential", "check_due_at", "{timestamp}"),
    ("credential", "check_claimed_until", "{timestamp}"),
    ("credential", "check_noticed_at", "{timestamp}"),
    ("credential", "check_cause", "VARCHAR(60) NOT NULL DEFAULT ''"),
    ("credential", "certificate_not_after", "{timestamp}"),
    ("credential", "certificate_issuer", "VARCHAR(255) NOT NULL DEFAULT ''"),
    ("credential", "certificate_warned_days", "INTEGER"),
    ("credential", "client_secret_expires_on", "DATE"),
    ("credential", "secret_warned_days", "INTEGER"),
    ("credential", "secret_set_at", "{timestamp}"),
    ("credential", "rotation_warned_at", "{timestamp}"),
    ("group", "check_interval", "INTEGER"),
    ("group", "password_max_age_days", "INTEGER"),
]


def apply(keyring):
    """Add the columns (a secret's set time starts as the credential's last update), the indexes the
    scheduler and the list's summary read, then the tables."""
    timestamp = "DATETIME" if is_sqlite() else "TIMESTAMP"
    for table, column, definition in COLUMNS:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {definition.format(timestamp=timestamp)}')
    db.execute_sql('UPDATE "credential" SET "secret_set_at" = "updated_at"')
    db.execute_sql('CREATE INDEX "credential_check_due_at" ON "credential" ("check_due_at")')
    # The list's health summary counts by state, and finds what expires soon, without reading every row.
    db.execute_sql('CREATE INDEX "credential_check_state" ON "credential" ("check_paused", "check_state")')
    db.execute_sql('CREATE INDEX "credential_certificate_not_after" ON "credential" ("certificate_not_after")')
    db.execute_sql('CREATE INDEX "credential_client_secret_expires_on" ON "credential" ("client_secret_expires_on")')
    db.create_tables(TABLES)

