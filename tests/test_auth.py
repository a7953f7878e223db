"""Accounts: the first administrator, signing in and out, sessions, roles managed by admins, API tokens."""

import logging
import re
import time
from datetime import datetime, timedelta

import pytest
import redis

import access
import models
from app import create_app
from clients import HTMX, at_once_past_the_check, signed_in, signed_in_through_form
from config import ConfigurationError
from models import ApiToken, AuditEvent, User
from testdata import USER_PASSWORD


def test_with_no_users_the_only_page_is_creating_the_first_administrator(app_config):
    app = create_app(app_config)
    client = app.test_client()
    for path in ("/", "/credentials/", "/login", "/users/"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/setup", path
    assert client.get("/api/v1/credentials").status_code == 503
    # What machines read answers as it will after set-up: a load balancer's health check, Prometheus.
    assert client.get("/healthz").get_json() == {"status": "failing", "problems": ["worker: no recent heartbeat"]}
    assert client.get("/metrics").status_code == 401  # no token yet, and no network allowed without one
    weak = client.post("/setup", data={"username": "root", "password": "short", "confirm_password": "short"})
    assert weak.status_code == 200 and "Use at least 12 characters." in weak.get_data(as_text=True)
    created = client.post("/setup", data={"username": "root", "password": USER_PASSWORD,
                                          "confirm_password": USER_PASSWORD})
    assert created.status_code == 303
    assert client.get("/users/").status_code == 200  # signed in as the new admin
    assert client.get("/setup").status_code == 404  # and set-up is gone for good
    with models.db.connection_context():
        assert User.get().role == "admin"


def test_a_failed_sign_in_says_only_invalid_username_or_password(app):
    client = app.test_client()
    for username, password in (("admin", "wrong password here"), ("nobody", USER_PASSWORD)):
        response = client.post("/login", data={"username": username, "password": password})
        assert response.status_code == 200
        assert "Invalid username or password." in response.get_data(as_text=True)
    with models.db.connection_context():
        failures = AuditEvent.select().where(AuditEvent.action == "login_failed")
        events = [(event.actor, event.outcome) for event in failures]
    assert events == [("admin", "refused"), ("", "refused")]  # an unknown name is not logged: it may be a password


def test_sign_in_starts_a_new_session_with_safe_cookie_flags(app):
    client = app.test_client()
    client.get("/login")
    before = client.get_cookie("session").value
    response = client.post("/login", data={"username": "viewer", "password": USER_PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Expires=" in cookie and app.permanent_session_lifetime.total_seconds() == 30 * 60  # the idle timeout
    assert client.get_cookie("session").value != before
    assert response.headers["Location"] == "/credentials/"


def test_a_request_that_changes_nothing_cannot_put_back_an_older_session(app):
    # A cookie holds the whole session. The lookup a page makes by itself as a username is typed, answered
    # after a save, renewed the cookie with the session it had read, from before the save: "Saved ..." was lost.
    editor = signed_in_through_form(app, "editor")
    assert "Set-Cookie" in editor.get("/credentials/new").headers  # the session's first form: its CSRF token
    assert "Set-Cookie" not in editor.get("/credentials/new").headers  # nothing changed, the cookie is new
    before_save = editor.get_cookie("session").value
    saved = editor.post("/groups/", data={"name": "Helpdesk"})
    assert saved.status_code == 303 and "Set-Cookie" in saved.headers  # the notice, kept in the session
    lookup = app.test_client()
    lookup.set_cookie("session", before_save)
    answer = lookup.get("/credentials/autodetect?username=someone@gmail.com", headers=HTMX)
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers  # the browser keeps the save's cookie


def test_a_session_ends_after_the_idle_timeout_and_activity_renews_it_once_a_minute(app, monkeypatch):
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    viewer = signed_in_through_form(app, "viewer")
    viewer.get("/credentials/")  # the session's first page gives it its CSRF token: a change, a new cookie
    idle = app.permanent_session_lifetime.total_seconds()
    now += 59
    assert "Set-Cookie" not in viewer.get("/credentials/").headers
    now += 2  # a minute after the cookie was signed: this request renews it, with a new expiry
    renewed = viewer.get("/credentials/")
    assert renewed.status_code == 200 and "Expires=" in renewed.headers.get("Set-Cookie", "")
    now += idle - 1  # busy a minute ago, idle since: still signed in, counted from the renewal
    assert viewer.get("/credentials/").status_code == 200
    now += idle + 1  # idle for longer than the timeout
    assert viewer.get("/credentials/").headers["Location"].startswith("/login")


def test_the_session_cookie_is_secure_behind_https(app_config):
    from app import create_app

    app = create_app({**app_config, "HTTPS": "1"})
    with models.db.connection_context():
        User.add("someone", USER_PASSWORD, "viewer")
    response = app.test_client().post("/login", data={"username": "someone", "password": USER_PASSWORD})
    assert "Secure" in response.headers["Set-Cookie"]


def test_next_goes_only_to_this_site(app):
    client = app.test_client()
    local = client.post("/login?next=/aliases/", data={"username": "viewer", "password": USER_PASSWORD})
    assert local.headers["Location"] == "/aliases/"
    client = app.test_client()
    away = client.post("/login?next=//evil.example/", data={"username": "viewer", "password": USER_PASSWORD})
    assert away.headers["Location"] == "/credentials/"


def test_sign_ins_are_rate_limited(app):
    app.config["LOGIN_RATE_LIMIT"] = "3 per minute"
    access.limiter.reset()
    client = app.test_client()
    codes = [client.post("/login", data={"username": "admin", "password": "wrong"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.post("/login", data={"username": "admin", "password": "wrong"})
    assert int(limited.headers["Retry-After"]) > 0


@pytest.fixture
def counted_in_redis(app_config, redis_server):
    """The application under test counts its limits in the test Redis, emptied first."""
    redis_server.flush()
    app_config.update(REDIS_URL=redis_server.url, LOGIN_RATE_LIMIT="3 per minute")


@pytest.mark.runs_long
def test_with_redis_sign_in_limits_are_counted_there_and_an_outage_locks_nobody_out(
        counted_in_redis, app, redis_server, caplog):
    client = app.test_client()
    codes = [client.post("/login", data={"username": "admin", "password": "wrong"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert any(b"login" in key for key in redis.Redis.from_url(redis_server.url).keys("*"))
    redis_server.pause()
    try:
        with caplog.at_level(logging.WARNING):
            answer = client.post("/login", data={"username": "nobody", "password": "wrong"})
    finally:
        redis_server.resume()
    assert answer.status_code == 200 and "Invalid username or password." in answer.get_data(as_text=True)
    assert any("falling back to in-memory" in record.getMessage() for record in caplog.records)
    # Redis answers again: within seconds the limits count there again (Flask-Limiter checks it back off).
    store, deadline = redis.Redis.from_url(redis_server.url), time.monotonic() + 10
    store.flushall()
    while not store.keys("*") and time.monotonic() < deadline:
        client.post("/login", data={"username": "nobody", "password": "wrong"})
        time.sleep(0.2)
    assert store.keys("*"), "the limits never went back to Redis"


@pytest.mark.parametrize("proxies, limited_by_forged_header", [(0, True), (1, False)])
def test_sign_in_limits_count_per_client_behind_a_trusted_proxy_only(app_config, proxies, limited_by_forged_header):
    app = create_app({**app_config, "TRUSTED_PROXIES": proxies, "LOGIN_RATE_LIMIT": "1 per minute"})
    access.limiter.reset()
    with models.db.connection_context():
        models.User.add("admin", USER_PASSWORD, "admin")
    client = app.test_client()

    def attempt(client_address):
        return client.post("/login", data={"username": "admin", "password": "wrong"},
                           headers={"X-Forwarded-For": client_address}).status_code

    assert attempt("203.0.113.1") == 200
    assert (attempt("203.0.113.2") == 429) is limited_by_forged_header


def test_a_trusted_proxy_count_that_is_not_a_whole_number_stops_start_up(app_config):
    with pytest.raises(ConfigurationError, match="MAILKEEP_TRUSTED_PROXIES must be a whole number"):
        create_app({**app_config, "TRUSTED_PROXIES": "yes"})


def test_signing_out_ends_the_session(app):
    client = signed_in(app, "viewer")
    assert client.post("/logout").status_code == 303
    assert client.get("/credentials/").headers["Location"].startswith("/login")


def test_disabling_a_user_ends_their_sessions_and_their_tokens(app):
    viewer = signed_in(app, "viewer")
    with models.db.connection_context():
        _, token = ApiToken.issue(User.get(User.username == "viewer"), "script")
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert api.get("/api/v1/credentials").status_code == 200
    admin = signed_in(app, "admin")
    viewer_id = User.get(User.username == "viewer").id
    assert admin.post(f"/users/{viewer_id}/inactive").status_code == 303
    assert viewer.get("/credentials/").headers["Location"].startswith("/login")
    assert api.get("/api/v1/credentials").status_code == 401
    refused = app.test_client().post("/login", data={"username": "viewer", "password": USER_PASSWORD})
    assert "Invalid username or password." in refused.get_data(as_text=True)


def test_two_admins_demoting_each_other_at_once_leave_one_admin_and_a_clear_refusal(app, monkeypatch):
    with models.db.connection_context():
        second_id = User.add("second", USER_PASSWORD, "admin").id
        first_id = User.get(User.username == "admin").id
    first, second = signed_in(app, "admin"), signed_in(app, "second")
    answers = at_once_past_the_check(monkeypatch, [
        lambda: first.post(f"/users/{second_id}/role", data={"role": "editor"}),
        lambda: second.post(f"/users/{first_id}/role", data={"role": "editor"}),
    ])
    assert sorted(answer.status_code for answer in answers) == [303, 409]
    assert any("is the last active admin" in answer.get_data(as_text=True) for answer in answers)
    with models.db.connection_context():
        assert User.active_admins().count() == 1


def test_ending_sessions_from_stale_copies_of_a_user_counts_every_time(db):
    first, second = User.get(User.username == "admin"), User.get(User.username == "admin")
    first.end_sessions()
    second.end_sessions()  # loaded before the first ended them: must not write the same epoch again
    assert User.get(User.username == "admin").session_epoch == 2


def test_admins_add_users_and_change_roles_but_keep_one_admin(app):
    admin = signed_in(app, "admin")
    added = admin.post("/users/", data={"username": "carol", "password": USER_PASSWORD,
                                        "confirm_password": USER_PASSWORD, "role": "editor"})
    assert added.status_code == 303
    with models.db.connection_context():
        carol = User.get(User.username == "carol")
        admin_id = User.get(User.username == "admin").id
    row = admin.post(f"/users/{carol.id}/role", data={"role": "admin"}, headers={"HX-Request": "true"})
    assert 'value="admin" selected' in row.get_data(as_text=True)
    assert admin.post(f"/users/{admin_id}/inactive").status_code == 409  # not yourself
    admin.post(f"/users/{carol.id}/role", data={"role": "viewer"})
    last = admin.post(f"/users/{admin_id}/role", data={"role": "viewer"})
    assert last.status_code == 409 and "the last active admin" in last.get_data(as_text=True)
    with models.db.connection_context():
        changes = AuditEvent.select().where(AuditEvent.action == "role_change").order_by(AuditEvent.id)
        assert [event.details for event in changes] == ["editor to admin", "admin to viewer"]


def test_a_token_is_shown_once_kept_hashed_and_revocable(app):
    viewer = signed_in(app, "viewer")
    page = viewer.post("/tokens/", data={"name": "helpdesk sync"}).get_data(as_text=True)
    token = re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)
    assert token.startswith("mkp_")
    assert token not in viewer.get("/tokens/").get_data(as_text=True)
    with models.db.connection_context():
        stored = ApiToken.get()
    assert token not in stored.digest and len(stored.digest) == 64
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert api.get("/api/v1/credentials").status_code == 200
    assert api.post("/api/v1/groups", json={"name": "x"}).status_code == 403  # a viewer's token reads only
    assert viewer.post(f"/tokens/{stored.id}/revoke").status_code == 303
    assert api.get("/api/v1/credentials").status_code == 401
    editor = signed_in(app, "editor")
    assert editor.post(f"/tokens/{stored.id}/revoke").status_code == 404  # only your own


def test_a_copied_session_cookie_dies_with_sign_out(app):
    client = signed_in(app, "viewer")
    copied = client.get_cookie("session").value
    client.post("/logout")
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/credentials/").headers["Location"].startswith("/login")


def test_re_enabling_a_user_does_not_revive_old_sessions(app):
    viewer = signed_in(app, "viewer")
    admin = signed_in(app, "admin")
    viewer_id = User.get(User.username == "viewer").id
    admin.post(f"/users/{viewer_id}/inactive")
    admin.post(f"/users/{viewer_id}/active")
    assert viewer.get("/credentials/").headers["Location"].startswith("/login")
    assert signed_in(app, "viewer").get("/credentials/").status_code == 200


def test_nothing_planted_in_a_session_before_sign_in_survives_it(app):
    client = app.test_client()
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    client.post("/login", data={"username": "viewer", "password": USER_PASSWORD})
    with client.session_transaction() as session:
        assert "planted" not in session


@pytest.mark.parametrize("target", ["//evil.example/", "/\t/evil.example", "/\\evil.example", "https://evil.example/",
                                    "/\r/evil", "javascript:alert(1)", " /x"])
def test_next_never_leaves_the_site(app, target):
    response = app.test_client().post("/login", query_string={"next": target},
                                      data={"username": "viewer", "password": USER_PASSWORD})
    assert response.headers["Location"] == "/credentials/"


# Issue "What a new user, a security review and servers other than Dovecot found".

def sign_in_from(app, address, username, password="wrong password here"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client.post("/login", data={"username": username, "password": password})


def test_failed_sign_ins_are_limited_per_account_from_any_address_and_say_only_to_wait(app):
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "3 per minute"
    access.limiter.reset()
    for number, username in enumerate(("admin", "admin", "ADMIN ", "nobody", "nobody", "nobody")):
        refused = sign_in_from(app, f"203.0.113.{number}", username)
        assert refused.status_code == 200 and "Invalid username or password." in refused.text
    right_password = sign_in_from(app, "198.51.100.1", "admin", USER_PASSWORD)
    unknown = sign_in_from(app, "198.51.100.2", "Nobody")
    assert right_password.status_code == unknown.status_code == 429
    assert int(right_password.headers["Retry-After"]) > 0
    wait = re.compile(r"Too many requests for now; try again in \d+ seconds?\.")
    assert wait.search(right_password.text) and wait.search(unknown.text)  # alike, existing account or not
    assert "Invalid username or password" not in right_password.text
    assert sign_in_from(app, "198.51.100.1", "editor", USER_PASSWORD).status_code == 303  # other accounts go on


def test_successful_sign_ins_do_not_count_against_the_account(app):
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "2 per minute"
    access.limiter.reset()
    assert [sign_in_from(app, "203.0.113.1", "viewer", USER_PASSWORD).status_code for _ in range(4)] == [303] * 4


def test_the_account_limit_is_a_delay_that_ends_not_a_lock(app):
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "2 per 1 second"
    access.limiter.reset()
    assert [sign_in_from(app, "203.0.113.1", "admin").status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.1)
    assert sign_in_from(app, "203.0.113.1", "admin", USER_PASSWORD).status_code == 303


def test_guessing_the_current_password_on_the_account_page_counts_with_sign_ins(app):
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "2 per minute"
    access.limiter.reset()
    assert sign_in_from(app, "203.0.113.1", "viewer").status_code == 200
    viewer = signed_in(app, "viewer")
    guess = {"current_password": "a guess at it", "new_password": "x" * 20, "confirm_password": "x" * 20}
    assert viewer.post("/account/", data=guess).status_code == 200
    assert viewer.post("/account/", data=guess).status_code == 429


def test_browsers_are_told_to_keep_to_https_only_behind_https(app_config):
    assert "Strict-Transport-Security" not in create_app(app_config).test_client().get("/login").headers
    secure = create_app({**app_config, "HTTPS": "1"}).test_client().get("/login")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_session_ends_its_maximum_hours_after_sign_in_however_busy(app):
    client = signed_in_through_form(app, "viewer")
    with client.session_transaction() as session:
        signed_in_at = session[access.SIGNED_IN_AT]
        assert abs(signed_in_at - time.time()) < 60
        session[access.SIGNED_IN_AT] = signed_in_at - 11.9 * 3600
    assert client.get("/credentials/").status_code == 200  # busy all along: the idle timeout never came
    with client.session_transaction() as session:
        session[access.SIGNED_IN_AT] = signed_in_at - 12.1 * 3600
    assert client.get("/credentials/").headers["Location"].startswith("/login")
    app.config["SESSION_MAX_HOURS"] = 0.5
    assert signed_in(app, "viewer").get("/credentials/").status_code == 200
    old = signed_in(app, "viewer")
    with old.session_transaction() as session:
        session[access.SIGNED_IN_AT] = time.time() - 31 * 60
    assert old.get("/credentials/").headers["Location"].startswith("/login")


def test_a_session_from_before_sign_in_times_were_kept_ends(app):
    client = signed_in(app, "viewer")
    with client.session_transaction() as session:
        del session[access.SIGNED_IN_AT]
    assert client.get("/credentials/").headers["Location"].startswith("/login")


def test_a_token_may_expire_and_then_says_so(app):
    viewer = signed_in(app, "viewer")
    today = models.utcnow().date()
    past = viewer.post("/tokens/", data={"name": "old", "expires_on": today.isoformat()})
    assert "Choose a day after today" in past.get_data(as_text=True)
    made = viewer.post("/tokens/", data={"name": "sync", "expires_on": (today + timedelta(days=2)).isoformat()})
    token = re.search(r'<code id="new-token">([^<]+)</code>', made.get_data(as_text=True)).group(1)
    assert (today + timedelta(days=2)).isoformat() in viewer.get("/tokens/").get_data(as_text=True)
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert api.get("/api/v1/credentials").status_code == 200
    with models.db.connection_context():
        ApiToken.update(expires_at=datetime.combine(today, datetime.min.time())).execute()  # it came
    expired = api.get("/api/v1/credentials")
    assert expired.status_code == 401
    assert expired.get_json()["error"] == (f"This API token expired on {today.isoformat()}; make a new one on the "
                                           "API tokens page.")
    assert "expired" in viewer.get("/tokens/").get_data(as_text=True)


def test_enabling_a_user_again_does_not_bring_back_their_tokens(app):
    with models.db.connection_context():
        viewer = User.get(User.username == "viewer")
        _, token = ApiToken.issue(viewer, "script")
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    admin = signed_in(app, "admin")
    admin.post(f"/users/{viewer.id}/inactive")
    admin.post(f"/users/{viewer.id}/active")
    assert api.get("/api/v1/credentials").status_code == 401
    with models.db.connection_context():
        assert not ApiToken.select().where(ApiToken.user == viewer.id).exists()
        revoked = AuditEvent.get(AuditEvent.action == "token_revoke")
    assert (revoked.actor, revoked.entry_name, revoked.details) == ("admin", "script (viewer)", "its user was disabled")


def test_the_password_rule_is_said_beside_the_field_before_any_failure(app_config):
    application = create_app(app_config)
    setup = application.test_client().get("/setup").get_data(as_text=True)
    hint = '<small id="password-hint" class="hint">At least 12 characters.</small>'
    assert hint in setup and 'aria-describedby="password-hint"' in setup


def test_the_users_page_says_the_password_rule_beside_the_field(app):
    page = signed_in(app, "admin").get("/users/").get_data(as_text=True)
    assert '<small id="password-hint" class="hint">At least 12 characters.</small>' in page
