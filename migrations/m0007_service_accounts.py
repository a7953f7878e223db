"""Migration 7: service accounts (their grants and tokens), secret versions, per-day read counts, and a
revision on every credential for check-and-set.

The models below are frozen as they are at this version (later changes come as
later migrations). The credential table gets its column with a plain ``ALTER
TABLE ... ADD COLUMN ... NOT NULL DEFAULT`` (a rebuilt table would lose
migration 2's search triggers). Every secret a credential stores now becomes
its version 1, re-encrypted for the version's own row; a secret the configured
keys cannot read gets no version (its credential already says it cannot be
read, and setting it again makes one).
"""

import hashlib
import json
import secrets
from datetime import datetime, timezone

from peewee import (
    BooleanField,
    CharField,
    Check,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from database import db
from encryption import UndecryptableSecret
from sealing import Sealed, SecretField

VERSION = 7
TITLE = "service accounts, secret versions and credential revisions"

# The fields each secret was typed for (logins.SECRETS[name].bound_to) as they are at this version.
_SERVER_FIELDS = ("protocol", "host", "port", "security", "username")
_BOUND_TO = {"password": _SERVER_FIELDS, "client_secret": _SERVER_FIELDS + ("client_id", "token_url")}
UPGRADE_ACTOR = "(upgrade)"


def _utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


class _Frozen(Model):
    class Meta:
        database = db


class Group(_Frozen):
    class Meta:
        table_name = "group"


class Credential(Sealed, _Frozen):
    uid = CharField(max_length=32)
    protocol = CharField()
    host = CharField()
    port = IntegerField()
    security = CharField()
    username = CharField()
    client_id = CharField()
    token_url = CharField()
    password_ciphertext = SecretField("password")
    client_secret_ciphertext = SecretField("client_secret")

    class Meta:
        table_name = "credential"


class ServiceAccount(_Frozen):
    name = CharField(max_length=80)
    name_key = CharField(max_length=80, unique=True)
    description = TextField(default="")
    scopes = CharField(max_length=200, default="")
    networks = TextField(default="")
    created_at = DateTimeField(default=_utcnow)


class ServiceGrant(_Frozen):
    service_account = ForeignKeyField(ServiceAccount, backref="grants", on_delete="CASCADE")
    group = ForeignKeyField(Group, null=True, backref="service_grants", on_delete="CASCADE")
    credential = ForeignKeyField(Credential, null=True, backref="service_grants", on_delete="CASCADE")

    class Meta:
        indexes = ((("service_account", "group"), True), (("service_account", "credential"), True))
        constraints = [Check('("group_id" IS NULL) <> ("credential_id" IS NULL)')]


class ServiceToken(_Frozen):
    service_account = ForeignKeyField(ServiceAccount, backref="tokens", on_delete="CASCADE")
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=_utcnow)
    last_used_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)


class SecretVersion(Sealed, _Frozen):
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    credential = ForeignKeyField(Credential, backref="secret_versions", on_delete="CASCADE")
    secret = CharField(max_length=32)
    number = IntegerField(constraints=[Check("number > 0")])
    value_ciphertext = SecretField("value")
    login_digest = CharField(max_length=64)
    created_at = DateTimeField(default=_utcnow)
    created_by = CharField(max_length=100, default="")
    note = CharField(max_length=200, default="")
    readable_until = DateTimeField(null=True)
    retired = BooleanField(default=False)

    class Meta:
        indexes = ((("credential", "number"), True),)


class SecretRead(_Frozen):
    service_account = ForeignKeyField(ServiceAccount, backref="reads", on_delete="CASCADE")
    credential = ForeignKeyField(Credential, backref="reads", on_delete="CASCADE")
    day = DateField()
    count = IntegerField(default=0)
    last_at = DateTimeField()

    class Meta:
        indexes = ((("credential", "service_account", "day"), True),)


MODELS = (ServiceAccount, ServiceGrant, ServiceToken, SecretVersion, SecretRead)


def apply(keyring):
    """Add the revision column and the new tables; make each stored secret that `keyring` reads version 1."""
    db.execute_sql('ALTER TABLE "credential" ADD COLUMN "revision" INTEGER NOT NULL DEFAULT 1')
    db.create_tables(MODELS)
    for credential in Credential.select():
        number = 0
        for name in credential.stored_secrets:
            try:
                plaintext = credential.unseal(keyring, name)
            except UndecryptableSecret:
                continue
            number += 1
            version = SecretVersion.create(credential=credential.id, secret=name, number=number,
                                           login_digest=_binding(credential, name), created_by=UPGRADE_ACTOR,
                                           note="stored before versions were kept")
            version.seal(keyring, "value", plaintext)
            version.save()


def _binding(credential, name):
    """logins.binding as it is at this version: SHA-256 of the JSON of the secret's bound fields."""
    values = {field: getattr(credential, field) for field in _BOUND_TO[name]}
    return hashlib.sha256(json.dumps([name, values], sort_keys=True).encode()).hexdigest()
