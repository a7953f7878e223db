"""An older Mailkeep's database is upgraded on start, losing nothing; an upgrade that cannot finish changes nothing."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from peewee import IntegrityError

import database
import encryption
import migrations
import models
from app import create_app
from config import ConfigurationError
from models import Alias, Credential, CustomDataItem, Group
from testdata import stored_credential

FIRST_RELEASE = Path(__file__).parent / "data" / "mailkeep-0.1.sql"
FIRST_RELEASE_KEY = "ZmFrZS1sZWdhY3kta2V5LWZvci10ZXN0cy0wMDAwMDA="
FIRST_RELEASE_PASSWORD = "legacy-password-1"


@pytest.fixture
def first_release(app_config, tmp_path):
    """The test configuration on a database the first Mailkeep made, with that database's key."""
    database = tmp_path / "first-release.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(FIRST_RELEASE.read_text())
    return {**app_config, "DATABASE_URL": f"sqlite:///{database}", "ENCRYPTION_KEYS": FIRST_RELEASE_KEY}


def schema_of(config):
    """Each table's columns (name, type, NOT NULL, default, primary key) and foreign keys, and every index,
    from SQLite's own catalogue; column order aside, as an upgrade appends columns."""
    with sqlite3.connect(config["DATABASE_URL"].removeprefix("sqlite:///")) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            "tables": {table: (sorted(row[1:] for row in connection.execute(f'PRAGMA table_info("{table}")')),
                               sorted(row[2:] for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')))
                       for table in tables},
            "indexes": sorted(connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")),
            "triggers": sorted(connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")),
        }


def dump_of(config):
    """Every statement that would rebuild the database, rows included."""
    with sqlite3.connect(config["DATABASE_URL"].removeprefix("sqlite:///")) as connection:
        return list(connection.iterdump())


@pytest.mark.sqlite_only
def test_the_first_release_database_is_upgraded_and_keeps_every_row_and_secret(first_release, tmp_path):
    app = create_app(first_release)
    keyring = app.extensions["mailkeep.keyring"]
    with models.db.connection_context():
        support = Credential.get(Credential.name == "Support")
        assert support.unseal(keyring, "password") == FIRST_RELEASE_PASSWORD
        assert (support.name_key, support.username_key, support.auth) == ("support", "help@example.com", "password")
        assert support.group.name == "Customers" and len({c.uid for c in Credential.select()}) == 2
        assert [(item.key, item.value) for item in CustomDataItem.select()] == [("queue", "L1")]
        assert Alias.get().credential.id == support.id and Group.default().name == "Default"
        assert Credential.get(Credential.name == "Billing").stored_secrets == []
        assert [credential.name for credential in Credential.search("helpdesk")] == ["Support"]  # indexed
        stored_credential(keyring, name="Added later", username="later@example.com", description="After it")
        assert [credential.name for credential in Credential.search("after it")] == ["Added later"]
    # The schema is now the one a new database gets, down to the indexes.
    fresh = {**first_release, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    create_app(fresh)
    assert schema_of(first_release) == schema_of(fresh)
    upgraded = dump_of(first_release)
    create_app(first_release)
    assert dump_of(first_release) == upgraded  # a second start finds nothing to upgrade


@pytest.mark.sqlite_only
def test_two_starts_at_once_upgrade_once_and_both_succeed(first_release):
    database.bind(first_release["DATABASE_URL"])
    keyring = encryption.KeyRing(encryption.parse_keys(FIRST_RELEASE_KEY))
    with ThreadPoolExecutor(2) as pool:  # each thread has its own connection, as two processes would
        for future in [pool.submit(migrations.upgrade, keyring) for _ in range(2)]:
            future.result()
    app = create_app(first_release)
    with models.db.connection_context():
        support = Credential.get(Credential.name == "Support")
        assert support.unseal(app.extensions["mailkeep.keyring"], "password") == FIRST_RELEASE_PASSWORD


@pytest.mark.sqlite_only
def test_the_upgraded_database_still_refuses_what_the_forms_refuse(first_release):
    create_app(first_release)
    with models.db.connection_context():
        with pytest.raises(IntegrityError):
            Group.create(name="CUSTOMERS")
        with pytest.raises(IntegrityError):  # the alias still holds on to its credential
            Credential.get(Credential.name == "Support").delete_instance()


@pytest.mark.sqlite_only
def test_an_upgrade_without_the_key_that_sealed_a_secret_changes_nothing(first_release):
    before = dump_of(first_release)
    with pytest.raises(ConfigurationError, match="not among the configured encryption keys"):
        create_app({**first_release, "ENCRYPTION_KEYS": encryption.generate_key()})
    assert dump_of(first_release) == before
    create_app(first_release)  # with the right key it then upgrades


@pytest.mark.sqlite_only
def test_names_that_only_casefolding_tells_are_the_same_stop_the_upgrade_and_change_nothing(first_release):
    database = first_release["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:  # lower() kept these apart; casefold() does not
        connection.execute("""INSERT INTO "group" VALUES (3, 'Straße', '', 0), (4, 'STRASSE', '', 0)""")
    before = dump_of(first_release)
    with pytest.raises(ConfigurationError, match="upgrading the table group failed, nothing was changed"):
        create_app(first_release)
    assert dump_of(first_release) == before


# The same upgrade on PostgreSQL.

def _postgresql_schema(server, name):
    """Each table's columns (name, type, length, nullable, default), constraints and indexes, from
    PostgreSQL's catalogue; column order aside, as an upgrade appends columns."""
    columns = server.execute(
        "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2", database=name)
    constraints = server.execute(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2", database=name)
    indexes = server.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                             "ORDER BY 1, 2", database=name)
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


@pytest.mark.postgresql_only
def test_the_first_release_schema_is_upgraded_on_postgresql_to_what_a_new_database_gets(app_config, postgresql_server):
    server = postgresql_server
    server.create_database("first_release")
    try:
        server.execute(FIRST_RELEASE.with_suffix(".postgresql.sql").read_text(), database="first_release")
        upgraded_config = {**app_config, "DATABASE_URL": server.url("first_release"),
                           "ENCRYPTION_KEYS": FIRST_RELEASE_KEY}
        app = create_app(upgraded_config)
        with models.db.connection_context():
            support = Credential.get(Credential.name == "Support")
            assert support.unseal(app.extensions["mailkeep.keyring"], "password") == FIRST_RELEASE_PASSWORD
            assert Alias.get().credential.id == support.id and Group.default().name == "Default"
            assert Credential.search("billing").count() == 1  # the search column was filled and indexed
            stored_credential(app.extensions["mailkeep.keyring"], name="Added later", username="later@example.com",
                              description="After it")
            assert [credential.name for credential in Credential.search("after it")] == ["Added later"]
        database.unbind()
        assert _postgresql_schema(server, "first_release") == _postgresql_schema(
            server, app_config["DATABASE_URL"].rsplit("/", 1)[1])
    finally:
        database.unbind()
        server.drop_database("first_release")


@pytest.mark.sqlite_only
def test_a_migration_numbered_below_the_latest_applied_still_runs(first_release, tmp_path, monkeypatch):
    """A database upgraded while one migration was not there yet (1 to 5 and 7, then 6 arrived) gets it."""
    without_six = tuple(migration for migration in migrations.MIGRATIONS if migration.VERSION in (1, 2, 3, 4, 5, 7))
    database.bind(first_release["DATABASE_URL"])
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", without_six)
        patched.setattr(migrations, "LATEST", 7)
        assert migrations.upgrade(encryption.KeyRing(encryption.parse_keys(FIRST_RELEASE_KEY))) == [1, 2, 3, 4, 5, 7]
    database.release_connections()
    app = create_app(first_release)  # every migration this Mailkeep knows
    with app.app_context(), models.db.connection_context():
        versions = [row.version for row in migrations.SchemaVersion.select()]
    assert sorted(versions) == [migration.VERSION for migration in migrations.MIGRATIONS]
    fresh = {**first_release, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    create_app(fresh)
    assert schema_of(first_release) == schema_of(fresh)
