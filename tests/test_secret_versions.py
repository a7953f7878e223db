"""Secret versions: every change makes one; rotation is tested first; the replaced version stays readable for
its grace period, then retires (an injected clock, no waiting); rollback; check-and-set with If-Match."""

import json
import re
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import database
import encryption
import keys
import models
from app import create_app
from clients import signed_in
from models import AuditEvent, Credential, NotificationEvent, SecretVersion, StaleRevision
from readers import account, client_of, saved
from services import connection_tests, versions
from testdata import CANARY, MAILBOX_USER

START = datetime(2030, 1, 1, 12, 0, 0)


class Clock:
    """The application's clock (app.extensions["mailkeep.clock"]), moved by the test."""

    def __init__(self, app, now=START):
        self.now = now
        app.extensions["mailkeep.clock"] = lambda: self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


def listed(api, credential_id):
    return api.get(f"/api/v1/credentials/{credential_id}/secret-versions").get_json()["items"]


def etag(api, credential_id):
    return api.get(f"/api/v1/credentials/{credential_id}").headers["ETag"]


def test_every_change_of_a_secret_makes_a_version_and_none_shows_its_value(app, api, client):
    created = api.post("/api/v1/credentials", json={
        "name": "Support", "description": "x", "host": "imap.example.com", "username": "help@example.com",
        "password": "first password"}).get_json()
    path = f"/api/v1/credentials/{created['id']}"
    assert api.put(f"{path}/secrets/password", json={"value": "second password"}).status_code == 204
    dialog = client.post(f"/credentials/{created['id']}/password",
                         data={"new_secret": "third password", "confirm_secret": "third password"})
    assert dialog.status_code == 303
    moved = api.patch(path, json={"host": "mail.example.com", "password": "fourth password"})
    assert moved.status_code == 200
    items = listed(api, created["id"])
    assert [(item["number"], item["created_by"], item["state"]) for item in items] == [
        (4, "admin", "current"), (3, "admin", "retired"), (2, "admin", "retired"), (1, "admin", "retired")]
    body = api.get(f"{path}/secret-versions").get_data(as_text=True)
    assert not any(word in body for word in ("first password", "second", "third", "fourth password"))
    with models.db.connection_context():
        credential = Credential.get_by_id(created["id"])
        keyring = app.extensions["mailkeep.keyring"]
        current = SecretVersion.get(SecretVersion.number == 4)
        # The credential keeps its current secret where every other reader finds it; the version holds a copy.
        assert credential.unseal(keyring, "password") == current.unseal(keyring, "value") == "fourth password"
        actions = [event.action for event in AuditEvent.select().order_by(AuditEvent.id)]
    assert actions == ["create", "secret_change", "secret_change", "update"]


def test_a_replaced_version_stays_readable_for_its_grace_period_then_retires(app, api):
    clock = Clock(app)
    credential = saved(app, password="old password")
    service = client_of(app, account(groups=["Default"]))
    url = f"/api/v1/credentials/{credential.id}/connection"
    assert service.get(f"{url}?version=previous").status_code == 410  # nothing was replaced yet
    clock.advance(minutes=5)
    assert api.put(f"/api/v1/credentials/{credential.id}/secrets/password", json={"value": CANARY}).status_code == 204
    assert service.get(url).get_json()["password"] == CANARY
    previous = service.get(f"{url}?version=previous").get_json()
    assert (previous["password"], previous["version"], previous["version_state"]) == ("old password", 1, "previous")
    assert previous["readable_until"] == "2030-01-02T12:05:00Z"  # MAILKEEP_SECRET_GRACE_SECONDS: a day
    assert [item["state"] for item in listed(api, credential.id)] == ["current", "previous"]
    clock.advance(hours=23, minutes=59)
    assert service.get(f"{url}?version=previous").status_code == 200
    clock.advance(minutes=1)
    gone = service.get(f"{url}?version=previous")
    assert gone.status_code == 410 and "grace period has ended" in gone.get_json()["error"]
    assert [item["state"] for item in listed(api, credential.id)] == ["current", "retired"]
    assert service.get(f"{url}?version=oldest").status_code == 400


