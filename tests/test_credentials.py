"""The credentials pages: list and filters, add and edit with per-field errors, the password step,
Test connection (against the real Dovecot), and deletion refused while aliases use a credential."""

import dataclasses
import re
import threading
from html import unescape

import pytest

import models
from clients import HTMX, signed_in
from models import Alias, Credential, Group
from testdata import CANARY, CLIENT_SECRET, MAILBOX_USER


def form_values(**overrides):
    values = {
        "name": "Support desk",
        "description": "Tickets from the helpdesk",
        "group": "1",
        "protocol": "IMAP",
        "host": "imap.example.com",
        "port": "993",
        "security": "ssl_tls",
        "username": "help@example.com",
        "password": CANARY,
        "folder": "INBOX",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def add(client, **overrides):
    return client.post("/credentials/new", data=form_values(**overrides))


def stored(name="Support desk"):
    with models.db.connection_context():
        return Credential.get(Credential.name == name)


def field_error(html, field):
    match = re.search(rf'<small id="{field}-error">([^<]*)</small>', html)
    return match and unescape(match.group(1))


def test_adding_a_credential_stores_the_password_encrypted(app, client):
    response = add(client, host="IMAP.Example.com")
    assert response.status_code == 303
    credential = stored()
    assert credential.host == "imap.example.com"
    assert CANARY not in credential.password_ciphertext
    assert credential.unseal(app.extensions["mailkeep.keyring"], "password") == CANARY
    page = client.get("/credentials/").get_data(as_text=True)
    assert "Support desk" in page and "imap.example.com:993" in page and "Not tested" in page


def test_the_form_has_the_promised_labels(client):
    html = client.get("/credentials/new").get_data(as_text=True)
    labels = re.findall(r"<label for=\"[^\"]+\">([^<]+)</label>", html)
    assert labels == ["Name", "Group", "Description", "Protocol", "Host", "Port", "Security", "Username",
                      "Folder", "Authentication", "Password", "Client ID", "Client secret", "Token endpoint", "Scope",
                      "Client secret expires on"]
    assert 'value="993"' in html and 'value="INBOX"' in html


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("description", "", "This field is required."),
        ("host", "imap example.com", "Enter a host name"),
        ("port", "70000", "Enter a port from 1 to 65535."),
        ("port", "", "Enter a port number."),
        ("username", "help@", "There must be something after the @-sign."),
        ("username", "", "This field is required."),
        ("password", "", "Enter the password."),
        ("folder", "INBOX\r\nA1 DELETE INBOX", "Line breaks"),
    ],
)
def test_a_failed_save_keeps_what_was_typed_and_says_what_is_wrong(client, field, value, message):
    response = add(client, **{field: value})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    error = field_error(html, field)
    assert error and message in error, error
    kept = {"name": 'value="Support desk"', "description": "Tickets from the helpdesk",
            "host": 'value="imap.example.com"', "username": 'value="help@example.com"'}
    for other, markup in kept.items():
        if other != field:
            assert markup in html, f"{other} was not kept"
    assert CANARY not in html  # the password is never sent back, even to refill the form
    with models.db.connection_context():
        assert Credential.select().count() == 0


def test_names_are_unique_ignoring_case(client):
    add(client)
    response = add(client, name="SUPPORT DESK", username="other@example.com")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert field_error(html, "name") == "Another credential is already called 'Support desk'."


def test_the_same_mailbox_cannot_be_saved_twice_and_the_form_names_the_entry(client):
    add(client)
    response = add(client, name="Second", username="HELP@example.com")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "&#39;Support desk&#39; already uses this protocol, host, port, username and folder." in html
    assert f'href="/credentials/{stored().id}/edit"' in html


def test_editing_has_no_password_field_and_keeps_the_password(app, client):
    add(client)
    credential = stored()
    html = client.get(f"/credentials/{credential.id}/edit").get_data(as_text=True)
    assert 'name="password"' not in html and "Change password" in html
    response = client.post(f"/credentials/{credential.id}/edit", data=form_values(name="Renamed", password=None))
    assert response.status_code == 303
    renamed = stored("Renamed")
    assert renamed.password_ciphertext == credential.password_ciphertext


