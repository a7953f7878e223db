"""Done when: a service token made on the Service accounts page reads a connection, the example script counts
unseen messages with it, a rotation through the credential's page leaves the script working throughout (no
failed login at the server), and the audit log shows each read."""

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from readers import saved
from testdata import CANARY, ROTATING_USER

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "fetch_unseen.py"
SECOND = f"next-{CANARY}"
# How long to wait for the script's next line: a bound on a hang, not a measure of speed.
LINE_DEADLINE_SECONDS = 30


@pytest.fixture
def app_config(app_config, rotating_dovecot):
    app_config["CA_FILE"] = str(rotating_dovecot.ca_file)
    return app_config


class Script:
    """examples/fetch_unseen.py running as a program; its output lines as they come."""

    def __init__(self, arguments, environment):
        self.process = subprocess.Popen([sys.executable, str(EXAMPLE), *arguments], env=environment, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout], daemon=True).start()

    def next_line(self):
        return self.lines.get(timeout=LINE_DEADLINE_SECONDS).rstrip("\n")

    def line_with(self, text):
        """The lines up to and including the first that holds `text`."""
        seen = [self.next_line()]
        while text not in seen[-1]:
            seen.append(self.next_line())
        return seen

    def stop(self):
        self.process.terminate()
        _, errors = self.process.communicate(timeout=LINE_DEADLINE_SECONDS)
        return errors


def failed_logins(server, since):
    with open(server.log_file, "rb") as log:
        log.seek(since)
        return [line for line in log.read().decode(errors="replace").splitlines()
                if "auth failed" in line and ROTATING_USER in line]


def test_a_token_from_the_page_serves_the_script_through_a_rotation_on_the_page(page, live_server, app,
                                                                                 rotating_dovecot):
    server = rotating_dovecot
    server.set_password(ROTATING_USER, CANARY)
    log_start = server.log_file.stat().st_size
    credential = saved(app, host="localhost", port=server.imaps_port, username=ROTATING_USER, password=CANARY)

    page.goto(f"{live_server}/credentials/")
    page.get_by_role("link", name="Service accounts").click()
    page.get_by_label("Name", exact=True).fill("helpdesk")
    page.get_by_label("Default", exact=True).check()
    page.get_by_role("button", name="Add service account").click()
    expect(page.locator("#messages")).to_contain_text("Added the service account helpdesk.")
    page.get_by_label("Token name", exact=True).fill("production")
    page.get_by_role("button", name="Make token").click()
    expect(page.locator("#new-token")).to_be_visible()  # the page that shows it, loaded
    token = page.locator("#new-token").inner_text()
    assert token.startswith("mks_")

    script = Script(["--mailkeep", live_server, "--credential", str(credential.id), "--every", "0.2",
                     "--refresh", "0", "--imap-ca", str(server.ca_file)], {**os.environ, "MAILKEEP_TOKEN": token})
    try:
        before = [script.next_line(), script.next_line()]
        server.set_password(ROTATING_USER, SECOND, keep_previous=True)  # the provider's new one; the old one works
        page.goto(f"{live_server}/credentials/{credential.id}")
        page.get_by_text("Rotate the password").click()
        page.get_by_label("New password", exact=True).fill(SECOND)
        page.get_by_label("Confirm it", exact=True).fill(SECOND)
        page.get_by_label("Note (optional)", exact=True).fill("new app password")
        page.get_by_role("button", name="Test and rotate").click()
        expect(page.locator("#messages")).to_contain_text("Rotated the password of Support: version 2 is current.")
        expect(page.locator("#secret-versions")).to_contain_text("previous, readable until")
        during = script.line_with("version 2")
        server.forget_previous_password(ROTATING_USER)  # the grace period is over at the server too
        after = [script.next_line(), script.next_line()]
    finally:
        errors = script.stop()
    assert before == ["INBOX: 3 unseen (version 1)"] * 2
    assert set(during[:-1]) <= {"INBOX: 3 unseen (version 1)"} and during[-1] == "INBOX: 3 unseen (version 2)"
    assert after == ["INBOX: 3 unseen (version 2)"] * 2
    assert errors == "" and failed_logins(server, log_start) == []

    page.goto(f"{live_server}/audit/?action=secret_read")
    reads = page.locator("tbody tr")
    assert reads.count() >= 6
    expect(reads.first).to_contain_text("service:helpdesk")
    expect(reads.first).to_contain_text("current version 2 of the password, with the token production")
    page.goto(f"{live_server}/credentials/{credential.id}")
    expect(page.locator("#used-by")).to_contain_text("helpdesk")