def test_a_newer_change_ends_the_grace_of_the_one_before(app, api):
    Clock(app)
    credential = saved(app, password="one")
    for value in ("two", "three"):
        api.put(f"/api/v1/credentials/{credential.id}/secrets/password", json={"value": value})
    assert [item["state"] for item in listed(api, credential.id)] == ["current", "previous", "retired"]
    previous = client_of(app, account(groups=["Default"])).get(
        f"/api/v1/credentials/{credential.id}/connection?version=previous").get_json()
    assert (previous["version"], previous["password"]) == (2, "two")


def test_a_login_change_retires_every_version_at_once(app, api):
    credential = saved(app, password="for the old server")
    api.put(f"/api/v1/credentials/{credential.id}/secrets/password", json={"value": "still the old server"})
    moved = api.patch(f"/api/v1/credentials/{credential.id}", json={"host": "new.example.com", "password": CANARY})
    assert moved.status_code == 200
    assert [item["state"] for item in listed(api, credential.id)] == ["current", "retired", "retired"]
    service = client_of(app, account(groups=["Default"]))
    assert service.get(f"/api/v1/credentials/{credential.id}/connection?version=previous").status_code == 410
    refused = api.post(f"/api/v1/credentials/{credential.id}/secret-versions/2/restore")
    assert refused.status_code == 409 and "another server or login" in refused.get_json()["error"]


def test_a_kept_version_is_restored_as_a_new_version(app, api):
    Clock(app)
    credential = saved(app, password=CANARY)
    api.put(f"/api/v1/credentials/{credential.id}/secrets/password", json={"value": "a mistake"})
    tag = etag(api, credential.id)
    restored = api.post(f"/api/v1/credentials/{credential.id}/secret-versions/1/restore", json={"grace_seconds": 60},
                        headers={"If-Match": tag})
    assert restored.status_code == 201 and restored.headers["ETag"] != tag
    assert restored.get_json()["version"] == {
        "number": 3, "secret": "password", "created_at": "2030-01-01T12:00:00Z", "created_by": "admin",
        "note": "restored from version 1", "state": "current", "readable_until": None}
    service = client_of(app, account(groups=["Default"]))
    assert service.get(f"/api/v1/credentials/{credential.id}/connection").get_json()["password"] == CANARY
    assert service.get(f"/api/v1/credentials/{credential.id}/connection?version=previous").get_json()[
        "readable_until"] == "2030-01-01T12:01:00Z"
    assert api.post(f"/api/v1/credentials/{credential.id}/secret-versions/3/restore").status_code == 409  # current
    assert api.post(f"/api/v1/credentials/{credential.id}/secret-versions/9/restore").status_code == 404
    with models.db.connection_context():
        event = AuditEvent.select().where(AuditEvent.action == "secret_restore").get()
    assert event.details.startswith("password: version 1 restored as version 3; version 2 readable until")


def test_only_the_last_versions_are_kept_and_the_others_leave_no_trace(app, api, tmp_path, database_kind):
    app.config["SECRET_VERSIONS_KEPT"] = 3
    credential = saved(app, password="version 1")
    with models.db.connection_context():
        first = SecretVersion.get().value_ciphertext
    for number in range(2, 6):
        api.put(f"/api/v1/credentials/{credential.id}/secrets/password", json={"value": f"version {number}"})
    assert [item["number"] for item in listed(api, credential.id)] == [5, 4, 3]
    assert api.post(f"/api/v1/credentials/{credential.id}/secret-versions/1/restore").status_code == 404
    if database_kind == "sqlite":  # secure_delete and the checkpoint leave no copy in SQLite's files
        files = b"".join(path.read_bytes() for path in tmp_path.glob("mailkeep.db*"))
        assert first.encode() not in files


