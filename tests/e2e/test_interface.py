"""The interface as a new user, a keyboard or screen-reader user and a phone meet it: Enter in the form,
Save after a test, the modal dialog, phones, row tests, form tests that count, deletes, focus, and axe-core
on every page and state."""

import re

import pytest
from playwright.sync_api import expect

import models
from accessibility import problems_on_screens
from clients import fill_credential, label, save, sign_in, start_session, watch
from servers import SocketServer, never_greet
from sign_in import registered_app
from testdata import CANARY, MAILBOX_USER

PHONE = {"width": 390, "height": 844}
# A tablet: wide enough that tables are tables again, too narrow for all their columns.
TABLET = {"width": 800, "height": 1024}
DESKTOP = {"width": 1280, "height": 800}


def no_javascript(browser, live_server, username="editor", viewport=DESKTOP):
    """A page without JavaScript, signed in through the form; its context is the caller's to close."""
    context = browser.new_context(java_script_enabled=False, viewport=viewport)
    page = context.new_page()
    sign_in(page, live_server, username)
    return context, page


def stored(name="Support desk"):
    with models.db.connection_context():
        return models.Credential.get(models.Credential.name == name)


# 1. Enter saves; it never adds or removes a custom data row.

def test_enter_in_a_field_saves_and_leaves_the_custom_data_alone(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Key", exact=True).fill("queue")
    page.get_by_label("Value", exact=True).fill("L2")
    label(page, "Host").press("Enter")
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")
    assert stored().custom_data == [("queue", "L2")]

    page.get_by_role("button", name="Edit Support desk").click()
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Key", exact=True).nth(1).fill("owner")
    label(page, "Name").fill("Support")
    label(page, "Name").press("Enter")
    expect(page.locator("#messages")).to_contain_text("Saved Support.")
    assert stored("Support").custom_data == [("queue", "L2"), ("owner", "")]


def test_enter_saves_without_javascript_too(browser, live_server, dovecot):
    context, page = no_javascript(browser, live_server)
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Key", exact=True).fill("queue")
    label(page, "Password").fill(CANARY)
    page.get_by_label("Key", exact=True).press("Enter")
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")
    page.get_by_role("button", name="Edit Support desk").click()
    label(page, "Description").fill("Edited")
    label(page, "Name").press("Enter")
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")
    assert stored().custom_data == [("queue", "")]
    context.close()


# 2 and 7. After a test without JavaScript, Save saves, and the green test is recorded.

def test_save_after_a_test_without_javascript_saves_and_records_the_test(browser, live_server, dovecot):
    context, page = no_javascript(browser, live_server)
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    page.get_by_role("button", name="Test connection").click()
    expect(page).to_have_url(f"{live_server}/credentials/test")
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")
    expect(page.locator("#draft-password")).to_contain_text("The password you typed is kept (not shown).")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Saved Support desk.")
    expect(page.locator("tr", has_text="Support desk")).to_contain_text("Working")
    context.close()


def test_a_green_test_in_the_form_is_recorded_when_the_tested_settings_are_saved(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")
    save(page)
    expect(page.locator("tr", has_text="Support desk")).to_contain_text("Working · just now")

    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port, name="Archive reader")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("We were able to connect to your mailbox.")
    label(page, "Folder").fill("Archive")  # no longer what was tested
    save(page, "Archive reader")
    expect(page.locator("tr", has_text="Archive reader")).to_contain_text("Not tested")


def test_save_and_test_saves_then_tests_and_says_how_it_went(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port, password="not-the-password")
    page.get_by_role("button", name="Save and test").click()
    expect(page.locator("#messages")).to_contain_text("Saved Support desk. Tested: failing. Log in failed")
    row = page.locator("tr", has_text="Support desk")
    expect(row).to_contain_text("Failing · just now")


# 3. The change-password dialog is modal.

def test_the_change_password_dialog_is_modal_and_gives_focus_back(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    save(page)
    page.get_by_role("button", name="Edit Support desk").click()
    opener = page.get_by_role("link", name="Change password")
    opener.click()
    dialog = page.get_by_role("dialog", name="Change password")
    expect(dialog).to_be_visible()
    expect(label(dialog, "New password")).to_be_focused()
    inside = "() => document.activeElement.closest('dialog') !== null"
    for _ in range(8):  # Tab walks the dialog's controls only, round and round
        page.keyboard.press("Tab")
        assert page.evaluate(inside) or page.evaluate("document.activeElement === document.body")
    assert page.evaluate("document.querySelector('dialog').matches(':modal')")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(opener).to_be_focused()

    opener.click()
    label(dialog, "New password").fill(CANARY)
    label(dialog, "Confirm password").fill(CANARY)
    dialog.get_by_role("button", name="Save password").click()
    expect(dialog).to_contain_text("The password was changed.")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(opener).to_be_focused()


# 5. A row's test says it is running, says how it ended, and keeps the keyboard where it was.

@pytest.fixture
def silent_server():
    """A TCP server that accepts and never says a word."""
    with SocketServer(never_greet) as server:
        yield server


def test_a_row_test_shows_testing_announces_the_outcome_and_keeps_focus(page, live_server, app, silent_server):
    # Long enough that the checks made while it runs cannot miss it on a loaded machine.
    app.config["CONNECTION_TEST_DEADLINE"] = 8.0
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, silent_server.port, name="Silent")
    save(page, "Silent")
    row = page.locator("tr", has_text="Silent")
    test_button = row.get_by_role("button", name="Test Silent")
    test_button.focus()
    page.keyboard.press("Enter")
    expect(row.locator("td.health .testing")).to_have_text("Testing…")
    expect(row.locator("td.health .testing")).to_be_visible()
    expect(row.locator(".badge")).to_be_hidden()  # "Not tested" would be wrong while it runs
    expect(page.locator("#announcer")).to_have_text("Testing Silent…")
    expect(row.locator(".badge")).to_contain_text("Failing", timeout=20_000)
    expect(row.locator("td.health .testing")).to_be_hidden()
    expect(page.locator("#announcer")).to_contain_text("Silent: failing.")
    expect(row.get_by_role("button", name="Test Silent")).to_be_focused()


# 10. A delete with htmx says so, and the last row leaves the empty state.

def test_deleting_the_last_row_says_so_and_shows_the_empty_state(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    save(page)
    page.get_by_role("button", name="Delete Support desk").click()
    expect(page.locator("#messages")).to_have_text("Deleted Support desk.")
    expect(page.locator(".empty")).to_have_text("No credentials yet. Add the first one.")
    expect(page.locator("table")).to_have_count(0)


def test_deleting_the_last_alias_says_so_and_shows_the_empty_state(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    save(page)
    page.goto(f"{live_server}/aliases/new")
    label(page, "Address").fill("help@example.com")
    page.get_by_role("radio", name="Support desk").check()
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("button", name="Delete help@example.com").click()
    expect(page.locator("#messages")).to_have_text("Deleted help@example.com.")
    expect(page.locator(".empty")).to_have_text("No aliases yet. Add the first one.")
    expect(page.locator("table")).to_have_count(0)


# 12. A provider that takes only OAuth2 gets OAuth2, and its note stays.

def test_taking_outlooks_settings_switches_to_oauth2_and_keeps_the_note(page, live_server):
    page.goto(f"{live_server}/credentials/new")
    label(page, "Username").fill("someone@outlook.com")
    suggestion = page.locator("#autodetect")
    suggestion.get_by_role("button", name="Use these settings").click()
    expect(label(page, "Authentication")).to_have_value("oauth2_client_credentials")
    expect(label(page, "Client ID")).to_be_visible()
    expect(label(page, "Scope")).to_have_value("https://outlook.office365.com/.default")
    expect(suggestion).to_contain_text("Microsoft has switched off password logins")
    expect(suggestion.locator(".taken")).to_be_focused()


# 13. Focus can be seen on every control, and a skip link leads past the navigation.

def focus_ring(locator):
    """The outline a focused element shows: (style, width, colour) as computed."""
    return locator.evaluate("e => [getComputedStyle(e).outlineStyle, getComputedStyle(e).outlineWidth, "
                            "getComputedStyle(e).outlineColor]")


def test_keyboard_focus_is_always_visible_and_a_skip_link_leads_to_the_content(page, live_server, dovecot):
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    save(page)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box and box["y"] >= 0 and box["height"] > 0, "the skip link shows when focused"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.get_by_label("Login", exact=True).focus()  # the last filter
    page.keyboard.press("Tab")
    filter_button = page.get_by_role("button", name="Filter")
    expect(filter_button).to_be_focused()
    style, width, color = focus_ring(filter_button)
    assert style == "solid" and float(width.removesuffix("px")) >= 2, (style, width)
    assert not color.startswith("rgba") or color.endswith(", 1)"), color  # opaque, not a 25% glow

    page.get_by_role("button", name="Test Support desk").focus()
    page.keyboard.press("Tab")
    edit = page.get_by_role("button", name="Edit Support desk")
    expect(edit).to_be_focused()
    style, width, color = focus_ring(edit)
    assert style == "solid" and float(width.removesuffix("px")) >= 2 and not color.startswith("rgba"), color


# 15. An error sits below its control, clear of the border; the signed-in label lines up with Sign out.

ERROR_GAPS = """() => [...document.querySelectorAll("[aria-describedby]")].flatMap((control) =>
  control.getAttribute("aria-describedby").split(" ").filter((id) => id.endsWith("-error")).map((id) => {
    const error = document.getElementById(id).getBoundingClientRect();
    return [control.id, error.top - control.getBoundingClientRect().bottom];
  }))"""


def middle(locator):
    box = locator.bounding_box()
    return box["y"] + box["height"] / 2


def test_errors_sit_clear_of_their_fields_and_the_account_bar_lines_up(page, live_server):
    page.goto(f"{live_server}/credentials/new")
    label(page, "Port").fill("70000")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#port-error")).to_be_visible()
    for screen in (PHONE, DESKTOP):
        page.set_viewport_size(screen)
        gaps = dict(page.evaluate(ERROR_GAPS))
        assert {"name", "host", "port"} <= gaps.keys(), gaps
        assert all(gap >= 1 for gap in gaps.values()), f"an error touches its control at {screen}: {gaps}"
        signed_in, sign_out = page.locator(".signed-in-as"), page.get_by_role("button", name="Sign out")
        assert abs(middle(signed_in) - middle(sign_out)) <= 2, f"the signed-in label and Sign out at {screen}"


# 4 and 17. Every page and state: no sideways scrolling on a phone, and nothing axe-core calls serious.

def check(page, where, problems, screens):
    """Record what is wrong with `page` as it is now at each of `screens`, the first its present size
    (accessibility.problems_on_screens)."""
    problems.extend(problems_on_screens(page, where, screens))


def test_the_screen_check_finds_what_it_looks_for(browser):
    """The check the sweeps rely on finds each kind of problem when one is planted: a page wider than the
    phone, a select squeezed to its arrow, and role="alert" on an <article> (axe rates it minor); axe runs at
    the tablet's width only while something is shown there that the phone hides."""
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    planted = ('<!doctype html><html lang="en"><head><title>Planted</title>'
               '<style>.squeezed { width: 3rem; } .wide { width: 600px; } .between { display: none; }'
               '@media (min-width: 700px) and (max-width: 900px) { .between { display: block; } }</style>'
               '</head><body><main><article role="alert"><p>Refused.</p></article><label for="pick">Pick</label>'
               '<select id="pick" class="squeezed"><option>A rather long choice</option></select>'
               '<p class="wide">wide</p><p class="between">Only on a tablet</p></main></body></html>')
    page.route("http://planted.test/", lambda route: route.fulfill(body=planted, content_type="text/html"))
    page.goto("http://planted.test/")
    problems = "\n".join(problems_on_screens(page, "planted", [PHONE, TABLET, DESKTOP]))
    assert "planted at 390 px: 6" in problems and "px wide at 390 px" in problems, problems
    assert "the select pick is too narrow" in problems, problems
    assert "planted at 390 px: aria-allowed-role (minor)" in problems, problems
    assert "planted at 1280 px: aria-allowed-role (minor)" in problems, problems
    assert "planted at 800 px: aria-allowed-role (minor)" in problems, problems  # the note is shown there only
    page.locator(".between").evaluate("note => note.remove()")
    problems = "\n".join(problems_on_screens(page, "planted", [PHONE, TABLET, DESKTOP]))
    context.close()
    assert "planted at 1280 px: aria-allowed-role (minor)" in problems, problems
    assert "planted at 800 px: aria-allowed-role" not in problems, problems  # covered by the two ends


def test_every_page_and_state_fits_the_screen_and_passes_axe(browser, live_server, app, dovecot):
    screens = (PHONE, TABLET, DESKTOP)
    context = browser.new_context(viewport=PHONE, reduced_motion="reduce")
    page = context.new_page()
    seen = watch(page)
    page.on("dialog", lambda dialog: dialog.accept())
    problems = []

    def visit(path, where=None):
        page.goto(f"{live_server}{path}")
        check(page, where or path, problems, screens)

    with models.db.connection_context():  # the set-up page shows only while nobody can sign in
        users = list(models.User.select().dicts())
        models.User.delete().execute()
    page.goto(f"{live_server}/setup")
    label(page, "Username").fill("root")
    check(page, "set-up", problems, screens)
    with models.db.connection_context():
        models.User.insert_many(users).execute()
    start_session(page, app, live_server, "admin")
    visit("/credentials/", "credentials, none yet")
    page.goto(f"{live_server}/credentials/new")
    page.get_by_role("button", name="Save", exact=True).click()
    check(page, "a new credential with errors", problems, screens)
    fill_credential(page, dovecot.imaps_port, password="not-the-password")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".test-result")).to_be_visible()
    check(page, "a failed test", problems, screens)
    label(page, "Password").fill(CANARY)
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Key", exact=True).fill("a-rather-long-key-for-a-phone")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".test-result.ok")).to_be_visible()
    check(page, "a green test with the folder picker", problems, screens)
    save(page)
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port, name="Wrong password", password="wrong")
    label(page, "Folder").fill("Archive")
    save(page, "Wrong password")
    page.get_by_role("button", name="Test Wrong password").click()
    expect(page.locator("tr", has_text="Wrong password")).to_contain_text("Failing")
    check(page, "credentials with badges", problems, screens)
    page.get_by_role("searchbox").fill("nothing like this")
    expect(page.locator(".empty")).to_be_visible()
    check(page, "credentials, none matching", problems, screens)

    page.goto(f"{live_server}/aliases/new")
    label(page, "Address").fill("a-long-address-for-the-helpdesk@example.com")
    with page.expect_response(lambda response: "credential-choices" in response.url):
        label(page, "Credential").fill("Support")
    expect(page.get_by_role("radio", name="Support desk")).to_have_count(1)
    check(page, "the alias form's credential search", problems, screens)
    page.get_by_role("radio", name="Support desk").check()
    page.get_by_role("button", name="Save", exact=True).click()
    check(page, "aliases", problems, screens)
    page.goto(f"{live_server}/credentials/")
    page.get_by_role("button", name="Delete Support desk").click()
    expect(page.locator("#messages")).to_contain_text("was not deleted")
    check(page, "a refused delete", problems, screens)

    page.goto(f"{live_server}/credentials/1/edit")
    label(page, "Username").fill("someone@outlook.com")
    expect(page.locator(".suggestion")).to_be_visible()
    label(page, "Host").fill("elsewhere.example.com")
    check(page, "a provider's suggestion", problems, screens)
    page.goto(f"{live_server}/credentials/1/edit")
    label(page, "Port").fill("1")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-secret")).to_be_visible()
    check(page, "the prompt for a password to test with", problems, screens)
    page.goto(f"{live_server}/credentials/1/edit")
    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    check(page, "the change-password dialog", problems, screens)

    for path in ("/credentials/1/password", "/credentials/1/delete", "/aliases/", "/aliases/1/edit", "/groups/",
                 "/groups/1/edit", "/tokens/", "/users/", "/audit/", "/audit/?action=nothing", "/no-such-page",
                 "/credentials/1", "/credentials/2", "/credentials/?health=failing", "/notifications/"):
        visit(path)
    page.goto(f"{live_server}/credentials/")
    page.get_by_role("button", name="Test all").click()
    expect(page.locator(".check-run")).to_contain_text("checked")
    check(page, "Test all's progress", problems, screens)
    page.goto(f"{live_server}/notifications/")
    label(page, "Name").fill("Ops")
    label(page, "Webhook URL").fill("https://hooks.example.com/mailkeep")
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator(".new-secret")).to_be_visible()
    check(page, "a new webhook's signing secret", problems, screens)
    page.get_by_role("button", name="Save relay").click()
    check(page, "the relay with errors", problems, screens)
    page.goto(f"{live_server}/tokens/")
    label(page, "Name").fill("phone")
    page.get_by_role("button", name="Make token").click()
    check(page, "a new token", problems, screens)

    # Service accounts and secret versions (issue 11).
    visit("/service-accounts/", "service accounts, none yet")
    label(page, "Name").fill("helpdesk")
    page.get_by_label("Default", exact=True).check()
    page.get_by_role("button", name="Add service account").click()
    check(page, "a service account", problems, screens)
    label(page, "Token name").fill("production")
    page.get_by_role("button", name="Make token").click()
    check(page, "a new service token", problems, screens)
    visit("/service-accounts/1?credential_query=support", "the service account's credential search")
    visit("/service-accounts/", "service accounts")
    page.goto(f"{live_server}/credentials/1")
    page.get_by_text("Rotate the password").click()
    label(page, "New password").fill("not-the-password")
    label(page, "Confirm it").fill("not-the-password")
    page.get_by_role("button", name="Test and rotate").click()
    expect(page.locator("#secret-versions .refused")).to_be_visible()
    check(page, "a refused rotation", problems, screens)
    label(page, "New password").fill(CANARY)
    label(page, "Confirm it").fill(CANARY)
    page.get_by_role("button", name="Test and rotate").click()
    expect(page.locator("#secret-versions")).to_contain_text("previous")
    check(page, "a credential with versions and its users", problems, screens)

    start_session(page, app, live_server, "viewer")
    for path in ("/credentials/", "/aliases/", "/groups/", "/tokens/", "/credentials/1/edit", "/credentials/1"):
        visit(path, f"{path} as a viewer")
    page.context.clear_cookies()
    visit("/login", "sign-in")
    context.close()
    assert problems == []
    assert [problem for problem in seen if "status of 40" not in problem] == []


