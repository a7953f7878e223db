"""Migration 4: indexes that let a page of a long, searched credentials list be read without its rows.

A page is found by id in name order first (models.Credential.page_of), then
read whole. SQLite looks each full-text match up in an index of (id,
name_sort) instead of in the table; PostgreSQL walks name_sort in an index that
also holds id and search_text, so it never visits the table to filter.
"""

from database import db, is_postgresql, is_sqlite

VERSION = 4
TITLE = "covering indexes for the credentials list"


def apply(keyring):
    """Create the covering index this database's planner uses."""
    if is_sqlite():
        db.execute_sql('CREATE INDEX "credential_id_name_sort" ON "credential" ("id", "name_sort")')
    elif is_postgresql():
        db.execute_sql('CREATE INDEX "credential_name_sort_covering" ON "credential" ("name_sort") '
                       'INCLUDE ("id", "search_text", "group_id", "protocol", "auth")')