def test_a_stale_if_match_changes_nothing(app, api):
    credential = saved(app)
    path = f"/api/v1/credentials/{credential.id}"
    before = api.get(path)
    tag = before.headers["ETag"]
    assert api.patch(path, json={"folder": "Archive"}, headers={"If-Match": tag}).status_code == 200
    for method, url, body in (("PATCH", path, {"folder": "Team Inbox"}),
                              ("PUT", f"{path}/secrets/password", {"value": "x"}),
                              ("POST", f"{path}/secret-versions", {"password": "x"}),
                              ("POST", f"{path}/secret-versions/1/restore", {})):
        stale = api.open(url, method=method, json=body, headers={"If-Match": tag})
        assert stale.status_code == 412, (method, url, stale.status_code)
        assert "changed since" in stale.get_json()["error"] and stale.headers["ETag"] == etag(api, credential.id)
    for junk in ('W/"junk"', '"\u00b2"', '"12345678901234567890"'):  # not a revision: a superscript two, too long
        assert api.patch(path, json={"folder": "INBOX"}, headers={"If-Match": junk}).status_code == 412, junk
    now = api.get(path)
    assert now.get_json()["folder"] == "Archive" and [item["number"] for item in listed(api, credential.id)] == [1]
    assert api.patch(path, json={"folder": "INBOX"}, headers={"If-Match": "*"}).status_code == 200
    assert api.patch(path, json={"folder": "Archive"}, headers={"If-Match": now.headers["ETag"]}).status_code == 412


def test_of_two_changes_made_against_the_same_revision_exactly_one_passes(app):
    credential = saved(app)
    claimed, outcomes = threading.Event(), []

    def second():
        with app.app_context(), models.db.connection_context():
            # As the services do: the row is read before the transaction, whose first statement is the claim
            # (a write), so on SQLite it waits for the other's lock instead of reading a snapshot first.
            row = Credential.get_by_id(credential.id)
            try:
                with models.db.atomic():
                    row.claim_revision([credential.revision])
                outcomes.append("passed")
            except StaleRevision:
                outcomes.append("stale")

    with app.app_context(), models.db.connection_context():
        row = Credential.get_by_id(credential.id)
        with models.db.atomic():
            row.claim_revision([credential.revision])
            claimed.set()
            other = threading.Thread(target=second)
            other.start()  # it waits for this transaction's lock, or starts after it: either way it is too late
        other.join()
    assert outcomes == ["stale"]


# Rotation: tested against the server first.

def test_a_rotation_is_tested_first_and_refused_with_the_cause(app, api, dovecot):
    Clock(app)
    credential = saved(app, password="an old password", host="localhost", port=dovecot.imaps_port,
                       username=MAILBOX_USER)
    url = f"/api/v1/credentials/{credential.id}/secret-versions"
    refused = api.post(url, json={"password": "not-the-password"})
    body = refused.get_json()
    assert refused.status_code == 422 and body["test"]["cause"]["code"] == "auth_failed"
    assert body["error"].startswith("Not rotated: the new secret did not work.")
    assert [item["number"] for item in listed(api, credential.id)] == [1]
    rotated = api.post(url, json={"password": CANARY, "note": "from the provider's console", "grace_seconds": 600})
    assert rotated.status_code == 201
    assert rotated.get_json()["version"]["note"] == "from the provider's console"
    assert rotated.get_json()["last_test"]["ok"] is True  # the test of exactly what is now saved counts
    assert [(item["number"], item["state"], item["readable_until"]) for item in listed(api, credential.id)] == [
        (2, "current", None), (1, "previous", "2030-01-01T12:10:00Z")]
    anyway = api.post(url, json={"password": "wrong-but-wanted", "save_anyway": True, "grace_seconds": 0})
    assert anyway.status_code == 201 and anyway.get_json()["last_test"]["ok"] is False
    assert [item["state"] for item in listed(api, credential.id)] == ["current", "retired", "retired"]
    with models.db.connection_context():
        rotations = [event.details for event in AuditEvent.select().where(AuditEvent.action == "secret_rotation")
                     .order_by(AuditEvent.id)]
    assert rotations[0] == ("password rotated to version 2; version 1 readable until 2030-01-01 12:10 UTC; "
                            "tested: working")
    assert rotations[1].endswith("tested: failing (auth_failed), saved anyway")


def test_a_rotation_sends_the_secret_its_login_needs_and_valid_values(app, api):
    credential = saved(app)
    url = f"/api/v1/credentials/{credential.id}/secret-versions"
    wrong = api.post(url, json={"client_secret": "x"})
    assert wrong.status_code == 422 and "logs in with password" in wrong.get_json()["errors"]["password"][0]
    assert api.post(url, json={"password": "x", "grace_seconds": -1}).status_code == 422
    assert api.post(url, json={"password": "x", "grace_seconds": 31 * 86400}).status_code == 422
    assert api.post(url, json={"password": "x", "save_anyway": "yes"}).status_code == 422
    assert api.post(url, json={"password": "x\r\nA1 LOGOUT"}).status_code == 422
    assert api.post(url, json={"password": "x", "note": "n" * 201}).status_code == 422


