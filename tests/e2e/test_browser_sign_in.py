"""OAuth2 sign-in in the browser, against the test authorization server and Dovecot: register a custom OAuth
app, add a credential with "Sign in", approve consent, test; every refresh keeps the provider's new refresh
token (the first one is refused by the server afterwards); consent revoked at the server shows
oauth_consent_required with "Sign in again", which restores it. With and without JavaScript."""

import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

import models
from clients import label, sign_in
from sign_in import registered_app, stored_refresh_token
from testdata import CLIENT_SECRET, MAILBOX_USER, SIGN_IN_CLIENT_ID


def refresh_at_the_server(token_server, refresh_token):
    """Use `refresh_token` at the test server directly: its answer's status and body."""
    form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token,
                                   "client_id": SIGN_IN_CLIENT_ID, "client_secret": CLIENT_SECRET}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(token_server.token_url, data=form), timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def fill_signed_in_credential(page, dovecot):
    label(page, "Name").fill("Alice's mailbox")
    label(page, "Description").fill("Read by signing in")
    label(page, "Host").fill("localhost")
    label(page, "Port").fill(str(dovecot.imaps_port))
    label(page, "Authentication").select_option("oauth2_sign_in")


def test_sign_in_test_refresh_revoke_and_sign_in_again(page, live_server, app, dovecot, token_server):
    app.config["BASE_URL"] = live_server
    page.goto(f"{live_server}/oauth-apps/")
    expect(page.locator("#redirect-uri")).to_have_text(f"{live_server}/oauth/callback")
    page.get_by_role("button", name="Add OAuth app").click()
    label(page, "Provider").select_option("custom")
    expect(label(page, "Tenant")).to_be_hidden()
    label(page, "Name").fill("Test provider")
    label(page, "OpenID Connect issuer").fill(token_server.url)
    label(page, "Mail scopes").fill("mail offline_access")
    label(page, "Client ID").fill(SIGN_IN_CLIENT_ID)
    label(page, "Client secret").fill(CLIENT_SECRET)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Saved the OAuth app Test provider.")
    expect(page.locator("tbody")).to_contain_text(SIGN_IN_CLIENT_ID)

    page.goto(f"{live_server}/credentials/new")
    fill_signed_in_credential(page, dovecot)
    expect(label(page, "Password")).to_be_hidden()
    page.get_by_role("button", name="Sign in with Test provider").click()
    expect(page.get_by_role("heading", name="Sign in to the test provider")).to_be_visible()
    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(f"{live_server}/credentials/1/edit")
    expect(page.locator("#messages")).to_contain_text(
        f"Signed in as {MAILBOX_USER} with Test provider. The Username is now {MAILBOX_USER}. Tested: working.")
    expect(label(page, "Username")).to_have_value(MAILBOX_USER)
    expect(label(page, "Description")).to_have_value("Read by signing in")  # saved before the sign-in
    first = stored_refresh_token(app, 1)

    result = page.locator("#test-result")

    def test_connection():
        with page.expect_response(lambda response: response.url.endswith("/test-form")):
            page.get_by_role("button", name="Test connection").click()

    test_connection()
    expect(result).to_contain_text("We were able to connect to your mailbox.")
    expect(result).to_contain_text("refresh-token grant")
    second = stored_refresh_token(app, 1)
    test_connection()
    expect(result.locator(".timeline")).to_contain_text("a new refresh token replaces the one used")
    third = stored_refresh_token(app, 1)
    assert len({first, second, third}) == 3  # each refresh's new token was kept
    status, body = refresh_at_the_server(token_server, first)
    assert status == 400 and "invalid_grant" in body  # the first is refused by the server
    assert token_server.refresh_token_works(third)

    token_server.revoke_consent(MAILBOX_USER)
    test_connection()
    expect(result.locator(".cause-code")).to_have_text("Cause: oauth_consent_required")
    expect(result).to_contain_text("The provider no longer accepts this sign-in (invalid_grant).")
    expect(result).to_contain_text("invalid_grant: The user has withdrawn consent.")
    expect(page.locator("#test-blame-refresh_token")).to_contain_text("no longer accepts this sign-in")
    result.get_by_role("button", name="Sign in again", exact=True).click()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#messages")).to_contain_text(
        f"Signed in as {MAILBOX_USER} with Test provider. Tested: working.")
    test_connection()
    expect(result).to_contain_text("We were able to connect to your mailbox.")
    with models.db.connection_context():
        credential = models.Credential.get_by_id(1)
        assert (credential.description, credential.folder, credential.last_test_ok) == (
            "Read by signing in", "INBOX", True)

    page.goto(f"{live_server}/credentials/1")
    section = page.get_by_role("region", name="Sign-in")
    expect(section).to_contain_text(MAILBOX_USER)
    expect(section).to_contain_text("Test provider (Custom)")


def test_a_declined_sign_in_keeps_the_saved_form_and_says_why(page, live_server, app, dovecot, token_server):
    app.config["BASE_URL"] = live_server
    registered_app(app, token_server)
    page.goto(f"{live_server}/credentials/new")
    fill_signed_in_credential(page, dovecot)
    page.get_by_role("button", name="Sign in with Test provider").click()
    page.get_by_role("button", name="Deny").click()
    expect(page.locator("#messages")).to_contain_text(
        "Custom did not sign you in: access_denied: The user declined consent.")
    expect(label(page, "Name")).to_have_value("Alice's mailbox")
    expect(page.locator(".sign-in")).to_contain_text("Not signed in yet.")


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}], ids=["phone"])
def test_sign_in_works_without_javascript(browser, live_server, app, dovecot, token_server, viewport):
    app.config["BASE_URL"] = live_server
    registered_app(app, token_server)
    context = browser.new_context(java_script_enabled=False, viewport=viewport)
    page = context.new_page()
    sign_in(page, live_server, "editor")
    page.goto(f"{live_server}/credentials/new")
    fill_signed_in_credential(page, dovecot)
    page.get_by_role("button", name="Sign in with Test provider").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#messages")).to_contain_text("Tested: working.")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")
    context.close()
