"""What a person does in the dashboard, in a real browser against a real Dovecot."""

import re

from playwright.sync_api import expect

import models
from clients import fill_credential, label, save, settled, sign_in, watch
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET


def add_credential(page, live_server, dovecot, name="Support desk"):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port, name)
    save(page, name)


def test_from_the_first_test_to_a_guarded_delete(page, live_server, dovecot):
    page.goto(f"{live_server}/")
    page.get_by_role("button", name="Add credential").click()
    test_button = page.get_by_role("button", name="Test connection")
    expect(test_button).to_be_disabled()
    fill_credential(page, dovecot.imaps_port, password="")
    expect(test_button).to_be_disabled()  # everything but the password
    label(page, "Password").fill("not-the-password")
    label(page, "Host").fill("")
    expect(test_button).to_be_disabled()  # everything but the host
    label(page, "Host").fill("localhost")
    expect(test_button).to_be_enabled()

    calm = label(page, "Password").evaluate("input => getComputedStyle(input).borderColor")
    test_button.click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Log in failed.")
    expect(result.locator(".cause-code")).to_have_text("Cause: auth_failed")
    expect(page.locator("#test-blame-password")).to_have_text("The server rejected the username or password.")
    alarm = page.locator("#test-blame-password").evaluate("slot => getComputedStyle(slot).color")
    expect(label(page, "Password")).to_have_css("border-color", alarm)
    assert alarm != calm
    expect(result.locator(".timeline li.failed")).to_have_text(re.compile(r"^\s*Log in\s+failed"))
    expect(result.locator(".timeline li.ok")).to_have_count(4)  # resolve, connect, TLS, greeting
    expect(result.locator(".timeline li.skipped")).to_have_count(2)

    label(page, "Password").fill(CANARY)
    test_button.click()
    expect(result).to_contain_text("We were able to connect to your mailbox.")
    expect(result).to_contain_text("INBOX holds 3 messages")
    expect(result.locator(".timeline li.ok")).to_have_count(7)
    expect(page.locator("#test-blame-password")).to_be_empty()
    expect(label(page, "Password")).to_have_css("border-color", calm)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")

    page.get_by_role("link", name="Aliases", exact=True).click()
    page.get_by_role("button", name="Add alias").click()
    label(page, "Address").fill("help@example.com")
    with page.expect_response(lambda response: "credential-choices" in response.url):
        label(page, "Credential").fill("Support")
    page.get_by_role("radio", name="Support desk").check()
    label(page, "Workspace").fill("Helpdesk")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("link", name="help@example.com")).to_be_visible()

    page.get_by_role("link", name="Credentials", exact=True).click()
    row = page.locator("tr", has_text="Support desk")
    expect(row.locator("td").nth(5)).to_have_text("1")
    page.get_by_role("button", name="Delete Support desk").click()
    refusal = page.locator("#messages")
    expect(refusal).to_contain_text("Support desk was not deleted.")
    expect(refusal.get_by_role("link", name="help@example.com")).to_be_visible()
    expect(row).to_be_visible()

    page.get_by_role("link", name="Aliases", exact=True).click()
    page.get_by_role("button", name="Delete help@example.com").click()
    expect(page.get_by_role("link", name="help@example.com")).to_have_count(0)

    page.get_by_role("link", name="Credentials", exact=True).click()
    page.get_by_role("button", name="Delete Support desk").click()
    expect(page.locator("tr", has_text="Support desk")).to_have_count(0)


def test_testing_a_saved_credential_updates_its_badge(page, live_server, dovecot):
    add_credential(page, live_server, dovecot)
    row = page.locator("tr", has_text="Support desk")
    expect(row).to_contain_text("Not tested")
    expect(page.locator("#summary-unchecked")).to_have_text("1")
    row.get_by_role("button", name="Test Support desk").click()
    expect(row).to_contain_text("Working · just now")
    # The summary above the list follows the row (swapped out of band with it).
    expect(page.locator("#summary-ok")).to_have_text("1")
    expect(page.locator("#summary-unchecked")).to_have_text("0")


