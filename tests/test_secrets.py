"""A secret, once saved, is never shown again: not in pages, fragments, logs, or the database in plaintext.

The autouse fixture in conftest.py checks every test for the canary; these tests
walk a credential's whole life and check that the check itself can fail.
"""

import logging
import os
import sqlite3

import pytest

import encryption
import models
from app import create_app
from clients import HTMX
from config import ConfigurationError
from encryption import KeyRing, UndecryptableSecret, parse_keys
from models import Credential
from testdata import CANARY, LEAK_RUN, LogRecorder, canary_leaks, stored_credential


@pytest.mark.sqlite_only
def test_a_credential_saved_edited_retested_and_deleted_never_shows_its_password(client, tmp_path):
    values = {"name": "Support", "description": "x", "group": "1", "protocol": "IMAP", "host": "imap.example.com",
              "port": "993", "security": "ssl_tls", "username": "help@example.com", "folder": "INBOX"}
    assert client.post("/credentials/new", data={**values, "password": CANARY}).status_code == 303
    with models.db.connection_context():
        credential_id = Credential.get().id
    pages = [f"/credentials/{credential_id}/edit", "/credentials/", f"/credentials/{credential_id}/password"]
    for page in pages:
        assert CANARY not in client.get(page).get_data(as_text=True)
    client.post(f"/credentials/{credential_id}/edit", data={**values, "name": "Renamed"})
    client.post(f"/credentials/{credential_id}/password", data={"new_secret": CANARY + "2",
                                                                 "confirm_secret": CANARY + "2"}, headers=HTMX)
    client.post("/credentials/new", data={**values, "name": "", "password": CANARY})  # failed save
    client.post(f"/credentials/{credential_id}/delete")
    database = b"".join(path.read_bytes() for path in tmp_path.glob("mailkeep.db*"))
    assert database and CANARY.encode() not in database


@pytest.mark.postgresql_only
def test_the_postgresql_check_reads_what_the_test_wrote(db, app_config, postgresql_server):
    """What the check reads of PostgreSQL after a test (conftest.database_url): the write-ahead log from the
    test's own start, and the data files changed since. A marker written meanwhile (not the canary, so this test
    does not fail the check) is in both; a sure miss of the log's range or of the files would show here."""
    marker = f"written-by-this-test-{os.urandom(8).hex()}".encode()
    name = app_config["DATABASE_URL"].rsplit("/", 1)[1]
    start, since = postgresql_server.wal_position(), postgresql_server.file_clock()
    before = postgresql_server.wal_since(start)
    models.Setting.write("probe", marker.decode())
    assert marker not in before and marker in postgresql_server.wal_since(start)  # wal_since checkpoints
    assert any(marker in path.read_bytes() for path in postgresql_server.files_of(name, since=since))


def test_the_canary_check_finds_a_planted_secret(tmp_path):
    connection = sqlite3.connect(tmp_path / "planted.db")
    connection.execute("CREATE TABLE t (secret TEXT)")
    connection.execute("INSERT INTO t VALUES (?)", (CANARY,))
    connection.commit()
    connection.close()
    leaks = canary_leaks([b"<p>" + CANARY.encode() + b"</p>"], f"DEBUG {CANARY}", files=tmp_path.glob("*.db"))
    assert leaks == [f"response {b'<p>' + CANARY.encode() + b'</p>'!r}", "the log", "planted.db"]
    (tmp_path / "planted.db").unlink()


@pytest.mark.parametrize("start", [0, 9, len(CANARY) - LEAK_RUN])
def test_the_canary_check_finds_any_four_characters_of_the_secret(start):
    """Issue 8 item 20: a secret cut short by a reply's truncation still leaks; any run of LEAK_RUN of its
    characters counts, wherever it sits in the secret, and three characters do not."""
    piece = CANARY[start:start + LEAK_RUN].encode()
    assert canary_leaks([b"<p>" + piece + b"</p>"], f"DEBUG {piece.decode()}") == [
        f"response {b'<p>' + piece + b'</p>'!r}", "the log"]
    assert canary_leaks([piece[:-1]], piece[1:].decode()) == []


def test_the_log_check_sees_what_the_test_itself_logs():
    """The autouse check reads every record of the test, not only those of its teardown."""
    recorder = next(h for h in logging.getLogger().handlers if isinstance(h, LogRecorder))
    logging.getLogger("mailkeep.test").debug("a line logged during the call")
    assert recorder.lines[-1] == "a line logged during the call"


# Keys: binding to row and field, tampering, rotation, deletion.

def _credential(app, name="Support", password=CANARY):
    with models.db.connection_context():
        return stored_credential(app.extensions["mailkeep.keyring"], password, name=name,
                                 username=f"{name.lower()}@example.com")


