"""Migration 5: API tokens may expire (``apitoken.expires_at``, naive UTC, NULL for a token that does not)."""

from peewee import DateTimeField
from playhouse.migrate import SchemaMigrator, migrate

from database import db

VERSION = 5
TITLE = "an optional expiry time on API tokens"


def apply(keyring):
    """Add the nullable ``expires_at`` column: every existing token keeps working as before."""
    migrate(SchemaMigrator.from_database(db).add_column("apitoken", "expires_at", DateTimeField(null=True)))