def test_a_rotation_is_announced_once_committed(app, api, dovecot, monkeypatch):
    announced = []
    announce = versions.announce_rotation
    monkeypatch.setattr(versions, "announce_rotation",
                        lambda *args, **kwargs: announced.append(announce(*args, **kwargs)))
    credential = saved(app, password="old", host="localhost", port=dovecot.imaps_port, username=MAILBOX_USER)
    Clock(app)
    api.post(f"/api/v1/credentials/{credential.id}/secret-versions", json={"password": CANARY, "grace_seconds": 60})
    api.post(f"/api/v1/credentials/{credential.id}/secret-versions/1/restore", json={"grace_seconds": 0})
    assert announced == [
        {"version": 2, "secret": "password", "previous_version": 1, "previous_readable_until": "2030-01-01T12:01:00Z"},
        {"version": 3, "secret": "password", "previous_version": None, "previous_readable_until": None},
    ]
    assert not any(CANARY in str(details) for details in announced)
    # Each is in the notification outbox, committed with its change, for the channels to deliver.
    with models.db.connection_context():
        events = list(NotificationEvent.select().where(NotificationEvent.kind == "secret.rotated")
                      .order_by(NotificationEvent.id))
    assert [json.loads(event.details) for event in events] == announced
    assert {(event.credential_id, event.actor) for event in events} == {(credential.id, "admin")}


def revisions_on(html):
    """The revisions a credential's page carries in its check-and-set forms (Rotate, each Restore)."""
    return re.findall(r'<input[^>]*name="revision"[^>]*value="([0-9]+)"', html)


def revision_of(html):
    """The one revision the page was rendered with (every form of it carries the same)."""
    [revision] = set(revisions_on(html))
    return revision


def test_the_page_rotates_tested_first_and_restores(app, dovecot):
    credential = saved(app, password="an old password", host="localhost", port=dovecot.imaps_port,
                       username=MAILBOX_USER)
    editor, viewer = signed_in(app, "editor"), signed_in(app, "viewer")
    page = f"/credentials/{credential.id}"
    shown = editor.get(page).text
    assert "Rotate the password" in shown and "Rotate the password" not in viewer.get(page).text
    form = {"new_secret": "not-the-password", "confirm_secret": "not-the-password", "note": "", "grace_hours": "24",
            "revision": revision_of(shown)}
    refused = editor.post(f"{page}/rotate", data=form)
    assert refused.status_code == 200 and "Not rotated: the new secret did not work." in refused.text
    assert "Authentication failed" in refused.text and "not-the-password" not in refused.text
    mismatch = editor.post(f"{page}/rotate", data={**form, "confirm_secret": "other"})
    assert "The two passwords do not match." in mismatch.text
    rotated = editor.post(f"{page}/rotate", data={**form, "new_secret": CANARY, "confirm_secret": CANARY,
                                                  "note": "new app password"}, follow_redirects=True)
    assert "Rotated the password of Support: version 2 is current." in rotated.text
    assert re.search(r'class="badge untested">previous</span><span class="until">, readable until', rotated.text)
    assert "new app password" in rotated.text
    restored = editor.post(f"{page}/secret-versions/1/restore", data={"revision": revision_of(rotated.text)},
                           follow_redirects=True)
    assert "Restored version 1 of Support as version 3." in restored.text
    assert viewer.post(f"{page}/secret-versions/2/restore").status_code == 403
    with models.db.connection_context():
        assert Credential.get_by_id(credential.id).unseal(app.extensions["mailkeep.keyring"], "password") == \
            "an old password"


