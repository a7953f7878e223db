"""Migration 8: OAuth2 sign-in. OAuth apps (``oauthapp``), the sign-ins under way (``oauthsignin``), and on
each credential the app it signed in with, its refresh token (sealed), the scopes granted, the account
that signed in, when, when the refresh token was last used, and the client ID and token endpoint origin
it was issued to.

The new tables are created from frozen definitions; the credential's new columns are added with plain
``ALTER TABLE ... ADD COLUMN`` (nullable, or NOT NULL with a default), which both databases take as they
are: on SQLite a rebuilt table would lose migration 2's search triggers.
"""

import secrets
from datetime import datetime, timezone

from peewee import CharField, DateField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField

from database import db, is_sqlite

VERSION = 8
TITLE = "OAuth apps and OAuth2 sign-in"


def _utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


class _Frozen(Model):
    class Meta:
        database = db


class _User(_Frozen):
    class Meta:
        table_name = "user"


class _Credential(_Frozen):
    class Meta:
        table_name = "credential"


class OAuthApp(_Frozen):
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    name = CharField(max_length=100)
    name_key = CharField(max_length=100, unique=True)
    kind = CharField(max_length=16)
    tenant = CharField(max_length=255, default="")
    issuer = CharField(max_length=2000, default="")
    authorization_url = CharField(max_length=2000, default="")
    token_url = CharField(max_length=2000, default="")
    client_id = CharField(max_length=255)
    client_secret_ciphertext = TextField(null=True)
    scopes = CharField(max_length=1000, default="")
    client_secret_expires_on = DateField(null=True)
    idle_days = IntegerField(null=True)
    created_at = DateTimeField(default=_utcnow)
    updated_at = DateTimeField(default=_utcnow)

    class Meta:
        table_name = "oauthapp"


class OAuthSignIn(_Frozen):
    uid = CharField(max_length=32, unique=True, default=lambda: secrets.token_hex(16))
    state_digest = CharField(max_length=64, unique=True)
    session_digest = CharField(max_length=64)
    user = ForeignKeyField(_User, on_delete="CASCADE")
    credential = ForeignKeyField(_Credential, on_delete="CASCADE")
    oauth_app = ForeignKeyField(OAuthApp, on_delete="CASCADE")
    nonce = CharField(max_length=64)
    code_verifier_ciphertext = TextField(null=True)
    return_to = CharField(max_length=16, default="edit")
    created_at = DateTimeField(default=_utcnow, index=True)
    used_at = DateTimeField(null=True)

    class Meta:
        table_name = "oauthsignin"


def apply(keyring):
    """Create the tables, then add the credential's sign-in columns and index the app they point at."""
    db.create_tables([OAuthApp, OAuthSignIn])
    timestamp = "DATETIME" if is_sqlite() else "TIMESTAMP"
    columns = (
        '"oauth_app_id" INTEGER REFERENCES "oauthapp" ("id") ON DELETE RESTRICT',
        '"refresh_token_ciphertext" TEXT',
        "\"oauth_scopes\" VARCHAR(1000) NOT NULL DEFAULT ''",
        "\"oauth_account\" VARCHAR(320) NOT NULL DEFAULT ''",
        f'"oauth_signed_in_at" {timestamp}',
        f'"oauth_used_at" {timestamp}',
        "\"oauth_client_id\" VARCHAR(255) NOT NULL DEFAULT ''",
        "\"oauth_token_origin\" VARCHAR(2000) NOT NULL DEFAULT ''",
    )
    for column in columns:
        db.execute_sql(f'ALTER TABLE "credential" ADD COLUMN {column}')
    db.execute_sql('CREATE INDEX "credential_oauth_app_id" ON "credential" ("oauth_app_id")')
