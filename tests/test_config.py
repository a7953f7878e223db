"""Configuration: environment variables, keys generated once into the instance folder, clear refusals."""

import logging
import os
import stat

import httpx2
import pytest

import encryption
import models
from app import create_app
from components import require_executable
from config import SECRET_KEY_FILE, ConfigurationError
from keys import ENCRYPTION_KEYS_FILE
from postgres import KEPT_CONNECTION
from testdata import stored_credential


@pytest.fixture
def bare_config(tmp_path):
    """Only the instance folder: keys and database come from the defaults."""
    return {"INSTANCE_PATH": str(tmp_path / "instance")}


def test_keys_are_generated_once_with_mode_0600_and_reused(bare_config, tmp_path):
    first = create_app(bare_config)
    instance = tmp_path / "instance"
    for name in (SECRET_KEY_FILE, ENCRYPTION_KEYS_FILE):
        assert stat.S_IMODE((instance / name).stat().st_mode) == 0o600
    token = first.extensions["mailkeep.keyring"].encrypt("s3cret", "x")
    second = create_app(bare_config)
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert second.extensions["mailkeep.keyring"].decrypt(token, "x") == "s3cret"


def test_the_default_database_is_sqlite_in_the_instance_folder_with_wal_and_foreign_keys(bare_config, tmp_path):
    app = create_app(bare_config)
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'instance' / 'mailkeep.db'}"
    with models.db.connection_context():
        pragmas = {name: models.db.execute_sql(f"PRAGMA {name}").fetchone()[0]
                   for name in ("journal_mode", "foreign_keys", "secure_delete")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "secure_delete": 1}