def test_change_password_dialog_rejects_a_mismatch(page, live_server, dovecot):
    add_credential(page, live_server, dovecot)
    page.get_by_role("button", name="Edit Support desk").click()
    expect(label(page, "Password")).to_have_count(0)  # write-only: no password field when editing
    page.get_by_role("link", name="Change password").click()
    dialog = page.get_by_role("dialog")
    label(dialog, "New password").fill("first")
    label(dialog, "Confirm password").fill("second")
    dialog.get_by_role("button", name="Save password").click()
    expect(dialog).to_contain_text("The two passwords do not match.")
    label(dialog, "New password").fill(CANARY)
    label(dialog, "Confirm password").fill(CANARY)
    dialog.get_by_role("button", name="Save password").click()
    expect(dialog).to_contain_text("The password was changed.")
    dialog.get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.get_by_role("button", name="Test connection").click()  # uses the stored password
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")


def test_security_moves_a_default_port_and_custom_data_rows_come_and_go(page, live_server):
    page.goto(f"{live_server}/credentials/new")
    expect(label(page, "Port")).to_have_value("993")
    label(page, "Security").select_option("STARTTLS")
    expect(label(page, "Port")).to_have_value("143")
    label(page, "Port").fill("1143")
    label(page, "Security").select_option("SSL/TLS")
    expect(label(page, "Port")).to_have_value("1143")  # a port the user chose stays

    page.get_by_role("button", name="Add row").click()
    page.get_by_role("button", name="Add row").click()
    keys = page.get_by_label("Key", exact=True)
    expect(keys).to_have_count(2)
    keys.nth(0).fill("queue")
    keys.nth(1).fill("owner")
    page.get_by_role("button", name="Remove").first.click()
    expect(keys).to_have_count(1)
    expect(keys.first).to_have_value("owner")


def test_search_filters_the_list_as_you_type(page, live_server, dovecot):
    add_credential(page, live_server, dovecot, "Support desk")
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port, "Billing")
    label(page, "Folder").fill("Archive")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("searchbox").fill("bill")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("Billing")
    expect(page).to_have_url(re.compile(r"q=bill"))


def test_every_page_renders_without_console_errors(page, live_server, dovecot):
    add_credential(page, live_server, dovecot)
    page.goto(f"{live_server}/aliases/new")
    label(page, "Address").fill("help@example.com")
    page.get_by_role("radio", name="Support desk").check()
    page.get_by_role("button", name="Save", exact=True).click()
    page.goto(f"{live_server}/groups/")
    label(page, "Name").fill("Customers")
    page.get_by_role("button", name="Add group").click()
    for path in ("/credentials/", "/credentials/new", "/credentials/1/edit", "/credentials/1/password",
                 "/credentials/1/client-secret", "/credentials/1/delete", "/aliases/", "/aliases/new",
                 "/aliases/1/edit", "/aliases/1/delete", "/groups/", "/groups/1/edit", "/groups/2/delete"):
        response = page.goto(f"{live_server}{path}")
        assert response.status == 200, path
        expect(page.locator("h1")).to_be_visible()
    page.goto(f"{live_server}/groups/")
    page.get_by_role("button", name="Rename Default").click()
    row = page.locator("tbody tr", has=page.locator("input[value='Default']"))
    label(row, "Name").fill("")
    row.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("tbody")).to_contain_text("This field is required.")


def test_create_edit_and_delete_work_without_javascript(browser, live_server, dovecot):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, live_server, "editor")
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    label(page, "Port").fill("99999")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#port-error")).to_have_text("Enter a port from 1 to 65535.")
    expect(label(page, "Name")).to_have_value("Support desk")
    expect(label(page, "Password")).to_have_value("")  # never sent back; typed again
    label(page, "Port").fill(str(dovecot.imaps_port))
    label(page, "Password").fill(CANARY)
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Key", exact=True).fill("queue")
    label(page, "Password").fill(CANARY)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")

    page.get_by_role("button", name="Edit Support desk").click()
    expect(page.get_by_label("Key", exact=True)).to_have_value("queue")
    label(page, "Description").fill("Edited without JavaScript")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("tbody")).to_contain_text("Edited without JavaScript")

    page.get_by_role("button", name="Delete Support desk").click()
    expect(page.locator("main")).to_contain_text("Delete the credential Support desk?")
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#messages")).to_contain_text("Deleted Support desk.")
    expect(page.locator("tbody tr")).to_have_count(0)
    context.close()


