"""The database handle, and everything that differs between the databases Mailkeep runs on.

One handle, ``db``, is bound at run time to ``MAILKEEP_DATABASE_URL`` by
``bind()`` (a peewee ``db_url``: ``sqlite:///path`` or ``postgresql://...``).
Connections come from playhouse's pool, so a request takes an open connection
and gives it back instead of opening its own (and, on SQLite, setting its
pragmas) every time. SQLite-only SQL (pragmas, checkpoints, write locks) stays in
this module; the models and services ask for what they need in plain terms:
``exclusive()`` for a check followed by a write, ``upsert()``, ``wipe_freed_pages()``.
"""

import hashlib
import logging
import os
from contextlib import contextmanager

from peewee import DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

db = DatabaseProxy()
log = logging.getLogger(__name__)

# secure_delete overwrites freed pages, so a deleted ciphertext does not linger in the file.
# busy_timeout comes first so that even switching the file to WAL waits for other connections.
# synchronous=NORMAL is the setting SQLite documents for WAL: a commit survives a crash of the process.
SQLITE_PRAGMAS = {
    "busy_timeout": 5000, "foreign_keys": 1, "journal_mode": "wal", "synchronous": "normal", "secure_delete": 1,
}
# Row ids are 64-bit signed integers on both databases; a bigger number cannot name a row.
LARGEST_ID = 2**63 - 1
# Connections a process keeps open at most, and how long (seconds) an idle one is kept.
DEFAULT_POOL_SIZE = 20
STALE_SECONDS = 300


def bind(url, pool_size=DEFAULT_POOL_SIZE):
    """Bind ``db`` to the peewee ``db_url`` `url`, with a connection pool of at most `pool_size` connections.

    A handle bound before is closed first (its pooled connections too).
    Raises ValueError for a URL scheme peewee does not know.
    """
    if db.obj is not None:
        unbind()
    parsed = db_url.parse(url)
    scheme = url.partition(":")[0].partition("+")[0]
    # A request waits up to 10 seconds for a free connection rather than failing at once.
    options = {"max_connections": pool_size, "stale_timeout": STALE_SECONDS, "timeout": 10}
    if scheme == "sqlite":
        path = parsed.pop("database")
        keep_private(path)
        # A pooled connection serves one thread at a time, but not always the thread that opened it.
        handle = PooledSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False, **options, **parsed)
    elif scheme in ("postgres", "postgresql"):
        handle = PooledPostgresqlDatabase(parsed.pop("database"), **options, **parsed)
    else:
        handle = db_url.connect(url)
    db.initialize(handle)


def keep_private(path):
    """Make the SQLite database file `path` readable and writable by its owner only (mode 0600).

    A missing file is created so: SQLite gives the ``-wal`` and ``-shm`` files it
    makes later the mode of the database file. Existing ones (made before this
    rule, or copied in) are changed to 0600 too. An in-memory database is left
    alone; a file whose mode cannot be changed (another owner) is logged.
    """
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            os.chmod(file, 0o600)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("could not make %r readable by its owner only: %s", file, error)


def release_connections():
    """Close every connection the pool holds, so none outlives a fork: gunicorn --preload builds the app (and
    opens connections for the start-up work) in its master process, and a connection shared by two forked
    workers mixes their conversations (psycopg2 and sqlite3 connections are not fork-safe)."""
    if hasattr(db.obj, "close_all"):
        db.obj.close_all()


def unbind():
    """Close every connection of the bound handle (pooled ones included) and leave ``db`` unbound."""
    if db.obj is None:
        return
    if hasattr(db.obj, "close_all"):
        db.obj.close_all()
    else:
        db.close()
    db.initialize(None)


def is_sqlite():
    """True when ``db`` is bound to SQLite."""
    return isinstance(db.obj, SqliteDatabase)


def is_postgresql():
    """True when ``db`` is bound to PostgreSQL."""
    return isinstance(db.obj, PostgresqlDatabase)


def lock_key(name):
    """The 64-bit signed integer that names the lock `name` for ``pg_advisory_xact_lock``."""
    return int.from_bytes(hashlib.sha256(f"mailkeep:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def exclusive(name):
    """A transaction for a check followed by a write that no other request, process or instance may slip
    between; `name` says which rule it guards ("accounts", "schema", ...).

    The first administrator (the user table is still empty), the last active
    admin (not demoted or disabled) and the schema upgrade are such checks. On
    SQLite it is ``BEGIN IMMEDIATE``, which takes the database's write lock
    before the check reads. On PostgreSQL it takes the transaction-level
    advisory lock for `name` (``pg_advisory_xact_lock``, released at commit or
    rollback) as its first statement, so a second transaction waits and then
    reads, under READ COMMITTED, what the first one committed.
    """
    if is_sqlite():
        with db.atomic("IMMEDIATE") as transaction:
            yield transaction
        return
    with db.atomic() as transaction:
        if is_postgresql():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key(name),))
        yield transaction


def is_missing_reference(error):
    """True when `error` (a peewee.IntegrityError) is a foreign key that points at a row that is gone,
    rather than a unique key clash: SQLite says "FOREIGN KEY constraint failed", PostgreSQL answers
    SQLSTATE 23503 (foreign_key_violation)."""
    original = error.args[0] if error.args else None
    if getattr(original, "pgcode", None) is not None:
        return original.pgcode == "23503"
    return "FOREIGN KEY" in str(error).upper()


def upsert(model, key, **values):
    """Insert a row of `model` with `values`, or update the one whose unique column `key` (a field) clashes.

    ``INSERT ... ON CONFLICT (key) DO UPDATE`` (SQLite 3.24 and PostgreSQL 9.5 both speak it).
    """
    update = {getattr(model, name): value for name, value in values.items() if name != key.name}
    model.insert(**values).on_conflict(conflict_target=[key], update=update).execute()


def wipe_freed_pages():
    """Make sure deleted rows leave no copy behind in SQLite's files.

    With ``secure_delete`` on, a deleted row's pages are zeroed in the file; the
    WAL checkpoint folds the write-ahead log into the file and empties it, so no
    copy is left in the ``-wal`` file either. It waits for readers up to the busy
    timeout; a reader holding on longer makes it fail, which is logged. Other
    databases keep deleted rows until their own clean-up (PostgreSQL: VACUUM and
    WAL recycling); there is nothing to do here for them.
    """
    if not is_sqlite():
        return
    busy, _, _ = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("the write-ahead log could not be emptied while a reader held it; "
                    "deleted data stays in mailkeep.db-wal until the next checkpoint")
