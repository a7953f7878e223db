"""A throwaway PostgreSQL cluster on loopback, from Debian's packages, for tests and benchmarks.

Plain Python (no pytest), so fixtures and ``bench/`` share it::

    with PostgreSQL() as server:
        url = server.create_database("mailkeep_1")   # postgresql://mailkeep@127.0.0.1:<port>/mailkeep_1

``initdb`` refuses to run as root, so as root the cluster is made and run as
the ``postgres`` user (Debian's package creates it), in a fresh directory under
the system temp dir that user may enter. It trusts connections from loopback,
is tuned for throwaway speed (fsync off), and is removed by ``stop()``.

The programs run as that user by switching user in the child before it runs them
(subprocess's ``user`` and ``group``), not through ``runuser``: runuser passes a
stop signal on and then sleeps two seconds before it kills, so every stop took
two seconds.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

from components import stop_process

STARTUP_TIMEOUT = 30.0
"""Seconds start() waits for the server to accept connections."""

SUPERUSER = "mailkeep"

KEPT_CONNECTION = "kept by the test fixtures"
"""The application name of the connections kept open (``execute`` on "postgres", ``restore``)."""

LOCK_TIMEOUT = "10s"
"""How long ``restore`` waits for a lock before it fails."""

KEEP_WAL = "256MB"
"""How much write-ahead log the server keeps after a checkpoint (wal_keep_size), so ``wal_since`` can read a
test's part of it."""


class Contents:
    """The rows of a database's tables and where its sequences stand (``PostgreSQL.contents``).

    ``rows``: {table: (column names, [row tuples])}; ``sequences``: [(qualified name, value, is_called)].
    """

    def __init__(self, rows, sequences):
        self.rows, self.sequences = rows, sequences


