"""Migration 9: the smallest expiry warning sent for an OAuth app's client secret (``oauthapp.secret_warned_days``),
so the scheduled sweep warns of it once at each of MAILKEEP_EXPIRY_WARNING_DAYS, as it does for a credential's.

A plain ``ALTER TABLE ... ADD COLUMN`` of a nullable column, which both databases take as it is.
"""

from database import db

VERSION = 9
TITLE = "Expiry warnings of OAuth apps' client secrets"


def apply(keyring):
    """Add the column (`keyring` is not needed: no secret is touched)."""
    db.execute_sql('ALTER TABLE "oauthapp" ADD COLUMN "secret_warned_days" INTEGER')
