"""Browser tests: Debian's headless Chromium driven by Playwright against the app served on loopback."""

import pytest
from playwright.sync_api import expect

from accessibility import screen_problems
from clients import start_session, watch

# How long an expectation waits for the page (milliseconds), like the page's own actions below: under CI's
# load (several test workers, Chromium, PostgreSQL) a swap can take longer than Playwright's default 5 seconds.
EXPECT_TIMEOUT_MS = 10_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture
def database_kind():
    """Browser tests run on SQLite; what they check does not depend on the database."""
    return "sqlite"


@pytest.fixture
def app_config(app_config):
    """The browser sends CSRF tokens like any user's browser, so the protection stays on."""
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


@pytest.fixture
def page(page, app, live_server):
    """A page signed in as the admin; every confirmation (hx-confirm) is accepted, as a user who means it would.

    When the test ends, the page must have logged no console error, thrown no
    uncaught exception and met no Content-Security-Policy violation, and the
    state it ends in must fit its screen and pass axe-core
    (accessibility.screen_problems): every browser test adds its last state
    to those the sweeps in test_interface.py visit.
    """
    problems = watch(page)
    page.on("dialog", lambda dialog: dialog.accept())
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    start_session(page, app, live_server, "admin")
    yield page
    assert problems == [], "console errors or CSP violations"
    page.wait_for_function("() => !document.querySelector('.htmx-request')")  # no swap still on its way
    assert screen_problems(page, f"the last state of the test ({page.url})", page.viewport_size) == []
