"""The real components the tests run against, and what happens when one is missing."""

import os
import signal
import subprocess

import pytest

DOVECOT = "/usr/sbin/dovecot"
# Debian's chromium-headless-shell: Chromium's own headless browser (Blink and V8 as in the full browser, without
# its windowing and browser UI), the one Playwright itself runs for headless tests. It takes 40% less CPU than the
# full browser in its headless mode for the same browser tests (101 against 169 CPU seconds here), on a machine the
# suite keeps busy.
CHROMIUM = "/usr/lib/chromium/chromium-headless-shell"
CHROMIUM_PACKAGE = "chromium-headless-shell"
# Playwright adds --headless itself.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
REDIS = "/usr/bin/redis-server"


def require_executable(path, package):
    """Fail under CI=true, skip elsewhere, when a real component the tests need is missing.

    Raises pytest's Failed or Skipped outcome; returns when `path` is executable.
    """
    if os.access(path, os.X_OK):
        return
    message = f"{path} is missing: install the Debian package {package} (make test does, as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_postgresql():
    """Fail under CI=true, skip elsewhere, when Debian's PostgreSQL server (package postgresql) is missing."""
    from postgres import binaries

    found = binaries()
    require_executable(str(found / "postgres") if found else "/usr/lib/postgresql/*/bin/postgres", "postgresql")


def stop_process(process, timeout, stop_signal=signal.SIGTERM):
    """Ask `process` (a subprocess.Popen) to end (`stop_signal`) and wait up to `timeout` seconds, then kill it."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
