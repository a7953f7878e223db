"""How tests act as users: the test users ("viewer", "editor", "admin", password USER_PASSWORD)
signed in to a Flask test client or a browser page, and what a browser page must never show.

Most tests need a session, not a sign-in: ``signed_in`` and ``start_session`` put one in place the way
a sign-in leaves it (Flask-Login's session keys), without the sign-in form and its password hash. The
tests about signing in use the form: ``signed_in_through_form`` and ``sign_in``.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import expect

import access
import models
from testdata import CANARY, MAILBOX_USER, USER_PASSWORD

# What htmx sends with every request it makes.
HTMX = {"HX-Request": "true"}


def signed_in(app, username):
    """A Flask test client with a session of `username`, as signing in would leave it."""
    client = app.test_client()
    with models.db.connection_context():
        user = models.User.get(models.User.username == username)
    with client.session_transaction() as session:
        session.permanent = True
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
        session[access.SIGNED_IN_AT] = time.time()
    return client


def signed_in_through_form(app, username):
    """A Flask test client signed in as `username` through the sign-in form."""
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": USER_PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def start_session(page, app, live_server, username):
    """Give a Playwright `page` a session of `username` (its cookie), as signing in would leave it."""
    cookie = signed_in(app, username).get_cookie("session")
    page.context.add_cookies([{"name": "session", "value": cookie.value, "url": live_server}])


def sign_in(page, live_server, username):
    """Sign a Playwright `page` in through the sign-in form."""
    page.goto(f"{live_server}/login")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/credentials/")


# Reports every Content-Security-Policy violation of every document the page loads to the test.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline code"}`);
});
"""


# Hides each document until it has loaded (its deferred scripts run, htmx has processed the page), so that
# Playwright, which waits for what it acts on to be visible, acts when a person could: a click in the
# milliseconds before htmx is ready would take the page's no-JavaScript path instead. A constructed style
# sheet, which the page's Content-Security-Policy (style-src 'self') does not govern.
ACT_ONCE_LOADED = """
const untilLoaded = new CSSStyleSheet();
untilLoaded.replaceSync("body { visibility: hidden !important; }");
document.adoptedStyleSheets = [...document.adoptedStyleSheets, untilLoaded];
window.addEventListener("load", () => {
  document.adoptedStyleSheets = document.adoptedStyleSheets.filter((sheet) => sheet !== untilLoaded);
});
"""


def loaded(page):
    """Wait until the document `page` shows has loaded: its scripts ran and htmx is ready (ACT_ONCE_LOADED
    hides it until then). For after an expectation only the new page of a navigation meets (its message), before
    acting on it by keyboard or focus, which do not wait for the page to show."""
    page.wait_for_load_state("load")


def label(page, text):
    """The form control of `page` whose label is exactly `text`."""
    return page.get_by_label(text, exact=True)


def fill_credential(page, port, name="Support desk", password=CANARY, host="localhost"):
    """Fill the credential form on `page`: an IMAP mailbox of the test user on `host`:`port`."""
    label(page, "Name").fill(name)
    label(page, "Description").fill("Tickets from the helpdesk")
    label(page, "Host").fill(host)
    label(page, "Port").fill(str(port))
    fill_username(page, MAILBOX_USER)
    label(page, "Password").fill(password)


def save(page, name="Support desk"):
    """Press the credential form's Save and wait for "Saved `name`." and the list page it leads to."""
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text(f"Saved {name}.")
    loaded(page)


def fill_username(page, username):
    """Type `username` into a credential form's Username and, with JavaScript, wait for the answer to the
    server lookup it starts (400 ms later), so the suggestion it swaps in under the field is in place before
    the test goes on. (Its answer renewed the session cookie with the session as it was before a Save pressed
    meanwhile, losing the save's "Saved ..." message; access.SlidingSessionCookie now renews an unchanged
    session's cookie only once it is a minute old.)"""
    field = label(page, "Username")
    if not page.evaluate("() => typeof htmx !== 'undefined'"):  # without JavaScript there is no lookup
        field.fill(username)
        return
    with page.expect_response(lambda response: "/credentials/autodetect" in response.url):
        field.fill(username)


def settled(page):
    """Wait until the htmx requests `page` has started are answered and swapped in, and the new content has
    settled: no element carries htmx's htmx-request, htmx-swapping or htmx-settling class any more.

    For an expectation that the content before the swap meets as well as the content after it (a select
    that already shows the value it was set to)."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def watch(page):
    """Start collecting what `page` must never show: console errors, uncaught exceptions and
    Content-Security-Policy violations, as text; return the list they are appended to. Also keeps each
    document the page loads out of reach until it has loaded (ACT_ONCE_LOADED)."""
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.expose_function("reportCspViolation", lambda violation: problems.append(violation))
    page.add_init_script(REPORT_CSP_VIOLATIONS)
    page.add_init_script(ACT_ONCE_LOADED)
    return problems


def at_once_past_the_check(monkeypatch, requests):
    """Send two `requests` (callables, each one HTTP request) at once, each pausing after the last-active-admin
    check until the other has checked too (or a second has passed): without the lock around check and write,
    both would pass it. Returns their answers in order."""
    both_checked = threading.Barrier(2)
    check = models.User.is_last_active_admin

    def check_then_pause(user):
        answer = check(user)
        try:
            both_checked.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass  # the other request is still waiting for the lock
        return answer

    monkeypatch.setattr(models.User, "is_last_active_admin", check_then_pause)
    with ThreadPoolExecutor(2) as pool:
        return [future.result() for future in [pool.submit(request) for request in requests]]