def binaries():
    """The directory of the newest installed PostgreSQL's server programs, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda path: int(path.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _execute(connection, sql, parameters):
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchall() if cursor.description else None


def _modified_since(entry, moment):
    """Whether the directory entry `entry` (os.DirEntry) is a file modified at or after `moment`."""
    try:
        return entry.is_file() and entry.stat().st_mtime >= moment
    except FileNotFoundError:  # a temporary file the server removed meanwhile
        return False


class PostgreSQL:
    """A PostgreSQL server on 127.0.0.1 at a free port, superuser ``mailkeep`` without a password.

    Attributes: ``port``; ``data`` (the cluster's directory). Use as a context
    manager or call start()/stop(). Raises RuntimeError when the server does not
    start, with the end of its log.
    """

    def __init__(self, bin_dir=None):
        self.bin_dir = Path(bin_dir or binaries())
        self.root = Path(tempfile.mkdtemp(prefix="mailkeep-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        self.process = None
        self._as_user = {}
        # Connections kept open by database name (execute() on "postgres", restore() on the test database): a
        # new one is a new server process, and the fixtures run several statements around every test.
        self._kept = {}
        self._kept_lock = threading.Lock()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """initdb, then start the server and wait until it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        settings = {
            "listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.root),
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200",
            "log_min_messages": "warning",
            # Keep the recent log (wal_since reads a test's part of it after a checkpoint, which would
            # otherwise recycle the segments before it).
            "wal_keep_size": KEEP_WAL,
        }
        options = [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(self.bin_dir / "postgres"), "-D", str(self.data), *options],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.root, **self._as_user)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                psycopg2.connect(self.url("postgres")).close()
                return
            except psycopg2.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self):
        """Stop the server (fast shutdown, SIGINT: open sessions are ended rather than waited for) and remove
        its directory."""
        with self._kept_lock:
            for connection in self._kept.values():
                connection.close()
            self._kept.clear()
        stop_process(self.process, STARTUP_TIMEOUT, signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program, *arguments):
        """Run one of the server's programs (as the postgres user when root); raise RuntimeError on failure."""
        done = subprocess.run([str(self.bin_dir / program), *arguments], capture_output=True, text=True,
                              check=False, cwd=self.root, **self._as_user)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")

    def url(self, database):
        """The peewee/psycopg URL of `database` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql, database="postgres", parameters=None):
        """Run one statement outside a transaction (CREATE DATABASE needs that); return its rows or None.
        Statements on the "postgres" database share one kept connection (opened again if it was closed)."""
        if database != "postgres":
            connection = psycopg2.connect(self.url(database))
            try:
                return _execute(connection, sql, parameters)
            finally:
                connection.close()
        return self._on_kept_connection("postgres", lambda connection: _execute(connection, sql, parameters))

    def _on_kept_connection(self, database, work):
        """`work(connection)` on the connection kept open to `database`, opened first if there is none; when
        it had ended meanwhile (its database dropped and made again, its process ended), once more on a new
        one. One at a time: the connection is shared by the threads of a test."""
        with self._kept_lock:
            connection = self._kept.get(database)
            if connection is None or connection.closed:
                connection = self._kept[database] = self._connect_kept(database)
            try:
                return work(connection)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if not connection.closed:
                    raise  # the work failed, not the connection
                connection = self._kept[database] = self._connect_kept(database)
                return work(connection)

    def _connect_kept(self, database):
        return psycopg2.connect(self.url(database), application_name=KEPT_CONNECTION)

    def create_database(self, name, template=None):
        """Create the database `name` (a copy of `template` when given, copied file by file rather than
        through the write-ahead log, PostgreSQL 15's STRATEGY FILE_COPY); return its URL."""
        copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        self.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name):
        """Drop the database `name`, ending any connection still open to it (``restore``'s own as well)."""
        with self._kept_lock:
            if (kept := self._kept.pop(name, None)) is not None:
                kept.close()
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def files_of(self, name, since=0.0):
        """The paths of `name`'s own relation files written since `since` (a ``file_clock()`` value). Call
        ``checkpoint()`` (or ``wal_since``, which does) first; the write-ahead log is ``wal_since``'s."""
        (oid,), = self.execute("SELECT oid FROM pg_database WHERE datname = %s", parameters=(name,))
        # One stat a file (scandir knows the type already): a database has hundreds, and this runs after every
        # test on PostgreSQL.
        with os.scandir(self.data / "base" / str(oid)) as entries:
            return [Path(entry.path) for entry in entries if _modified_since(entry, since)]

    def file_clock(self):
        """Now, as the file system tells time (a file touched now, its modification time): what ``files_of``
        compares with. time.time() will not do: file times come from the kernel's coarse clock, up to a tick
        behind it, so a file written just after a time.time() may carry a time before it."""
        marker = self.root / "now"
        marker.touch()
        return marker.stat().st_mtime

    def checkpoint(self):
        """Write every changed page to the data files (CHECKPOINT)."""
        self.execute("CHECKPOINT")

    def contents(self, name):
        """What the database `name` holds, to give it back later with ``restore``: every row of every table
        (schema_version aside, which only a migration changes) and where each sequence stands."""
        connection = psycopg2.connect(self.url(name))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                               "AND tablename <> 'schema_version' ORDER BY tablename")
                tables = [table for (table,) in cursor.fetchall()]
                rows = {}
                for table in tables:
                    cursor.execute(f'SELECT * FROM "{table}"')
                    rows[table] = ([column.name for column in cursor.description], cursor.fetchall())
                cursor.execute("SELECT schemaname || '.' || sequencename, COALESCE(last_value, start_value), "
                               "last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'")
                return Contents(rows, cursor.fetchall())
        finally:
            connection.close()

    def restore(self, name, contents):
        """Give the database `name` back the rows and sequences of `contents` (from ``contents``), in one
        transaction: every row of its tables deleted, the saved ones inserted, each sequence set back. The
        schema itself is not touched: a test that changes it must use a database of its own.

        Every other connection to `name` is ended first (a process a test left behind must neither hold a
        lock the deletes wait for nor write into the next test), and a lock still in the way fails the
        restore after LOCK_TIMEOUT rather than hanging. The restore's own connection is kept for the next
        one: a new connection is a new server process, and this runs before every test on PostgreSQL.
        """
        kept = self._kept.get(name)
        self.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid() AND pid <> %s",
                     parameters=(name, kept.get_backend_pid() if kept is not None and not kept.closed else 0))
        self._on_kept_connection(name, lambda connection: self._restore_with(connection, contents))

    @staticmethod
    def _restore_with(connection, contents):
        with connection, connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            # Foreign keys are triggers: as a replica, the session deletes and inserts in any order.
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute("; ".join(f'DELETE FROM "{table}"' for table in contents.rows))
            for table, (columns, rows) in contents.rows.items():
                if rows:
                    names = ", ".join(f'"{column}"' for column in columns)
                    marks = ", ".join(["%s"] * len(columns))
                    cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
            for sequence, value, called in contents.sequences:
                cursor.execute("SELECT setval(%s, %s, %s)", (sequence, value, called))

    def wal_position(self):
        """Where the write-ahead log's next record goes (an LSN, as text like "0/1A2B3C8")."""
        (lsn,), = self.execute("SELECT pg_current_wal_insert_lsn()")
        return lsn

    def wal_since(self, lsn):
        """The write-ahead log written from `lsn` (from ``wal_position``) to now, as bytes: the segments'
        bytes in between, read from pg_wal once the log is flushed (a checkpoint does that).

        Raises RuntimeError when a segment in that range is gone (recycled: the server keeps KEEP_WAL of
        log), rather than reading less than was written.
        """
        self.checkpoint()
        (first, offset), = self.execute("SELECT file_name, file_offset FROM pg_walfile_name_offset(%s)",
                                        parameters=(lsn,))
        # Up to what is on disk (the checkpoint wrote all the test's log): beyond it a recycled segment
        # still holds old bytes.
        (last, end), = self.execute("SELECT file_name, file_offset FROM pg_walfile_name_offset("
                                    "pg_current_wal_flush_lsn())")
        wal = self.data / "pg_wal"
        names = sorted(path.name for path in wal.iterdir() if first <= path.name <= last and len(path.name) == 24)
        if not names or names[0] != first or names[-1] != last:
            raise RuntimeError(f"the write-ahead log from {lsn} is no longer all there ({first} to {last})")
        pieces = []
        for name in names:
            data = (wal / name).read_bytes()
            pieces.append(data[offset if name == first else 0:end if name == last else len(data)])
        return b"".join(pieces)
