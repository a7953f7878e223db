"""What a person does in the dashboard, in a real browser against a real Dovecot."""

import re

from playwright.sync_api import expect

from testdata import CANARY, MAILBOX_USER


def label(page, text):
    return page.get_by_label(text, exact=True)


def fill_credential(page, dovecot, name="Support desk", password=CANARY):
    label(page, "Name").fill(name)
    label(page, "Description").fill("Tickets from the helpdesk")
    label(page, "Host").fill("localhost")
    label(page, "Port").fill(str(dovecot.imaps_port))
    label(page, "Username").fill(MAILBOX_USER)
    label(page, "Password").fill(password)


def add_credential(page, live_server, dovecot, name="Support desk"):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot, name)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text(f"Saved {name}.")


def test_from_the_first_test_to_a_guarded_delete(page, live_server, dovecot, console_errors):
    page.goto(f"{live_server}/")
    page.get_by_role("button", name="Add credential").click()
    test_button = page.get_by_role("button", name="Test connection")
    expect(test_button).to_be_disabled()
    fill_credential(page, dovecot, password="not-the-password")
    expect(test_button).to_be_enabled()

    test_button.click()
    expect(page.locator("#test-result")).to_contain_text("Log in failed.")
    expect(page.locator("#test-blame-password")).to_have_text("The server rejected the username or password.")
    expect(label(page, "Password")).to_have_css("border-color", re.compile(r"rgb\((?!0, 0, 0)"))

    label(page, "Password").fill(CANARY)
    test_button.click()
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")
    expect(page.locator("#test-result")).to_contain_text("INBOX holds 3 messages")
    expect(page.locator("#test-blame-password")).to_be_empty()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")

    page.get_by_role("link", name="Aliases", exact=True).click()
    page.get_by_role("button", name="Add alias").click()
    label(page, "Address").fill("help@example.com")
    label(page, "Credential").select_option(label="Support desk")
    label(page, "Workspace").fill("Helpdesk")
    page.get_by_role("button", name="Save").click()
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
    assert console_errors == []


def test_testing_a_saved_credential_updates_its_badge(page, live_server, dovecot, console_errors):
    add_credential(page, live_server, dovecot)
    row = page.locator("tr", has_text="Support desk")
    expect(row).to_contain_text("Not tested")
    row.get_by_role("button", name="Test Support desk").click()
    expect(row).to_contain_text("Working · just now")
    assert console_errors == []


def test_change_password_dialog_rejects_a_mismatch(page, live_server, dovecot, console_errors):
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
    assert console_errors == []


def test_security_moves_a_default_port_and_custom_data_rows_come_and_go(page, live_server, console_errors):
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
    assert console_errors == []


def test_search_filters_the_list_as_you_type(page, live_server, dovecot, console_errors):
    add_credential(page, live_server, dovecot, "Support desk")
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot, "Billing")
    label(page, "Folder").fill("Archive")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("searchbox").fill("bill")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("Billing")
    expect(page).to_have_url(re.compile(r"q=bill"))
    assert console_errors == []


def test_every_page_renders_without_console_errors(page, live_server, dovecot, console_errors):
    add_credential(page, live_server, dovecot)
    for path in ("/credentials/", "/credentials/new", "/credentials/1/edit", "/credentials/1/password",
                 "/credentials/1/delete", "/aliases/", "/aliases/new", "/groups/", "/groups/1/edit"):
        response = page.goto(f"{live_server}{path}")
        assert response.status == 200, path
        expect(page.locator("h1")).to_be_visible()
    page.goto(f"{live_server}/groups/")
    page.get_by_role("button", name="Rename Default").click()
    row = page.locator("tbody tr").first
    label(row, "Name").fill("")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("tbody")).to_contain_text("This field is required.")
    assert console_errors == []


def test_create_edit_and_delete_work_without_javascript(browser, live_server, dovecot):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot)
    label(page, "Port").fill("99999")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#port-error")).to_have_text("Enter a port from 1 to 65535.")
    expect(label(page, "Name")).to_have_value("Support desk")
    expect(label(page, "Password")).to_have_value("")  # never sent back; typed again
    label(page, "Port").fill(str(dovecot.imaps_port))
    label(page, "Password").fill(CANARY)
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Key", exact=True).fill("queue")
    label(page, "Password").fill(CANARY)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")

    page.get_by_role("button", name="Edit Support desk").click()
    expect(page.get_by_label("Key", exact=True)).to_have_value("queue")
    label(page, "Description").fill("Edited without JavaScript")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("tbody")).to_contain_text("Edited without JavaScript")

    page.get_by_role("button", name="Delete Support desk").click()
    expect(page.locator("main")).to_contain_text("Delete the credential Support desk?")
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#messages")).to_contain_text("Deleted Support desk.")
    expect(page.locator("tbody tr")).to_have_count(0)
    context.close()