def test_the_page_saves_a_rotation_whose_test_failed_only_when_asked(app, dovecot):
    credential = saved(app, password="an old password", host="localhost", port=dovecot.imaps_port,
                       username=MAILBOX_USER)
    editor, page = signed_in(app, "editor"), f"/credentials/{credential.id}"
    form = {"new_secret": "wrong-but-wanted", "confirm_secret": "wrong-but-wanted", "note": "the provider is down",
            "grace_hours": "0", "revision": revision_of(editor.get(page).text)}
    assert "Not rotated: the new secret did not work." in editor.post(f"{page}/rotate", data=form).text
    anyway = editor.post(f"{page}/rotate", data={**form, "save_anyway": "y"}, follow_redirects=True)
    assert "Rotated the password of Support: version 2 is current." in anyway.text
    assert "wrong-but-wanted" not in anyway.text
    with models.db.connection_context():
        stored = Credential.get_by_id(credential.id)
        assert stored.unseal(app.extensions["mailkeep.keyring"], "password") == "wrong-but-wanted"
        assert stored.last_test_ok is False  # the failed test of exactly what is now saved counts
        [rotation] = AuditEvent.select().where(AuditEvent.action == "secret_rotation")
        assert rotation.details == "password rotated to version 2; tested: failing (auth_failed), saved anyway"
        assert [(version.number, version.note, version.retired) for version in SecretVersion.of(stored)] == [
            (2, "the provider is down", False), (1, "", True)]


def page_rotation_notes(credential):
    """(number, who, note) of each version of `credential`, newest first."""
    with models.db.connection_context():
        return [(version.number, version.created_by, version.note) for version in SecretVersion.of(credential)]


def test_of_two_rotations_from_pages_rendered_at_the_same_revision_exactly_one_applies(app, dovecot):
    credential = saved(app, password="an old password", host="localhost", port=dovecot.imaps_port,
                       username=MAILBOX_USER)
    alice, bob = signed_in(app, "editor"), signed_in(app, "admin")
    page = f"/credentials/{credential.id}"
    seen = revision_of(alice.get(page).text)
    assert revision_of(bob.get(page).text) == seen
    form = {"new_secret": CANARY, "confirm_secret": CANARY, "grace_hours": "24"}
    unnamed = bob.post(f"{page}/rotate", data={**form, "note": "from no page"})  # a form without its revision
    assert unnamed.status_code == 409 and "This credential was changed meanwhile" in unnamed.text
    assert alice.post(f"{page}/rotate", data={**form, "note": "from Alice", "revision": seen}).status_code == 303
    late = bob.post(f"{page}/rotate", data={**form, "note": "from Bob", "grace_hours": "5", "save_anyway": "y",
                                             "revision": seen})
    assert late.status_code == 409
    assert "This credential was changed meanwhile, so nothing was rotated" in late.text
    assert page_rotation_notes(credential) == [(2, "editor", "from Alice"), (1, "admin", "")]
    # What Bob typed is still there (never the secret), and the form now carries the revision the page shows.
    assert re.search(r'name="note"[^>]*value="from Bob"', late.text)
    assert re.search(r'name="grace_hours"[^>]*value="5"', late.text)
    assert re.search(r'name="save_anyway"[^>]*checked|checked[^>]*name="save_anyway"', late.text)
    assert CANARY not in late.text
    with models.db.connection_context():
        current = str(Credential.get_by_id(credential.id).revision)
    assert current != seen and revision_of(late.text) == current
    # Typing the secret again on the page that shows Alice's version is a decision of its own.
    again = bob.post(f"{page}/rotate", data={**form, "note": "from Bob", "revision": revision_of(late.text)})
    assert again.status_code == 303
    assert page_rotation_notes(credential)[0] == (3, "admin", "from Bob")


def test_a_page_rotation_is_refused_when_the_credential_changes_while_its_test_runs(app, api, dovecot, monkeypatch):
    credential = saved(app, password="an old password", host="localhost", port=dovecot.imaps_port,
                       username=MAILBOX_USER)
    editor, page = signed_in(app, "editor"), f"/credentials/{credential.id}"
    revision = revision_of(editor.get(page).text)
    test = connection_tests.test

    def changed_meanwhile(*args, **kwargs):
        # Someone changes the secret while the new one is being tested: the early check passed already.
        assert api.put(f"/api/v1/credentials/{credential.id}/secrets/password",
                       json={"value": "set meanwhile"}).status_code == 204
        return test(*args, **kwargs)

    monkeypatch.setattr(connection_tests, "test", changed_meanwhile)
    refused = editor.post(f"{page}/rotate", data={"new_secret": CANARY, "confirm_secret": CANARY,
                                                   "note": "rotated", "grace_hours": "24", "revision": revision})
    assert refused.status_code == 409 and "This credential was changed meanwhile" in refused.text
    assert [number for number, _, _ in page_rotation_notes(credential)] == [2, 1]
    with models.db.connection_context():
        assert Credential.get_by_id(credential.id).unseal(app.extensions["mailkeep.keyring"], "password") == \
            "set meanwhile"
        assert AuditEvent.select().where(AuditEvent.action == "secret_rotation").count() == 0