def test_environment_variables_configure_the_app(bare_config, tmp_path, monkeypatch):
    key = encryption.generate_key()
    monkeypatch.setenv("MAILKEEP_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("MAILKEEP_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("MAILKEEP_ENCRYPTION_KEYS", f"{key}, {encryption.generate_key()}")
    monkeypatch.setenv("MAILKEEP_CONNECTION_TEST_DEADLINE", "7.5")
    app = create_app(bare_config)
    assert (tmp_path / "elsewhere.db").exists()
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert app.config["CONNECTION_TEST_DEADLINE"] == 7.5
    assert app.extensions["mailkeep.keyring"].active_fingerprint == encryption.fingerprint(
        encryption.parse_keys(key)[0]
    )
    assert not (tmp_path / "instance" / ENCRYPTION_KEYS_FILE).exists()


def test_a_malformed_key_stops_start_up_with_a_clear_message(bare_config, monkeypatch):
    monkeypatch.setenv("MAILKEEP_ENCRYPTION_KEYS", "tooshort")
    message = "MAILKEEP_ENCRYPTION_KEYS: encryption key 1 is not a 32-byte"
    with pytest.raises(ConfigurationError, match=message) as raised:
        create_app(bare_config)
    assert "tooshort" not in str(raised.value)


def test_a_greeting_has_five_seconds_of_the_fifteen_unless_configured(bare_config, monkeypatch):
    """Issue 8 item 33: a silent server is named after the greeting's own budget, not the whole deadline."""
    prober = create_app(bare_config).extensions["mailkeep.prober"]
    assert (prober.greeting_timeout, prober.deadline) == (5.0, 15.0)
    monkeypatch.setenv("MAILKEEP_GREETING_TIMEOUT", "2.5")
    assert create_app(bare_config).extensions["mailkeep.prober"].greeting_timeout == 2.5
    monkeypatch.setenv("MAILKEEP_GREETING_TIMEOUT", "30")  # never beyond the whole test's deadline
    assert create_app(bare_config).extensions["mailkeep.prober"].greeting_timeout == 15.0


def test_a_bad_deadline_stops_start_up(bare_config, monkeypatch):
    monkeypatch.setenv("MAILKEEP_CONNECTION_TEST_DEADLINE", "-1")
    with pytest.raises(ConfigurationError, match="positive number of seconds"):
        create_app(bare_config)


def test_missing_components_fail_under_ci_and_skip_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dovecot-imapd"):
        require_executable("/nonexistent/dovecot", "dovecot-imapd")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_executable("/nonexistent/dovecot", "dovecot-imapd")


def test_a_database_refuses_a_key_ring_without_its_key(bare_config, tmp_path):
    create_app(bare_config)
    (tmp_path / "instance" / ENCRYPTION_KEYS_FILE).unlink()  # lost; a new one gets generated
    with pytest.raises(ConfigurationError, match="not among the configured encryption keys"):
        create_app(bare_config)


def test_a_new_key_in_front_of_the_old_one_is_accepted(bare_config, tmp_path):
    create_app(bare_config)
    old = (tmp_path / "instance" / ENCRYPTION_KEYS_FILE).read_text().strip()
    create_app({**bare_config, "ENCRYPTION_KEYS": f"{encryption.generate_key()},{old}"})


def test_secrets_made_with_a_key_no_longer_configured_are_named_in_a_warning_and_start_up_goes_on(
        bare_config, tmp_path, caplog):
    create_app(bare_config)
    first = (tmp_path / "instance" / ENCRYPTION_KEYS_FILE).read_text().strip()
    second = encryption.generate_key()
    create_app({**bare_config, "ENCRYPTION_KEYS": f"{second},{first}"})
    with models.db.connection_context():
        stored_credential(encryption.KeyRing(encryption.parse_keys(second)))
        stored_credential(encryption.KeyRing(encryption.parse_keys(first)), name="Garbled", username="g@example.com")
        models.Credential.update(password_ciphertext="not a ciphertext").where(
            models.Credential.name == "Garbled").execute()
    # The recorded key is still the first one, but a secret was encrypted with the second, since dropped.
    create_app({**bare_config, "ENCRYPTION_KEYS": first})  # and the keys command line stays usable to mend it
    second_fingerprint = encryption.fingerprint(encryption.parse_keys(second)[0])
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and f"encrypted with the key(s) {second_fingerprint}, which are not" in warnings[0]


def test_an_unreadable_ca_file_or_a_bad_page_size_stops_start_up(bare_config, tmp_path):
    with pytest.raises(ConfigurationError, match="MAILKEEP_CA_FILE: cannot read"):
        create_app({**bare_config, "CA_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigurationError, match="MAILKEEP_PAGE_SIZE must be a positive whole number"):
        create_app({**bare_config, "PAGE_SIZE": "abc"})


def test_the_instance_folder_and_the_database_files_are_for_their_owner_only(bare_config, tmp_path):
    create_app(bare_config)
    instance = tmp_path / "instance"
    with models.db.connection_context():
        models.Group.create(name="Customers")  # a write, so the write-ahead log exists
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in instance.iterdir()}
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert {"mailkeep.db", "mailkeep.db-wal", "mailkeep.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


def test_a_database_file_readable_by_others_is_made_private_at_start(bare_config, tmp_path):
    create_app(bare_config)
    database = tmp_path / "instance" / "mailkeep.db"
    database.chmod(0o644)
    create_app(bare_config)
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_the_http_client_logs_no_request_with_its_url(app, token_server, caplog):
    caplog.set_level(logging.DEBUG)
    with httpx2.Client() as http:
        assert http.post(token_server.token_url, data={"grant_type": "client_credentials"}).status_code == 401
    assert [record.getMessage() for record in caplog.records if record.name.startswith(("httpx", "httpcore"))] == []


def test_the_first_start_says_where_the_generated_key_is_and_later_ones_do_not(bare_config, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    create_app(bare_config)
    path = tmp_path / "instance" / ENCRYPTION_KEYS_FILE
    announced = [record.getMessage() for record in caplog.records if "Generated" in record.getMessage()]
    assert announced == [f"Generated the encryption key {path}. Back it up now, somewhere else than the database "
                         "backup: without it nobody can read the stored secrets."]
    caplog.clear()
    create_app(bare_config)
    assert not [record for record in caplog.records if "Generated" in record.getMessage()]


def test_a_lost_key_file_is_never_made_again_while_the_database_names_its_key(bare_config, tmp_path):
    create_app(bare_config)
    path = tmp_path / "instance" / ENCRYPTION_KEYS_FILE
    path.unlink()
    with pytest.raises(ConfigurationError, match=f"the key file {path} is missing"):
        create_app(bare_config)
    assert not path.exists()


@pytest.mark.parametrize("url", ["ftp://mailkeep.example.com", "http://mailkeep.example.com", "https://", "x"])
def test_the_base_url_must_be_an_https_address(bare_config, url):
    with pytest.raises(ConfigurationError, match="MAILKEEP_BASE_URL"):
        create_app({**bare_config, "BASE_URL": url})


def test_the_base_url_loses_its_trailing_slash(bare_config):
    assert create_app({**bare_config, "BASE_URL": "https://mailkeep.example.com/"}).config["BASE_URL"] == \
        "https://mailkeep.example.com"


def test_start_up_leaves_no_database_connection_for_forked_workers_to_share(app_config, database_kind, request):
    """gunicorn --preload builds the app in its master, then forks the workers: a connection still open then
    would be shared by every worker (psycopg2 and sqlite3 connections are not fork-safe)."""
    create_app(app_config)
    if database_kind == "postgresql":
        name = app_config["DATABASE_URL"].rsplit("/", 1)[1]
        server = request.getfixturevalue("postgresql_server")
        # The fixtures' own connection, kept between tests (postgres.KEPT_CONNECTION), aside.
        assert server.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name <> %s",
                              parameters=(name, KEPT_CONNECTION)) == [(0,)]
    else:
        path = app_config["DATABASE_URL"].removeprefix("sqlite:///")
        open_files = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                      if os.path.exists(f"/proc/self/fd/{fd}")]
        assert not [name for name in open_files if name.startswith(path)]