def test_changing_the_password_rejects_a_mismatch_and_saves_only_the_secret(app, client):
    add(client)
    credential = stored()
    url = f"/credentials/{credential.id}/password"
    refused = client.post(url, data={"new_secret": "new-one", "confirm_secret": "other"}, headers=HTMX)
    assert refused.status_code == 200  # htmx gets the error fragment with 200; see views/__init__.py
    assert "The two passwords do not match." in refused.get_data(as_text=True)
    assert "<html" not in refused.get_data(as_text=True)
    assert stored().unseal(app.extensions["mailkeep.keyring"], "password") == CANARY
    changed = client.post(url, data={"new_secret": "new-one", "confirm_secret": "new-one"}, headers=HTMX)
    assert "The password was changed." in changed.get_data(as_text=True)
    after = stored()
    assert after.unseal(app.extensions["mailkeep.keyring"], "password") == "new-one"
    assert (after.name, after.host, after.username) == (credential.name, credential.host, credential.username)


def test_custom_data_rows_are_added_and_removed_without_javascript_and_saved_in_order(client):
    values = form_values(**{"custom_data-0-key": "ticket_queue", "custom_data-0-value": "L2",
                            "custom_data-1-key": "owner", "custom_data-1-value": "ops"})
    added = client.post("/credentials/new", data={**values, "custom_data_action": "add"})
    html = added.get_data(as_text=True)
    assert added.status_code == 200 and 'name="custom_data-2-key"' in html
    with models.db.connection_context():
        assert Credential.select().count() == 0  # Add row does not save
    removed = client.post("/credentials/new", data={**values, "custom_data_action": "remove-0"})
    assert "ticket_queue" not in removed.get_data(as_text=True) and "owner" in removed.get_data(as_text=True)
    assert client.post("/credentials/new", data=values).status_code == 303
    assert stored().custom_data == [("ticket_queue", "L2"), ("owner", "ops")]


def test_custom_data_editor_swaps_in_place_with_htmx(client):
    response = client.post("/credentials/custom-data", headers=HTMX, data={
        "custom_data-0-key": "a", "custom_data-0-value": "1", "custom_data_action": "add"})
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith("<fieldset id=\"custom-data\"")
    assert 'name="custom_data-0-key"' in html and 'name="custom_data-1-key"' in html


def test_custom_data_keys_are_unique(client):
    response = client.post("/credentials/new", data=form_values(**{
        "custom_data-0-key": "queue", "custom_data-0-value": "1",
        "custom_data-1-key": "Queue", "custom_data-1-value": "2"}))
    assert response.status_code == 200
    assert "The key &#39;Queue&#39; is used twice." in response.get_data(as_text=True)


def test_the_list_filters_by_text_group_and_protocol_and_pages(app, client):
    app.config["PAGE_SIZE"] = 2
    with models.db.connection_context():
        other = Group.create(name="Customers")
    add(client, name="Alpha", username="a@example.com")
    add(client, name="Beta", username="b@example.com", description="Billing inbox")
    add(client, name="Gamma", username="g@example.com", group=str(other.id), host="mail.customer.test")

    def names(query):
        html = client.get(f"/credentials/?{query}", headers=HTMX).get_data(as_text=True)
        assert "<html" not in html  # htmx gets the list alone
        return re.findall(r"<strong>(Alpha|Beta|Gamma)</strong>", html)

    assert names("q=billing") == ["Beta"]
    assert names("q=customer.test") == ["Gamma"]
    assert names("q=b%40example") == ["Beta"]
    assert names(f"group={other.id}") == ["Gamma"]
    assert names("protocol=IMAP") == ["Alpha", "Beta"]
    assert names("page=2") == ["Gamma"]
    assert names("q=nothing-like-this") == []
    full = client.get("/credentials/?q=billing")
    assert "<html" in full.get_data(as_text=True) and "HX-Request" in full.headers["Vary"]