def test_a_restore_from_a_page_out_of_date_changes_nothing(app, api):
    credential = saved(app, password="first password")
    secret_route = f"/api/v1/credentials/{credential.id}/secrets/password"
    assert api.put(secret_route, json={"value": "second password"}).status_code == 204
    editor, page = signed_in(app, "editor"), f"/credentials/{credential.id}"
    shown = editor.get(page).text
    assert 'aria-label="Restore version 1"' in shown
    assert api.put(secret_route, json={"value": "third password"}).status_code == 204  # meanwhile
    refused = editor.post(f"{page}/secret-versions/1/restore", data={"revision": revision_of(shown)},
                          follow_redirects=True)
    assert "This credential was changed meanwhile, so version 1 was not restored" in refused.text
    assert [number for number, _, _ in page_rotation_notes(credential)] == [3, 2, 1]
    assert editor.post(f"{page}/secret-versions/1/restore").status_code == 303  # no revision: refused too
    assert [number for number, _, _ in page_rotation_notes(credential)] == [3, 2, 1]
    with models.db.connection_context():
        keyring = app.extensions["mailkeep.keyring"]
        assert Credential.get_by_id(credential.id).unseal(keyring, "password") == "third password"
        assert AuditEvent.select().where(AuditEvent.action == "secret_restore").count() == 0
    restored = editor.post(f"{page}/secret-versions/1/restore", data={"revision": revision_of(refused.text)},
                           follow_redirects=True)
    assert "Restored version 1 of Support as version 4." in restored.text


def test_key_rotation_re_encrypts_the_versions_too(app_config, tmp_path):
    old_key = encryption.generate_key()
    app = create_app({**app_config, "ENCRYPTION_KEYS": old_key})
    saved(app, password=CANARY)
    database.unbind()
    new_key = encryption.generate_key()
    rotated_app = create_app({**app_config, "ENCRYPTION_KEYS": f"{new_key},{old_key}"})
    with rotated_app.app_context(), models.db.connection_context():
        done, unreadable = keys.rotate(rotated_app.extensions["mailkeep.keyring"], actor="test")
    assert (done, unreadable) == (2, 0)  # the credential's password and its version 1
    database.unbind()
    new_only = create_app({**app_config, "ENCRYPTION_KEYS": new_key})
    with models.db.connection_context():
        assert SecretVersion.get().unseal(new_only.extensions["mailkeep.keyring"], "value") == CANARY


# The upgrade: a secret stored before versions were kept becomes version 1.

FIRST_RELEASE = Path(__file__).parent / "data" / "mailkeep-0.1.sql"
FIRST_RELEASE_KEY = "ZmFrZS1sZWdhY3kta2V5LWZvci10ZXN0cy0wMDAwMDA="


@pytest.mark.sqlite_only
def test_the_upgrade_makes_every_stored_secret_its_version_one(app_config, tmp_path):
    path = tmp_path / "first-release.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(FIRST_RELEASE.read_text())
    app = create_app({**app_config, "DATABASE_URL": f"sqlite:///{path}", "ENCRYPTION_KEYS": FIRST_RELEASE_KEY})
    with app.app_context(), models.db.connection_context():
        support = Credential.get(Credential.name == "Support")
        [version] = SecretVersion.select()
        assert (version.credential_id, version.number, version.created_by) == (support.id, 1, "(upgrade)")
        assert version.unseal(app.extensions["mailkeep.keyring"], "value") == support.unseal(
            app.extensions["mailkeep.keyring"], "password")
        assert [state.state for state in versions.states(support)] == ["current"]
        assert support.revision == 1