def test_a_ciphertext_copied_to_another_row_does_not_decrypt_and_says_so(app, client):
    first, second = _credential(app, "First"), _credential(app, "Second", "another-password")
    with models.db.connection_context():
        Credential.update(password_ciphertext=first.password_ciphertext).where(Credential.id == second.id).execute()
    page = client.get(f"/credentials/{second.id}/edit").get_data(as_text=True)
    assert "This secret cannot be read with the current keys; set it again." in page
    assert "This secret cannot be read" not in client.get(f"/credentials/{first.id}/edit").get_data(as_text=True)
    row = client.post(f"/credentials/{second.id}/test", headers=HTMX).get_data(as_text=True)
    assert "This secret cannot be read with the current keys" in row


@pytest.mark.sqlite_only
def test_a_ciphertext_left_from_a_deleted_row_does_not_decrypt_in_the_row_that_reuses_its_id(app):
    keyring = app.extensions["mailkeep.keyring"]
    deleted = _credential(app, "Deleted")
    with models.db.connection_context():
        Credential.delete_by_id(deleted.id)
        successor = stored_credential(keyring, "another-password", name="Successor")
        assert successor.id == deleted.id  # SQLite hands the highest id out again
        Credential.update(password_ciphertext=deleted.password_ciphertext).where(
            Credential.id == successor.id).execute()
        with pytest.raises(UndecryptableSecret):
            Credential.get_by_id(successor.id).unseal(keyring, "password")


def test_a_tampered_ciphertext_says_so_and_nothing_crashes(app, client):
    credential = _credential(app)
    token = credential.password_ciphertext
    with models.db.connection_context():
        Credential.update(password_ciphertext=token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")).execute()
    assert "cannot be read with the current keys" in client.get(f"/credentials/{credential.id}/edit").text


def _three_secrets_and_a_new_key(app_config):
    """Store secret-0..2 with the configured key; return (old key, new key, the app with both, new first)."""
    old, new = app_config["ENCRYPTION_KEYS"], encryption.generate_key()
    app = create_app(app_config)
    for number in range(3):
        _credential(app, f"C{number}", f"secret-{number}")
    return old, new, create_app({**app_config, "ENCRYPTION_KEYS": f"{new},{old}"})


def test_rotation_re_encrypts_everything_so_the_old_key_alone_reads_nothing(app_config, tmp_path):
    old, new, rotating = _three_secrets_and_a_new_key(app_config)
    dry = rotating.test_cli_runner().invoke(args=["keys", "rotate", "--dry-run"])
    assert dry.exit_code == 0 and "Would re-encrypt 3 secrets" in dry.output
    result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0 and "Re-encrypted 3 secrets" in result.output
    new_only, old_only = (KeyRing(parse_keys(key)) for key in (new, old))
    with models.db.connection_context():
        for number, credential in enumerate(Credential.select().order_by(Credential.id)):
            assert credential.unseal(new_only, "password") == f"secret-{number}"
            with pytest.raises(UndecryptableSecret):
                credential.unseal(old_only, "password")
        assert models.AuditEvent.get(models.AuditEvent.action == "key_rotation").details.startswith("3 secrets")
    with pytest.raises(ConfigurationError, match="not among the configured encryption keys"):
        create_app({**app_config, "ENCRYPTION_KEYS": old})
    create_app({**app_config, "ENCRYPTION_KEYS": new})


@pytest.mark.sqlite_only
def test_a_deleted_secret_is_gone_from_the_database_file_and_its_wal(app, client, tmp_path):
    credential = _credential(app)
    ciphertext = credential.password_ciphertext.split("$")[2].encode()
    files = lambda: b"".join(path.read_bytes() for path in tmp_path.glob("mailkeep.db*"))  # noqa: E731
    assert ciphertext in files()
    assert client.post(f"/credentials/{credential.id}/delete").status_code == 303
    assert ciphertext not in files()


def test_an_interrupted_rotation_changes_nothing(app_config, monkeypatch):
    old, new, rotating = _three_secrets_and_a_new_key(app_config)
    calls = []

    def fail_on_the_second(self, keyring):
        calls.append(self.id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the power goes, Ctrl-C, a crash
        return original(self, keyring)

    original = Credential.reseal
    monkeypatch.setattr(Credential, "reseal", fail_on_the_second)
    result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code != 0
    old_only = KeyRing(parse_keys(old))
    with models.db.connection_context():
        assert [c.unseal(old_only, "password") for c in Credential.select().order_by(Credential.id)] == [
            "secret-0", "secret-1", "secret-2"]
    create_app({**app_config, "ENCRYPTION_KEYS": old})  # the database still trusts the old key
