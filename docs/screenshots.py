"""Take the README's screenshots: runs the demo, drives Debian's headless Chromium (chromium-headless-shell)
through Playwright, writes docs/*.png.

Run from the project folder after ``make test`` has set up .venv:
``.venv/bin/python docs/screenshots.py``.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from components import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402 (the tests' browser, tests/components.py)
from demo import ADMIN, ADMIN_PASSWORD, MAILBOX  # noqa: E402

DOCS = pathlib.Path(__file__).parent


def main():
    """Start the demo on a free port, take the screenshots, stop the demo."""
    with socket.create_server(("127.0.0.1", 0)) as free:
        port = free.getsockname()[1]
    with subprocess.Popen([sys.executable, "demo.py"], env={**os.environ, "PORT": str(port)},
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as demo:
        try:
            demo.stdout.readline()  # the URL line: the dashboard is up
            shoot(f"http://127.0.0.1:{port}")
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=15)


def test_row(page, row, name):
    """Press Test on the credentials list's `row` and wait until its outcome is announced."""
    row.get_by_role("button", name="Test").click()
    page.locator("#announcer", has_text=f"{name}:").wait_for()
    page.evaluate("() => { document.getElementById('announcer').textContent = ''; }")


def shoot(base):
    """Write docs/credentials.png (every credential tested), docs/failed-test.png (a failed test's timeline)
    and docs/history.png (a credential's health history: failing, its password rotated, working again)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{base}/login")
        page.get_by_label("Username", exact=True).fill(ADMIN)
        page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/credentials/")
        for row in page.locator("tbody tr").all():
            row.get_by_role("button", name="Test").click()
        page.locator("tbody .badge.untested").first.wait_for(state="detached")
        page.screenshot(path=DOCS / "credentials.png", full_page=True)

        page.get_by_role("button", name="Edit Billing (wrong password)").click()
        page.get_by_role("button", name="Test connection").click()
        page.locator(".test-result.failed").wait_for()
        page.locator(".test-connection").scroll_into_view_if_needed()
        page.screenshot(path=DOCS / "failed-test.png", full_page=True)

        # A credential that fails, has its password rotated to the right one, and works again.
        page.goto(f"{base}/credentials/")
        row = page.locator("tbody tr", has_text="Billing (wrong password)")
        for _ in range(3):
            test_row(page, row, "Billing (wrong password)")
        row.get_by_role("link").first.click()
        page.get_by_text("Rotate the password").click()
        page.get_by_label("New password", exact=True).fill(MAILBOX.password)
        page.get_by_label("Confirm it", exact=True).fill(MAILBOX.password)
        page.get_by_label("Note (optional)", exact=True).fill("the password the server has now")
        page.get_by_role("button", name="Test and rotate").click()
        page.locator("#messages", has_text="Rotated").wait_for()
        page.goto(f"{base}/credentials/")
        for _ in range(4):
            test_row(page, row, "Billing (wrong password)")
        row.get_by_role("link").first.click()
        page.locator("#history").wait_for()
        page.screenshot(path=DOCS / "history.png", full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