# 15. A swap never writes a style attribute, which the Content-Security-Policy refuses.

def test_a_swap_keeps_the_policy_when_a_swapped_element_carries_a_style(page, live_server, dovecot):
    """Scripts and browser extensions style elements through the CSSOM, which the policy allows; htmx copied
    such a style to the element replacing it as an attribute, which it refuses. The page fixture fails the
    test on any violation."""
    page.goto(f"{live_server}/credentials/new")
    fill_credential(page, dovecot.imaps_port)
    save(page)
    page.locator("#credential-1").evaluate("row => { row.style.outline = '1px solid'; }")
    page.get_by_role("searchbox").fill("Support")
    expect(page).to_have_url(re.compile(r"q=Support"))
    expect(page.locator("#credential-1")).not_to_have_attribute("style", re.compile(".*"))


def test_the_oauth_pages_and_states_fit_the_screen_and_pass_axe(browser, live_server, app, dovecot, token_server):
    """OAuth2 sign-in's pages and states: the OAuth apps page and form, the sign-in in the credential form,
    a test asking to sign in, consent gone with "Sign in again", the credential's sign-in section, a refused
    return, and the Microsoft 365 preset of client credentials."""
    app.config["BASE_URL"] = live_server
    screens = (PHONE, DESKTOP)
    context = browser.new_context(viewport=PHONE, reduced_motion="reduce")
    page = context.new_page()
    seen = watch(page)
    page.on("dialog", lambda dialog: dialog.accept())
    start_session(page, app, live_server, "admin")
    problems = []

    def visit(path, where=None):
        page.goto(f"{live_server}{path}")
        check(page, where or path, problems, screens)

    visit("/oauth-apps/", "OAuth apps, none yet")
    page.goto(f"{live_server}/oauth-apps/new")
    label(page, "Provider").select_option("custom")
    page.get_by_role("button", name="Save", exact=True).click()
    check(page, "a new custom OAuth app with errors", problems, screens)
    label(page, "Provider").select_option("microsoft")
    label(page, "Name").fill("Contoso mail with a rather long name")
    label(page, "Tenant").fill("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    label(page, "Client ID").fill("11111111-2222-3333-4444-555555555555")
    label(page, "Client secret").fill("not-a-real-secret")
    label(page, "Client secret expires on (optional)").fill("2000-01-01")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(1)
    registered_app(app, token_server)
    visit("/oauth-apps/", "OAuth apps with an expired client secret")
    visit("/oauth-apps/1/edit")
    visit("/oauth-apps/1/delete")

    page.goto(f"{live_server}/credentials/new")
    label(page, "Name").fill("Signed in")
    label(page, "Description").fill("Read by signing in")
    label(page, "Host").fill("localhost")
    label(page, "Port").fill(str(dovecot.imaps_port))
    label(page, "Username").fill(MAILBOX_USER)
    label(page, "Authentication").select_option("oauth2_client_credentials")
    page.locator("details.preset summary").click()
    check(page, "the Microsoft 365 app-only preset", problems, screens)
    label(page, "Authentication").select_option("oauth2_sign_in")
    check(page, "the sign-in buttons", problems, screens)
    page.get_by_role("button", name="Save", exact=True).click()
    page.goto(f"{live_server}/credentials/1/edit")
    check(page, "a credential waiting for its sign-in", problems, screens)
    page.get_by_role("button", name="Sign in with Test provider").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#messages")).to_contain_text("Tested: working.")
    check(page, "signed in and tested", problems, screens)
    token_server.revoke_consent(MAILBOX_USER)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result .cause-code")).to_have_text("Cause: oauth_consent_required")
    check(page, "consent gone: Sign in again", problems, screens)
    visit("/credentials/1", "a credential's sign-in")
    page.goto(f"{live_server}/oauth-apps/")
    page.get_by_role("button", name="Delete Test provider").click()
    expect(page.locator("#messages")).to_contain_text("was not deleted")
    check(page, "an OAuth app still in use", problems, screens)
    visit("/oauth/callback?state=not-a-sign-in&code=x", "a refused return from the provider")
    context.close()
    assert problems == []
    assert [problem for problem in seen if "status of 40" not in problem] == []
