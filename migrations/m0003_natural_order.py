"""Migration 3: natural order for long lists ("Team 2" before "Team 10"), kept by the database.

Credentials and aliases get a ``*_sort`` column holding their name (address) in
models.sortable's form (casefolded, runs of digits zero-padded), indexed, so a
page of a long list is read in natural order straight from an index.
"""

import re

from database import db

VERSION = 3
TITLE = "natural order columns for credentials and aliases"

# table: (source column, sort column, length)
SORTED = {"credential": ("name", "name_sort", 255), "alias": ("address", "address_sort", 400)}
DIGITS = re.compile(r"\d+")


def apply(keyring):
    """Add, fill and index the sort columns.

    A plain ``ALTER TABLE ... ADD COLUMN ... NOT NULL DEFAULT ''`` (both databases take it as it is), not
    playhouse.migrate's add_column: on SQLite that rebuilds the table to make the column NOT NULL, and a
    rebuilt table loses its triggers (migration 2's search index triggers).
    """
    for table, (source, column, length) in SORTED.items():
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" VARCHAR({length}) NOT NULL DEFAULT \'\'')
        for row_id, text in db.execute_sql(f'SELECT id, "{source}" FROM "{table}"').fetchall():
            db.execute_sql(f'UPDATE "{table}" SET "{column}" = {db.param} WHERE id = {db.param}',
                           (_sortable(text), row_id))
        db.execute_sql(f'CREATE INDEX "{table}_{column}" ON "{table}" ("{column}")')


def _sortable(text):
    """models.sortable as it was at this version: casefolded, digit runs padded to 20 places."""
    return DIGITS.sub(lambda digits: digits.group().zfill(20), text.casefold())
