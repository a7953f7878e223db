"""Account pages in a real browser: your own password, an admin setting someone's password and deleting a
user, the Login filter and a token's expiry; the page fixture asserts no console error or CSP violation."""

from datetime import timedelta

from playwright.sync_api import expect

import models
from accessibility import problems_on_screens, violations
from clients import label
from testdata import USER_PASSWORD


def test_you_change_your_own_password_on_the_account_page(page, live_server):
    page.goto(f"{live_server}/credentials/")
    page.get_by_role("link", name="Account", exact=True).click()  # not "Service accounts"
    expect(page.locator("h1")).to_have_text("Account")
    label(page, "Current password").fill("not the password")
    label(page, "New password").fill("a new and longer password")
    label(page, "Confirm the new password").fill("a new and longer password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#current_password-error")).to_have_text("That is not your current password.")
    label(page, "Current password").fill(USER_PASSWORD)
    label(page, "New password").fill("a new and longer password")
    label(page, "Confirm the new password").fill("a new and longer password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#messages")).to_contain_text("Your password was changed")
    page.goto(f"{live_server}/credentials/")  # still signed in here
    expect(page.locator("h1")).to_have_text("Credentials")


def test_an_admin_sets_a_password_and_deletes_a_user(page, live_server, browser):
    page.goto(f"{live_server}/users/")
    page.get_by_role("button", name="Set password for editor").click()
    label(page, "New password").fill("the editor's new password")
    label(page, "Confirm the new password").fill("the editor's new password")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator("#messages")).to_contain_text("editor has a new password")
    page.get_by_role("button", name="Delete viewer").click()  # htmx: confirmed, the row goes
    expect(page.get_by_role("button", name="Delete viewer")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete admin")).to_have_count(0)  # never yourself
    with models.db.connection_context():
        assert not models.User.select().where(models.User.username == "viewer").exists()
    context = browser.new_context()
    editor = context.new_page()
    editor.goto(f"{live_server}/login")
    label(editor, "Username").fill("editor")
    label(editor, "Password").fill("the editor's new password")
    editor.get_by_role("button", name="Sign in").click()
    editor.wait_for_url(f"{live_server}/credentials/")
    context.close()


def test_the_login_filter_and_a_token_expiry_in_the_browser(page, live_server):
    page.goto(f"{live_server}/credentials/")
    page.get_by_label("Login", exact=True).select_option("oauth2_client_credentials")
    expect(page).to_have_url(f"{live_server}/credentials/?q=&group=&protocol=&auth=oauth2_client_credentials")
    page.goto(f"{live_server}/tokens/")
    label(page, "Name").fill("nightly")
    tomorrow = models.utcnow().date() + timedelta(days=1)
    label(page, "Expires on (optional)").fill(tomorrow.isoformat())
    page.get_by_role("button", name="Make token").click()
    expect(page.locator("#new-token")).to_contain_text("mkp_")
    expect(page.locator("tbody")).to_contain_text(tomorrow.isoformat())



def test_the_account_pages_fit_the_screen_and_pass_axe(page, live_server):
    screens = ({"width": 390, "height": 844}, {"width": 1280, "height": 800})
    page.set_viewport_size(screens[0])
    with models.db.connection_context():
        editor_id = models.User.get(models.User.username == "editor").id
        models.ApiToken.issue(models.User.get(models.User.username == "admin"), "nightly",
                              expires_at=models.utcnow() + timedelta(days=3))
    problems = []
    for path in ("/account/", f"/users/{editor_id}/password", f"/users/{editor_id}/delete", "/users/", "/tokens/",
                 "/credentials/?auth=password"):
        page.goto(f"{live_server}{path}")
        problems.extend(problems_on_screens(page, path, screens))
    page.goto(f"{live_server}/account/")
    page.get_by_role("button", name="Change password").click()  # nothing typed: the form shows its errors
    problems.extend(f"/account/ with errors: {finding}" for finding in violations(page))
    assert problems == []