def test_autodetect_fills_the_server_when_the_user_takes_it(page, live_server):
    page.goto(f"{live_server}/credentials/new")
    label(page, "Username").fill("someone@gmail.com")
    suggestion = page.locator("#autodetect")
    expect(suggestion).to_contain_text("Gmail (from Mailkeep's provider list)")
    expect(suggestion).to_contain_text("App Password")
    expect(label(page, "Host")).to_have_value("")  # nothing changes until the user confirms
    suggestion.get_by_role("button", name="Use these settings").click()
    expect(label(page, "Host")).to_have_value("imap.gmail.com")
    expect(label(page, "Port")).to_have_value("993")
    expect(label(page, "Security")).to_have_value("ssl_tls")
    label(page, "Protocol").select_option("POP3")
    expect(label(page, "Port")).to_have_value("995")
    expect(label(page, "Folder")).to_have_value("INBOX")


def test_a_folder_is_picked_from_the_server_list(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    label(page, "Folder").fill("team inbox")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("Did you mean 'Team Inbox'?")
    label(page, "Folder").fill("INBOX")
    page.get_by_role("button", name="Test connection").click()
    picker = page.locator("#folder-picker")
    expect(picker).to_contain_text("Folders on the server:")
    picker.get_by_role("button", name="Team Inbox").click()
    expect(label(page, "Folder")).to_have_value("Team Inbox")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("Team Inbox holds 0 messages")


def test_an_oauth2_credential_tests_green_and_red_with_a_wrong_client_secret(
        page, live_server, dovecot, token_server):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port, password="")
    label(page, "Authentication").select_option("OAuth2 client credentials")
    expect(label(page, "Password")).to_be_hidden()
    label(page, "Client ID").fill(CLIENT_ID)
    label(page, "Token endpoint").fill(token_server.token_url)
    label(page, "Client secret").fill("not-the-secret")
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Get OAuth2 token failed.")
    expect(result.locator(".cause-code")).to_have_text("Cause: token_request_failed")
    expect(result).to_contain_text("invalid_client")
    expect(page.locator("#test-blame-client_secret")).to_contain_text("did not give Mailkeep an access token")
    label(page, "Client secret").fill(CLIENT_SECRET)
    page.get_by_role("button", name="Test connection").click()
    expect(result).to_contain_text("We were able to connect to your mailbox.")
    expect(result).to_contain_text("AUTHENTICATE XOAUTH2")
    page.get_by_role("button", name="Save", exact=True).click()
    row = page.locator("tr", has_text="Support desk")
    row.get_by_role("button", name="Test Support desk").click()
    expect(row).to_contain_text("Working · just now")


