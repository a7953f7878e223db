"""Watching credentials in the browser: Test all shows its progress without blocking the page (htmx polls it
until done), pausing swaps the history section, the summary filters the list."""

import re

from playwright.sync_api import expect

import models
from services import checks, scheduler
from testdata import MAILBOX_USER, stored_credential


def _credentials(app, dovecot, count=2):
    with models.db.connection_context():
        return [stored_credential(app.extensions["mailkeep.keyring"], name=f"Box {number}", host="localhost",
                                  port=dovecot.imaps_port, username=MAILBOX_USER,
                                  folder=["INBOX", "Archive", "Team Inbox"][number]) for number in range(count)]


def test_test_all_shows_its_progress_until_it_is_done(page, live_server, app, dovecot):
    _credentials(app, dovecot)
    page.goto(f"{live_server}/credentials/")
    page.get_by_role("button", name="Test all").click()
    expect(page.locator(".check-run")).to_contain_text("Test all: 0 of 2 checked")
    expect(page.locator("#credential-list")).to_contain_text("Box 0")  # the page stays usable meanwhile
    with app.app_context(), models.db.connection_context():  # what the worker does
        scheduler.work_on_run(scheduler.unfinished_runs()[0])
    expect(page.locator(".check-run")).to_contain_text("2 of 2 checked (2 OK, 0 failing). Done.")
    page.get_by_role("link", name="Show the updated list").click()
    expect(page.locator(".summary-filter.state-ok")).to_contain_text("2 OK")


def test_pausing_swaps_the_history_section_and_the_summary_filters(page, live_server, app, dovecot):
    first, _ = _credentials(app, dovecot)
    page.goto(f"{live_server}/credentials/{first.id}")
    page.get_by_role("button", name="Pause scheduled checks").click()
    expect(page.locator("#history")).to_contain_text("scheduled checks paused")
    expect(page.get_by_role("button", name="Resume scheduled checks")).to_be_visible()
    page.goto(f"{live_server}/credentials/")
    page.locator(".summary-filter.state-paused").click()
    expect(page).to_have_url(re.compile(r"health=paused"))
    expect(page.locator("#credential-list tbody tr")).to_have_count(1)
    with app.app_context(), models.db.connection_context():
        assert models.Credential.get_by_id(first.id).check_paused is True
        assert checks.summary(fresh=True)["paused"] == 1