def test_deleting_a_credential_used_by_aliases_is_refused_and_names_every_alias(client, caplog):
    add(client)
    credential = stored()
    with models.db.connection_context():
        first = Alias.create(address="help@example.com", credential=credential)
        second = Alias.create(address="support@example.com", credential=credential)
    response = client.post(f"/credentials/{credential.id}/delete", headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.headers["HX-Retarget"] == "#messages"
    assert f'href="/aliases/{first.id}/edit">help@example.com' in html
    assert f'href="/aliases/{second.id}/edit">support@example.com' in html
    assert "refused to delete credential" in caplog.text and "support@example.com" in caplog.text
    assert stored()
    page = client.post(f"/credentials/{credential.id}/delete")
    assert page.status_code == 409 and "support@example.com" in page.get_data(as_text=True)


def test_deleting_an_unused_credential(client):
    add(client)
    add(client, name="Other", username="other@example.com")
    assert client.get(f"/credentials/{stored().id}/delete").status_code == 200  # the page without JavaScript asks
    htmx = client.post(f"/credentials/{stored().id}/delete", headers=HTMX)
    assert (htmx.status_code, htmx.get_data()) == (200, b"")
    plain = client.post(f"/credentials/{stored('Other').id}/delete")
    assert plain.status_code == 303
    with models.db.connection_context():
        assert Credential.select().count() == 0


# Test connection, against the real Dovecot.

def dovecot_values(dovecot, **overrides):
    return form_values(**{"host": "localhost", "port": str(dovecot.imaps_port), "username": MAILBOX_USER, **overrides})


def test_testing_the_values_on_screen_succeeds(dovecot, client):
    response = client.post("/credentials/test", data=dovecot_values(dovecot), headers=HTMX)
    html = response.get_data(as_text=True)
    assert "We were able to connect to your mailbox." in html
    assert "INBOX holds 3 messages" in html
    assert re.search(r"the test took (\d+ ms|\d+\.\d s)\.", html)
    with models.db.connection_context():
        assert Credential.select().count() == 0  # testing saves nothing


def test_a_wrong_password_is_blamed_on_the_password_field(dovecot, client):
    response = client.post("/credentials/test", data=dovecot_values(dovecot, password="wrong"), headers=HTMX)
    html = response.get_data(as_text=True)
    assert "Log in failed." in html
    assert "AUTHENTICATIONFAILED" in html
    assert re.search(r'<small id="test-blame-password" class="test-blame" hx-swap-oob="true">The server rejected', html)
    assert '<small id="test-blame-host" class="test-blame" hx-swap-oob="true"></small>' in html


def test_the_stored_password_is_reused_only_for_the_same_server_and_login(dovecot, client):
    assert client.post("/credentials/new", data=dovecot_values(dovecot)).status_code == 303
    credential = stored()
    url = f"/credentials/{credential.id}/test-form"
    same = client.post(url, data=dovecot_values(dovecot, password=None), headers=HTMX)
    assert "We were able to connect to your mailbox." in same.get_data(as_text=True)
    elsewhere = client.post(url, data=dovecot_values(dovecot, password=None, host="127.0.0.1"), headers=HTMX)
    html = elsewhere.get_data(as_text=True)
    assert "will not send the saved password there" in html and 'name="password"' in html
    retyped = client.post(url, data=dovecot_values(dovecot, host="127.0.0.1"), headers=HTMX)
    assert "We were able to connect to your mailbox." in retyped.get_data(as_text=True)


def test_incomplete_values_are_not_tested(client):
    response = client.post("/credentials/test", data=form_values(host="", password=""), headers=HTMX)
    html = response.get_data(as_text=True)
    assert "Nothing was tested yet." in html
    assert re.search(r'<small id="test-blame-host" class="test-blame" hx-swap-oob="true">This field is required', html)


def test_testing_without_javascript_shows_the_result_in_the_page(dovecot, client):
    response = client.post("/credentials/test", data=dovecot_values(dovecot, password="wrong"))
    html = response.get_data(as_text=True)
    assert "<html" in html and "Log in failed." in html
    assert re.search(r'<small id="test-blame-password" class="test-blame">The server rejected', html)


def test_testing_a_saved_credential_updates_its_health_badge(dovecot, client):
    client.post("/credentials/new", data=dovecot_values(dovecot))
    client.post("/credentials/new", data=dovecot_values(dovecot, name="Broken", folder="Nope"))
    ok = client.post(f"/credentials/{stored().id}/test", headers=HTMX).get_data(as_text=True)
    assert ok.lstrip().startswith("<tr") and "Working · " in ok and "just now" in ok
    failed = client.post(f"/credentials/{stored('Broken').id}/test", headers=HTMX).get_data(as_text=True)
    assert "Failing · " in failed and "The folder &#39;Nope&#39; does not exist on the server." in failed
    assert stored().last_test_ok is True and stored("Broken").last_test_ok is False
    plain = client.post(f"/credentials/{stored().id}/test")
    assert plain.status_code == 303


def test_an_unreadable_secret_is_reported_not_crashed_on(dovecot, client):
    client.post("/credentials/new", data=dovecot_values(dovecot))
    with models.db.connection_context():
        Credential.update(password_ciphertext="mk1$0000$AAAA").execute()
    row = client.post(f"/credentials/{stored().id}/test", headers=HTMX).get_data(as_text=True)
    assert "This secret cannot be read with the current keys" in row


# A stored secret stays bound to the login it was typed for.

def test_changing_the_server_asks_for_the_password_again(app, client):
    add(client)
    credential = stored()
    moved = client.post(f"/credentials/{credential.id}/edit", data=form_values(host="evil.example.com", password=None))
    assert moved.status_code == 200
    assert field_error(moved.get_data(as_text=True), "password") == \
        "The server or login changed: type the password again for it."
    assert stored().host == "imap.example.com"
    retyped = client.post(f"/credentials/{credential.id}/edit",
                          data=form_values(host="new.example.com", password="fresh"))
    assert retyped.status_code == 303
    assert stored().unseal(app.extensions["mailkeep.keyring"], "password") == "fresh"


def test_a_secret_whose_login_changed_is_forgotten_when_not_typed_again(app, client, token_server):
    add(client)
    credential = stored()
    to_oauth2 = form_values(host="new.example.com", password=None, auth="oauth2_client_credentials",
                            client_id="app", client_secret="client-secret", token_url=token_server.token_url)
    assert client.post(f"/credentials/{credential.id}/edit", data=to_oauth2).status_code == 303
    after = stored()
    assert after.password_ciphertext is None  # never to be sent to new.example.com
    assert after.unseal(app.extensions["mailkeep.keyring"], "client_secret") == "client-secret"


def test_oauth2_needs_its_fields_and_an_https_token_endpoint(client):
    response = add(client, auth="oauth2_client_credentials", password=None, token_url="http://login.example.com/t")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert field_error(html, "client_id") == "OAuth2 needs the Client ID of your application."
    assert field_error(html, "token_url") == (
        "The token endpoint must be an https:// URL (plain http only to this machine).")
    assert field_error(html, "client_secret") == "Enter the client secret."


def test_a_pop3_credential_reads_inbox(client):
    assert add(client, protocol="POP3", port="995", folder="Archive").status_code == 303
    assert (stored().protocol, stored().folder) == ("POP3", "INBOX")


def test_the_client_secret_has_its_own_change_dialog(app, client):
    add(client, auth="oauth2_client_credentials", password=None, client_id="app", client_secret="one",
        token_url="https://login.example.com/token")
    credential = stored()
    html = client.get(f"/credentials/{credential.id}/edit").get_data(as_text=True)
    assert "Change client secret" in html and 'name="client_secret"' not in html
    dialog = client.get(f"/credentials/{credential.id}/client-secret", headers=HTMX).get_data(as_text=True)
    assert "New client secret" in dialog and "Confirm client secret" in dialog
    client.post(f"/credentials/{credential.id}/client-secret", data={"new_secret": "two", "confirm_secret": "two"})
    assert stored().unseal(app.extensions["mailkeep.keyring"], "client_secret") == "two"


def test_a_password_change_and_an_edit_at_once_both_stay(app, client):
    add(client)
    stale = stored()  # an edit that read the row before the password changed
    client.post(f"/credentials/{stale.id}/password", data={"new_secret": "newer", "confirm_secret": "newer"})
    stale.store(app.extensions["mailkeep.keyring"], {"description": "Edited meanwhile"}, {})
    after = stored()
    assert after.description == "Edited meanwhile"
    assert after.unseal(app.extensions["mailkeep.keyring"], "password") == "newer"


def test_names_differing_only_in_non_ascii_case_are_one_name(client):
    assert add(client, name="Équipe").status_code == 303
    response = add(client, name="équipe", username="other@example.com")
    assert field_error(response.get_data(as_text=True), "name") == "Another credential is already called 'Équipe'."


def test_out_of_range_page_and_group_do_not_break_the_list(client):
    add(client)
    assert "Support desk" in client.get("/credentials/?page=99999999999999999999").get_data(as_text=True)
    assert client.get("/credentials/?group=99999999999999999999").status_code == 404


def test_autodetect_offers_the_provider_settings(client):
    html = client.get("/credentials/autodetect?username=someone@gmail.com&protocol=IMAP", headers=HTMX).text
    assert "Gmail" in html and "imap.gmail.com" in html and "App Password" in html
    assert 'data-fill=\'{"host": "imap.gmail.com", "port": 993, "security": "ssl_tls"}\'' in html
    assert "offers no POP3" in client.get("/credentials/autodetect?username=a@icloud.com&protocol=POP3").text
    assert client.get("/credentials/autodetect?username=a@unknown.example").get_data(as_text=True).strip() == ""


def test_every_page_sends_the_security_headers(client):
    response = client.get("/credentials/")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_csrf_protects_every_form_post(app):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    posts = [rule for rule in app.url_map.iter_rules() if "POST" in rule.methods and not rule.rule.startswith("/api/")]
    assert len(posts) >= 10
    for rule in posts:
        url = re.sub(r"<id:\w+>", "1", rule.rule)
        assert client.post(url, data={"name": "x"}).status_code == 400, url


def test_a_form_with_a_stale_csrf_token_says_to_reload(app):
    client = signed_in(app, "editor")
    app.config["WTF_CSRF_ENABLED"] = True
    message = "This page is out of date (or your session ended). Reload it and try again."
    page = client.post("/credentials/new", data=form_values(csrf_token="stale"))
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    fragment = client.post("/credentials/new", data=form_values(csrf_token="stale"), headers=HTMX)
    assert fragment.status_code == 200 and fragment.headers["HX-Retarget"] == "#messages"
    assert message in fragment.get_data(as_text=True)
    with models.db.connection_context():
        assert not Credential.select().exists()


# Test connection in the form, issue 3: OAuth2, the folder picker, too many at once.

def test_oauth2_on_screen_goes_green_and_a_wrong_client_secret_red(dovecot, token_server, client):
    values = dovecot_values(dovecot, password=None, auth="oauth2_client_credentials", client_id="mailkeep-test",
                            client_secret=CLIENT_SECRET, token_url=token_server.token_url)
    ok = client.post("/credentials/test", data=values, headers=HTMX).get_data(as_text=True)
    assert "We were able to connect to your mailbox." in ok and "Get OAuth2 token" in ok
    wrong = client.post("/credentials/test", data={**values, "client_secret": "nope"}, headers=HTMX).text
    assert "Get OAuth2 token failed." in wrong and "invalid_client" in wrong
    assert re.search(r'<small id="test-blame-client_secret" class="test-blame" hx-swap-oob="true">The token', wrong)


def test_a_successful_test_offers_the_folders(dovecot, client):
    html = client.post("/credentials/test", data=dovecot_values(dovecot), headers=HTMX).get_data(as_text=True)
    assert '<div id="folder-picker" aria-live="polite" hx-swap-oob="true">' in html
    assert 'data-fill=\'{"folder": "Team Inbox"}\'' in html


def test_too_many_tests_at_once_are_turned_away(app, client):
    app.extensions["mailkeep.test_slots"] = threading.BoundedSemaphore(1)
    assert app.extensions["mailkeep.test_slots"].acquire(blocking=False)
    busy = client.post("/credentials/test", data=form_values(), headers=HTMX)
    assert busy.status_code == 429 and "Too many connection tests are running" in busy.get_data(as_text=True)
    assert busy.headers["Retry-After"] == "5"
    assert client.post("/credentials/test", data=form_values()).status_code == 429


def test_no_tls_is_not_a_choice_unless_allowed(client):
    assert "None (insecure)" not in client.get("/credentials/new").get_data(as_text=True)
    response = add(client, security="none", port="143")
    assert response.status_code == 200 and field_error(response.text, "security") == "Not a valid choice."


def test_no_tls_where_allowed_is_marked_in_red(app_config, app):
    app.extensions["mailkeep.policy"] = dataclasses.replace(app.extensions["mailkeep.policy"], plaintext=True)
    client = signed_in(app, "editor")
    assert "None (insecure)" in client.get("/credentials/new").get_data(as_text=True)
    assert add(client, security="none", port="143").status_code == 303
    assert '<small class="summary insecure">None (insecure)</small>' in client.get("/credentials/").text


@pytest.mark.parametrize("field", ["host", "username", "password", "folder"])
@pytest.mark.parametrize("control", ["\r\n", "\n", "\x00", "\x1b"])
def test_control_characters_that_would_split_a_command_are_refused_before_anything_is_sent(client, field, control):
    value = {"host": "imap.example.com", "username": "help", "password": CANARY, "folder": "INBOX"}[field]
    response = client.post("/credentials/test", data=form_values(**{field: value + control + "A1 LOGOUT"}),
                           headers=HTMX)
    html = response.get_data(as_text=True)
    assert "Nothing was tested yet." in html and "Check destination" not in html


def test_connection_tests_are_rate_limited_per_user(app):
    app.config["TEST_RATE_LIMIT"] = "2 per minute"
    editor, admin = signed_in(app, "editor"), signed_in(app, "admin")
    values = form_values(host="", password="")  # refused before dialling: only the limit matters here
    assert [editor.post("/credentials/test", data=values).status_code for _ in range(3)] == [200, 200, 429]
    limited = editor.post("/credentials/test", data=values, headers=HTMX)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many requests for now" in limited.get_data(as_text=True)
    assert admin.post("/credentials/test", data=values).status_code == 200  # another user has their own budget


def test_the_page_and_the_api_share_one_per_user_limit(app, api):
    app.config["TEST_RATE_LIMIT"] = "2 per minute"
    admin, editor = signed_in(app, "admin"), signed_in(app, "editor")
    values = form_values(host="", password="")
    assert admin.post("/credentials/test", data=values).status_code == 200
    assert api.post("/api/v1/connection-tests", json={}).status_code == 422  # the admin's token: same user
    assert admin.post("/credentials/test", data=values).status_code == 429
    assert editor.post("/credentials/test", data=values).status_code == 200


def test_one_users_refused_tests_do_not_use_up_the_total(app):
    app.config["TEST_RATE_LIMIT"] = "2 per minute"
    app.config["TEST_RATE_LIMIT_TOTAL"] = "5 per minute"
    admin, editor = signed_in(app, "admin"), signed_in(app, "editor")
    values = form_values(host="", password="")
    codes = [editor.post("/credentials/test", data=values).status_code for _ in range(5)]
    assert codes == [200, 200, 429, 429, 429]
    assert admin.post("/credentials/test", data=values).status_code == 200  # two of five used in total


def test_a_total_limit_caps_connection_tests_across_users(app, api):
    app.config["TEST_RATE_LIMIT_TOTAL"] = "3 per minute"
    admin, editor = signed_in(app, "admin"), signed_in(app, "editor")
    values = form_values(host="", password="")
    assert admin.post("/credentials/test", data=values).status_code == 200
    assert api.post("/api/v1/connection-tests", json={}).status_code == 422
    assert editor.post("/credentials/test", data=values).status_code == 200
    assert editor.post("/credentials/test", data=values).status_code == 429  # the editor's second, the fourth in all


def test_pages_that_show_credentials_stay_out_of_htmx_history(client):
    assert '<body hx-headers=' in client.get("/credentials/").get_data(as_text=True)
    assert 'hx-history="false"' in client.get("/credentials/").get_data(as_text=True)


# Issue "What a new user, a security review and servers other than Dovecot found".

@pytest.mark.parametrize("field", ["name", "custom_data-0-key", "custom_data-0-value"])
@pytest.mark.parametrize("control", ["\r\n", "\n", "\x1b"])
def test_single_line_fields_refuse_control_characters(client, field, control):
    values = form_values(**{"custom_data-0-key": "queue", "custom_data-0-value": "L1"})
    values[field] = values[field] + control + "forged"
    response = client.post("/credentials/new", data=values)
    assert response.status_code == 200
    assert "control characters" in response.get_data(as_text=True)
    with models.db.connection_context():
        assert Credential.select().count() == 0


def test_a_description_keeps_its_line_breaks_but_no_other_control_characters(client):
    refused = add(client, description="first\x1b[2Jsecond")
    assert field_error(refused.text, "description") == "Control characters other than line breaks are not allowed here."
    assert add(client, description="first line\r\nsecond line").status_code == 303
    assert stored().description == "first line\r\nsecond line"


def test_user_text_is_quoted_in_the_log(client, caplog):
    add(client)
    with models.db.connection_context():
        Alias.create(address="help@example.com", credential=stored())
        Alias.update(address="forged\nINFO everything is fine").execute()  # as an older Mailkeep let it be saved
    client.post(f"/credentials/{stored().id}/delete")
    record = next(record for record in caplog.records if "refused to delete" in record.getMessage())
    assert "\n" not in record.getMessage() and "forged\\nINFO" in record.getMessage()


def test_the_list_filters_by_how_a_credential_logs_in_and_pages_keep_the_filter(app, client):
    app.config["PAGE_SIZE"] = 1
    oauth = {"auth": "oauth2_client_credentials", "client_id": "c", "client_secret": "s", "password": None,
             "token_url": "https://login.example.com/token"}
    add(client, name="Alpha", username="a@example.com")
    add(client, name="Beta", username="b@example.com", **oauth)
    add(client, name="Gamma", username="g@example.com", **oauth)

    def names(query):
        html = client.get(f"/credentials/?{query}", headers=HTMX).get_data(as_text=True)
        return re.findall(r"<strong>(Alpha|Beta|Gamma)</strong>", html), html

    assert names("auth=password")[0] == ["Alpha"]
    first, html = names("auth=oauth2_client_credentials")
    assert first == ["Beta"] and 'href="/credentials/?page=2&amp;auth=oauth2_client_credentials"' in html
    assert names("auth=oauth2_client_credentials&page=2")[0] == ["Gamma"]
    page = client.get("/credentials/?auth=password").get_data(as_text=True)
    assert '<select name="auth" aria-label="Login">' in page
    assert '<option value="password" selected>Password</option>' in page
    assert '<option value="oauth2_client_credentials">OAuth2 client credentials</option>' in page


# A typed secret is asked for once: kept across a form's round trips as an encrypted draft, never as text.

def draft_of(html, name="password"):
    match = re.search(rf'<input type="hidden" name="{name}_draft" value="([^"]+)">', html)
    return match and match.group(1)


def test_a_failed_save_keeps_the_typed_password_as_a_draft_and_says_so(client):
    failed = add(client, name="")  # the duplicate check, a bad port: any failed save
    html = failed.get_data(as_text=True)
    assert CANARY not in html and draft_of(html)
    assert "The password you typed is kept (not shown). Type it again to change it." in html
    saved = client.post("/credentials/new", data=form_values(password=None, password_draft=draft_of(html)))
    assert saved.status_code == 303
    assert stored().unseal(client.application.extensions["mailkeep.keyring"], "password") == CANARY


def test_add_row_without_javascript_keeps_the_typed_password(client):
    added = client.post("/credentials/new", data={**form_values(), "custom_data_action": "add"})
    html = added.get_data(as_text=True)
    assert 'name="custom_data-0-key"' in html and draft_of(html)
    assert client.post("/credentials/new", data=form_values(
        password=None, password_draft=draft_of(html))).status_code == 303


def test_a_draft_opens_only_in_its_own_session_form_and_time(app, client, monkeypatch):
    html = add(client, name="").get_data(as_text=True)
    draft = draft_of(html)
    other_session = signed_in(app, "admin")
    refused = other_session.post("/credentials/new", data=form_values(password=None, password_draft=draft))
    assert field_error(refused.get_data(as_text=True), "password") == "Enter the password."
    add(client, name="Other", username="other@example.com")
    elsewhere = client.post(f"/credentials/{stored('Other').id}/edit", data=form_values(
        name="Other", username="other@example.com", host="moved.example.com", password=None, password_draft=draft))
    assert field_error(elsewhere.get_data(as_text=True), "password") == (
        "The server or login changed: type the password again for it.")
    tampered = client.post("/credentials/new", data=form_values(password=None, password_draft=draft[:-4] + "AAAA"))
    assert field_error(tampered.get_data(as_text=True), "password") == "Enter the password."
    monkeypatch.setattr("drafts.DRAFT_MAX_AGE_SECONDS", -1)
    expired = client.post("/credentials/new", data=form_values(password=None, password_draft=draft))
    assert field_error(expired.get_data(as_text=True), "password") == "Enter the password."


def test_the_password_typed_to_test_a_moved_credential_is_kept_for_save(app, dovecot, client):
    assert client.post("/credentials/new", data=dovecot_values(dovecot)).status_code == 303
    credential = stored()
    moved = dovecot_values(dovecot, password=None, host="127.0.0.1")
    asked = client.post(f"/credentials/{credential.id}/test-form", data=moved, headers=HTMX).get_data(as_text=True)
    assert 'name="secret_prompt" value="password"' in asked
    tested = client.post(f"/credentials/{credential.id}/test-form", headers=HTMX,
                         data={**moved, "password": CANARY, "secret_prompt": "password"}).get_data(as_text=True)
    assert "We were able to connect to your mailbox." in tested
    assert '<div id="draft-password" class="secret-draft" hx-swap-oob="true">' in tested
    assert "The password you typed for the test is kept (not shown) and Save stores it." in tested
    saved = client.post(f"/credentials/{credential.id}/edit", data={**moved, "password_draft": draft_of(tested)})
    assert saved.status_code == 303  # asked once, for the test; not again for Save
    assert stored().host == "127.0.0.1"
    assert stored().unseal(app.extensions["mailkeep.keyring"], "password") == CANARY


# A test of the values on screen counts for the entry when exactly those values are saved.

def receipt_of(html):
    match = re.search(r'<input type="hidden" name="test_receipt" value="([^"]+)">', html)
    return match and match.group(1)


def test_a_test_of_the_saved_settings_is_recorded_on_save_and_in_the_audit(dovecot, client):
    tested = client.post("/credentials/test", data=dovecot_values(dovecot), headers=HTMX).get_data(as_text=True)
    receipt = receipt_of(tested)
    assert receipt and CANARY not in receipt
    assert client.post("/credentials/new", data={**dovecot_values(dovecot), "test_receipt": receipt}).status_code == 303
    assert stored().last_test_ok is True and stored().last_test_summary.startswith("Connected;")
    with models.db.connection_context():
        events = models.AuditEvent.select().where(models.AuditEvent.action == "connection_test")
        tested, recorded = [event.details for event in events.order_by(models.AuditEvent.id)]
    assert tested.startswith(f"values on screen: IMAP localhost:{dovecot.imaps_port} as {MAILBOX_USER}.")
    assert re.match(r"values on screen, tested at \d\d:\d\d:\d\d UTC and saved unchanged: Connected;", recorded)
    with models.db.connection_context():  # the history has the test as it ran: how long, which certificate
        check = models.CredentialCheck.get()
    assert check.duration_ms > 0 and check.certificate_not_after is not None and check.certificate_issuer


def test_a_receipt_counts_only_for_the_settings_and_the_entry_it_was_made_for(dovecot, client):
    receipt = receipt_of(client.post("/credentials/test", data=dovecot_values(dovecot), headers=HTMX).text)
    changed = dovecot_values(dovecot, folder="Archive", test_receipt=receipt)
    assert client.post("/credentials/new", data=changed).status_code == 303
    assert stored().last_test_at is None  # saved, but not what was tested
    other_password = dovecot_values(dovecot, name="Other", password="another", test_receipt=receipt)
    assert client.post("/credentials/new", data=other_password).status_code == 303
    assert stored("Other").last_test_at is None  # the secret is part of what was tested
    existing = stored()
    edited = dovecot_values(dovecot, folder="INBOX", password=None, test_receipt=receipt)
    client.post(f"/credentials/{existing.id}/edit", data={**edited, "description": "x"})
    assert stored().last_test_at is None  # made for a new entry, not this one
    forged = receipt[:-2] + ("AA" if not receipt.endswith("AA") else "BB")
    client.post("/credentials/new", data=dovecot_values(dovecot, name="Third", username="third@example.test",
                                                        test_receipt=forged))
    assert stored("Third").last_test_at is None


def test_save_and_test_without_javascript_says_how_the_test_went(dovecot, client):
    response = client.post("/credentials/new", data={**dovecot_values(dovecot), "then": "test"})
    assert response.status_code == 303
    page = client.get("/credentials/").get_data(as_text=True)
    assert "Saved Support desk. Tested: working. Connected; INBOX holds 3 messages" in page
    assert stored().last_test_ok is True


def test_save_and_test_counts_against_the_connection_test_limit_and_a_plain_save_does_not(app, client):
    app.config["TEST_RATE_LIMIT"] = "1 per minute"
    assert client.post("/credentials/new", data={**form_values(), "then": "test"}).status_code == 303
    assert add(client, name="Second", username="second@example.com").status_code == 303
    limited = client.post("/credentials/new", data={**form_values(name="Third", username="t@example.com"),
                                                    "then": "test"})
    assert limited.status_code == 429


# The lists sort names the way people count.

def test_lists_sort_names_naturally(app, client):
    app.config["PAGE_SIZE"] = 2
    for number in (10, 2, 1):
        add(client, name=f"Team {number}", username=f"team{number}@example.com")
    with models.db.connection_context():
        credential = stored("Team 1")
        for number in (10, 2, 1):
            Group.create(name=f"Group {number}")
            Alias.create(address=f"team{number}@example.com", credential=credential)

    def shown(url, pattern):
        return re.findall(pattern, client.get(url).get_data(as_text=True))

    assert shown("/credentials/", r"<strong>(Team \d+)</strong>") == ["Team 1", "Team 2"]
    assert shown("/credentials/?page=2", r"<strong>(Team \d+)</strong>") == ["Team 10"]
    assert shown("/groups/", r"<strong>(Group \d+)</strong>") == ["Group 1", "Group 2", "Group 10"]
    aliases = r"<strong>(team\d+@example.com)</strong>"
    assert shown("/aliases/", aliases) + shown("/aliases/?page=2", aliases) == [
        "team1@example.com", "team2@example.com", "team10@example.com"]
    assert shown("/credentials/", r'<option value="\d+">(Group \d+)</option>') == ["Group 1", "Group 2", "Group 10"]


def test_the_custom_data_headers_share_the_rows_grid(client):
    html = client.post("/credentials/custom-data", headers=HTMX, data={"custom_data_action": "add"}).text
    grid = html[html.index('<div class="kv-grid">'):]
    assert grid.index('class="kv-head"') < grid.index('class="kv-row"')  # one grid: headers, then rows


def test_a_credential_has_a_page_of_its_own_without_its_secret(app, client):
    assert add(client, name="Support desk").status_code == 303
    with models.db.connection_context():
        credential = stored()
        credential.replace_custom_data([("queue", "L1")])
        Alias.create(address="help@example.com", credential=credential)
    page = signed_in(app, "viewer").get(f"/credentials/{credential.id}").get_data(as_text=True)
    assert "<h1>Support desk</h1>" in page and "imap.example.com:993" in page and "help@example.com" in page
    assert "queue" in page and "Password stored, never shown" in page
    assert "Edit</a>" not in page  # a viewer may not edit
    assert client.get("/credentials/999").status_code == 404
    listing = client.get("/credentials/").get_data(as_text=True)
    assert f'href="/credentials/{credential.id}"' in listing