def test_every_remaining_page_and_htmx_interaction_keeps_the_policy(page, live_server, dovecot, app):
    """With the other browser tests, every page and every htmx interaction; the page fixture asserts no
    console error and no Content-Security-Policy violation."""
    app.config["PAGE_SIZE"] = 2
    for name in ("Alpha", "Beta", "Gamma"):
        page.goto(f"{live_server}/credentials/new")
        fill_credential(page, dovecot.imaps_port, name)
        label(page, "Folder").fill({"Alpha": "INBOX", "Beta": "Archive", "Gamma": "Team Inbox"}[name])
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator("#messages")).to_contain_text(f"Saved {name}.")
    page.get_by_role("link", name="2", exact=True).click()  # pagination swaps the list
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_label("Group", exact=True).select_option(label="Default")  # filters swap it too
    page.get_by_label("Protocol", exact=True).select_option("POP3")
    expect(page.locator(".empty")).to_have_text("No credential matches these filters.")

    page.goto(f"{live_server}/groups/")
    label(page, "Name").fill("Customers")
    page.get_by_role("button", name="Add group").click()
    page.get_by_role("button", name="Rename Customers").click()
    row = page.locator("tbody tr", has=page.locator("input[value='Customers']"))
    row.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Rename Customers").click()
    label(row, "Name").fill("Clients")
    row.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("tbody")).to_contain_text("Clients")
    page.get_by_role("button", name="Delete Default").wait_for(state="detached")  # the default group has none
    page.get_by_role("button", name="Delete Clients").click()
    expect(page.locator("tbody")).not_to_contain_text("Clients")

    page.goto(f"{live_server}/users/")
    role = page.get_by_label("Role of viewer")
    role.select_option("editor")
    page.locator("tr", has=role).get_by_role("button", name="Set role").click()
    settled(page)  # the row comes back: the old one showed "editor" already
    expect(page.locator("#messages")).to_be_empty()
    expect(page.get_by_label("Role of viewer")).to_have_value("editor")
    page.get_by_role("button", name="Disable viewer").click()
    expect(page.get_by_role("button", name="Enable viewer")).to_be_visible()
    page.get_by_role("button", name="Enable viewer").click()
    expect(page.get_by_role("button", name="Disable viewer")).to_be_visible()

    page.goto(f"{live_server}/tokens/")
    label(page, "Name").fill("browser test")
    page.get_by_role("button", name="Make token").click()
    expect(page.locator("#new-token")).to_contain_text("mkp_")
    page.get_by_role("button", name="Revoke browser test").click()
    expect(page.locator(".empty")).to_have_text("You have no API tokens.")

    page.goto(f"{live_server}/audit/")
    page.get_by_label("Action", exact=True).select_option("role_change")
    expect(page.locator("#event-list tbody tr")).to_have_count(1)
    page.get_by_label("Entry", exact=True).fill("nothing like this")
    expect(page.locator("#event-list")).to_contain_text("No event matches these filters.")

    page.goto(f"{live_server}/credentials/new")
    # Nothing filled in: the form comes back with its messages.
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#name-error")).to_have_text("This field is required.")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server}/login")
    label(page, "Username").fill("admin")
    label(page, "Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".form-errors")).to_have_text("Invalid username or password.")


def test_the_policy_recorder_would_see_a_violation(browser, live_server, app):
    """The check the page fixture makes can fail: an image from elsewhere breaks the policy, and is seen."""
    context = browser.new_context()
    page = context.new_page()
    seen = watch(page)
    page.goto(f"{live_server}/login")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=\"https://elsewhere.invalid/x.png\">')")
    page.wait_for_timeout(300)
    assert "img-src blocked https://elsewhere.invalid/x.png" in seen
    context.close()


def test_the_first_administrator_is_set_up_in_the_browser(browser, live_server, app):
    with models.db.connection_context():
        models.User.delete().execute()
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live_server}/credentials/")
    expect(page).to_have_url(f"{live_server}/setup")
    label(page, "Username").fill("root")
    for name in ("Password", "Confirm password"):
        label(page, name).fill("short")
    page.get_by_role("button", name="Create the administrator").click()
    expect(page.get_by_text("Use at least 12 characters.")).to_be_visible()
    expect(label(page, "Username")).to_have_value("root")
    for name in ("Password", "Confirm password"):
        label(page, name).fill("a long enough password")
    page.get_by_role("button", name="Create the administrator").click()
    page.wait_for_url(f"{live_server}/credentials/")
    expect(page.get_by_role("button", name="Add credential")).to_be_visible()
    context.close()
    assert problems == []


def test_a_form_whose_session_ended_says_to_reload_and_keeps_the_values(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    # fill_credential waits for the server lookup the username starts: after the session ended, it would say
    # so itself (test_access: an htmx request without a session), and race the test's message.
    fill_credential(page, dovecot.imaps_port)
    page.context.clear_cookies()  # the session ends, as after a restart with a new secret key
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#messages")).to_contain_text("This page is out of date (or your session ended).")
    expect(label(page, "Name")).to_have_value("Support desk")


def test_too_many_tests_say_when_to_try_again(browser, live_server, dovecot, app):
    app.config["TEST_RATE_LIMIT"] = "1 per minute"
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_server, "editor")
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    test_button = page.get_by_role("button", name="Test connection")
    test_button.click()
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")
    test_button.click()
    limited = re.compile(r"Too many requests for now; try again in \d+ seconds\.")
    expect(page.locator("#messages")).to_contain_text(limited)
    context.close()
    # The browser reports the refused request itself; nothing else may go wrong.
    assert [problem for problem in problems if "status of 429" not in problem] == []
