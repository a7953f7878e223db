"""Migration 2: a search column and index for credentials and aliases, so searching stays fast at size.

Each row keeps ``search_text``: the casefolded text that searches match
(credential: name, description, host and username; alias: address,
workspace, project type, client and description). It is indexed for
substring search: on SQLite by an FTS5 table with the trigram tokenizer
(SQLite 3.34+), kept in step by triggers; on PostgreSQL by a GIN index with
pg_trgm's ``gin_trgm_ops`` (the extension is trusted since PostgreSQL 13, so
the database's owner may create it).
"""

from peewee import TextField
from playhouse.migrate import SchemaMigrator, migrate

from database import db, is_postgresql, is_sqlite

VERSION = 2
TITLE = "search columns and substring indexes for credentials and aliases"

# table: the columns whose casefolded text, joined by spaces, is searched.
SEARCHED = {
    "credential": ("name", "description", "host", "username"),
    "alias": ("address", "workspace", "project_type", "client", "description"),
}


def apply(keyring):
    """Add, fill and index ``search_text`` on each searched table."""
    migrator = SchemaMigrator.from_database(db)
    for table, columns in SEARCHED.items():
        migrate(migrator.add_column(table, "search_text", TextField(default="")))
        listed = ", ".join(f'"{column}"' for column in ("id", *columns))
        for row_id, *texts in db.execute_sql(f'SELECT {listed} FROM "{table}"').fetchall():
            db.execute_sql(f'UPDATE "{table}" SET search_text = {db.param} WHERE id = {db.param}',
                           (search_text(*texts), row_id))
        if is_sqlite():
            _fts5_index(table)
        elif is_postgresql():
            db.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            db.execute_sql(f'CREATE INDEX "{table}_search_text" ON "{table}" USING gin (search_text gin_trgm_ops)')


def search_text(*texts):
    """The searched form of a row's texts: casefolded, joined by spaces."""
    return " ".join(text or "" for text in texts).casefold()


def _fts5_index(table):
    """An external-content FTS5 table ``<table>_search`` over ``search_text``, and the triggers the SQLite
    documentation gives for keeping one in step with its content table (section 4.4.3 of fts5.html)."""
    index = f"{table}_search"
    db.execute_sql(
        f'CREATE VIRTUAL TABLE "{index}" USING fts5(search_text, content="{table}", content_rowid="id", '
        "tokenize='trigram')"
    )
    db.execute_sql(f'INSERT INTO "{index}"("{index}") VALUES (\'rebuild\')')
    insert = f'INSERT INTO "{index}"(rowid, search_text) VALUES (new.id, new.search_text);'
    delete = f'INSERT INTO "{index}"("{index}", rowid, search_text) VALUES (\'delete\', old.id, old.search_text);'
    db.execute_sql(f'CREATE TRIGGER "{index}_insert" AFTER INSERT ON "{table}" BEGIN {insert} END')
    db.execute_sql(f'CREATE TRIGGER "{index}_delete" AFTER DELETE ON "{table}" BEGIN {delete} END')
    db.execute_sql(
        f'CREATE TRIGGER "{index}_update" AFTER UPDATE OF search_text ON "{table}" BEGIN {delete} {insert} END'
    )
