"""Account self-service and its administration: your own password, an admin setting someone's password and
deleting users, each logged, with the same last-admin rule as roles (services/accounts.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

import models
from clients import HTMX, at_once_past_the_check, signed_in, signed_in_through_form
from models import ApiToken, AuditEvent, User
from testdata import USER_PASSWORD

NEW_PASSWORD = "a new and longer password"
PROJECT = Path(__file__).parent.parent


def change(client, current=USER_PASSWORD, new=NEW_PASSWORD, confirm=None):
    return client.post("/account/", data={"current_password": current, "new_password": new,
                                          "confirm_password": new if confirm is None else confirm})


def signs_in(app, username, password):
    response = app.test_client().post("/login", data={"username": username, "password": password})
    return response.status_code == 303


def events(action):
    with models.db.connection_context():
        query = AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)
        return [(event.actor, event.entry_name, event.outcome, event.details) for event in query]


def test_the_account_page_shows_the_minimum_beside_the_new_password(app):
    page = signed_in(app, "viewer").get("/account/").get_data(as_text=True)
    assert "Current password" in page and '<label for="new_password">New password</label>' in page
    assert '<small id="new_password-hint" class="hint">At least 12 characters.</small>' in page
    assert 'href="/account/"' in page  # in the navigation


def test_you_change_your_own_password_knowing_the_current_one(app):
    client, elsewhere = signed_in_through_form(app, "viewer"), signed_in(app, "viewer")
    wrong = change(client, current="not my password at all")
    assert wrong.status_code == 200 and "That is not your current password." in wrong.get_data(as_text=True)
    assert "Use at least 12 characters." in change(client, new="short").get_data(as_text=True)
    assert "The two passwords do not match." in change(client, confirm="something else entirely").text
    assert signs_in(app, "viewer", USER_PASSWORD)
    changed = change(client)
    assert changed.status_code == 303 and changed.headers["Location"] == "/account/"
    assert client.get("/credentials/").status_code == 200  # this session goes on
    assert elsewhere.get("/credentials/").headers["Location"].startswith("/login")  # the others end
    assert signs_in(app, "viewer", NEW_PASSWORD) and not signs_in(app, "viewer", USER_PASSWORD)
    assert events("password_change") == [("viewer", "viewer", "refused", "the current password was wrong"),
                                          ("viewer", "viewer", "ok", "their own")]


def test_an_admin_sets_someones_password_and_their_sessions_end(app):
    admin, editor = signed_in(app, "admin"), signed_in(app, "editor")
    with models.db.connection_context():
        editor_id, admin_id = User.get(User.username == "editor").id, User.get(User.username == "admin").id
    assert "At least 12 characters." in admin.get(f"/users/{editor_id}/password").text
    short = admin.post(f"/users/{editor_id}/password", data={"new_password": "short", "confirm_password": "short"})
    assert short.status_code == 200 and "Use at least 12 characters." in short.text
    done = admin.post(f"/users/{editor_id}/password", data={"new_password": NEW_PASSWORD,
                                                           "confirm_password": NEW_PASSWORD})
    assert done.status_code == 303
    assert editor.get("/credentials/").headers["Location"].startswith("/login")
    assert signs_in(app, "editor", NEW_PASSWORD)
    own = admin.post(f"/users/{admin_id}/password", data={"new_password": NEW_PASSWORD,
                                                         "confirm_password": NEW_PASSWORD})
    assert own.status_code == 409 and "on your Account page" in own.text
    assert events("password_change") == [("admin", "editor", "ok", "reset")]


def test_deleting_a_user_takes_their_tokens_and_keeps_their_events(app):
    admin = signed_in(app, "admin")
    with models.db.connection_context():
        editor = User.get(User.username == "editor")
        _, token = ApiToken.issue(editor, "script")
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    api.post("/api/v1/groups", json={"name": "Made by the editor"})
    session = signed_in(app, "editor")
    assert "Delete the user editor and their API tokens" in admin.get(f"/users/{editor.id}/delete").text
    assert admin.post(f"/users/{editor.id}/delete", headers=HTMX).get_data(as_text=True) == ""
    assert api.get("/api/v1/credentials").status_code == 401
    assert session.get("/credentials/").headers["Location"].startswith("/login")
    with models.db.connection_context():
        assert not User.select().where(User.username == "editor").exists()
        assert not ApiToken.select().exists()
    assert events("token_revoke") == [("admin", "script (editor)", "ok", "its user was deleted")]
    assert events("user_delete") == [("admin", "editor", "ok", "")]
    assert ("editor", "Made by the editor", "ok", "") in events("create")


def test_you_cannot_delete_yourself_and_a_disabled_admin_is_not_the_one_kept(app):
    admin = signed_in(app, "admin")
    with models.db.connection_context():
        admin_id = User.get(User.username == "admin").id
        disabled_id = User.create(username="retired", role="admin", active=False, password_hash="x").id
    yourself = admin.post(f"/users/{admin_id}/delete")
    assert yourself.status_code == 409 and "You cannot delete yourself." in yourself.get_data(as_text=True)
    assert admin.post(f"/users/{disabled_id}/delete").status_code == 303
    with models.db.connection_context():
        assert [user.username for user in User.active_admins()] == ["admin"]


def test_two_admins_deleting_each_other_at_once_leave_one_admin(app, monkeypatch):
    with models.db.connection_context():
        second_id = User.add("second", USER_PASSWORD, "admin").id
        first_id = User.get(User.username == "admin").id
    first, second = signed_in(app, "admin"), signed_in(app, "second")
    answers = at_once_past_the_check(monkeypatch, [
        lambda: first.post(f"/users/{second_id}/delete"),
        lambda: second.post(f"/users/{first_id}/delete"),
    ])
    assert sorted(answer.status_code for answer in answers) == [303, 409]
    with models.db.connection_context():
        assert User.active_admins().count() == 1


@pytest.mark.runs_long
def test_passwords_are_hashed_with_scrypt_outside_the_tests(db, monkeypatch):
    # The tests hash their users' passwords cheaply (conftest); what Mailkeep itself uses is read in a process
    # that never loaded the tests' configuration.
    method = subprocess.run([sys.executable, "-c", "import models; print(models.PASSWORD_HASH_METHOD)"],
                            cwd=PROJECT, capture_output=True, text=True, check=True).stdout.strip()
    assert method == "scrypt"
    monkeypatch.setattr(models, "PASSWORD_HASH_METHOD", method)
    user = User.add("hashed", USER_PASSWORD, "viewer")
    assert user.password_hash.startswith("scrypt:32768:8:1$") and USER_PASSWORD not in user.password_hash
    assert user.check_password(USER_PASSWORD) and not user.check_password(USER_PASSWORD + "x")
