"""A secret, once saved, is never shown again: not in pages, fragments, logs, or the database in plaintext.

The autouse fixture in conftest.py checks every test for the canary; these tests
walk a credential's whole life and check that the check itself can fail.
"""

import logging
import sqlite3

import models
from models import Credential
from testdata import CANARY, LogRecorder, canary_leaks

HTMX = {"HX-Request": "true"}


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


def test_the_canary_check_finds_a_planted_secret(tmp_path):
    connection = sqlite3.connect(tmp_path / "planted.db")
    connection.execute("CREATE TABLE t (secret TEXT)")
    connection.execute("INSERT INTO t VALUES (?)", (CANARY,))
    connection.commit()
    connection.close()
    leaks = canary_leaks([b"<p>" + CANARY.encode() + b"</p>"], f"DEBUG {CANARY}", tmp_path)
    assert leaks == [f"response {b'<p>' + CANARY.encode() + b'</p>'!r}", "the log", "planted.db"]
    (tmp_path / "planted.db").unlink()


def test_the_log_check_sees_what_the_test_itself_logs():
    """The autouse check reads every record of the test, not only those of its teardown."""
    recorder = next(h for h in logging.getLogger().handlers if isinstance(h, LogRecorder))
    logging.getLogger("mailkeep.test").debug("a line logged during the call")
    assert recorder.lines[-1] == "a line logged during the call"
