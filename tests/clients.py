"""How tests act as users: the test users ("viewer", "editor", "admin", password USER_PASSWORD)
signed in to a Flask test client or a browser page, and what a browser page must never show."""

from testdata import USER_PASSWORD


def signed_in(app, username):
    """A Flask test client with a session of `username`."""
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": USER_PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


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


def watch(page):
    """Start collecting what `page` must never show: console errors, uncaught exceptions and
    Content-Security-Policy violations, as text; return the list they are appended to."""
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.expose_function("reportCspViolation", lambda violation: problems.append(violation))
    page.add_init_script(REPORT_CSP_VIOLATIONS)
    return problems
