"""``make demo``: the demo starts, serves a seeded dashboard whose credentials test as promised, and stops."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from components import DOVECOT, require_executable

pytestmark = pytest.mark.runs_long  # the demo's own servers, started and stopped


@pytest.fixture
def demo():
    require_executable(DOVECOT, "dovecot-imapd")
    with socket.create_server(("127.0.0.1", 0)) as probe_socket:
        port = probe_socket.getsockname()[1]
    with subprocess.Popen(
        [sys.executable, "demo.py"], env={**os.environ, "PORT": str(port)}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    ) as process:
        try:
            first_line, second_line = _first_lines(process, 2, timeout=START_TIMEOUT)
            assert re.match(rf"Mailkeep demo: http://127\.0\.0\.1:{port}/ ", first_line), first_line
            token = re.search(r"API token: (\S+)", second_line).group(1)
            yield f"http://127.0.0.1:{port}", token
        finally:
            process.send_signal(signal.SIGINT)
            try:
                assert process.wait(timeout=15) == 0
            except subprocess.TimeoutExpired:
                process.kill()  # so the test ends, failing, rather than waiting for it forever
                raise


# Seconds the demo may take to start its servers, seed and print its address.
START_TIMEOUT = 60


def _first_lines(process, count, timeout):
    """The first `count` lines `process` prints, read within `timeout` seconds (a thread reads them, so a demo
    that hangs before printing fails the test instead of hanging it). Raises AssertionError."""
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout.readline() for _ in range(count)),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"the demo printed nothing within {timeout} s"
    return lines


def test_the_demo_shows_both_outcomes_and_stops_on_ctrl_c(demo):
    url, token = demo
    assert "Sign in" in fetch(f"{url}/credentials/")  # nobody gets in without an account
    signed = {"Authorization": f"Bearer {token}"}
    credentials = json.loads(fetch(urllib.request.Request(f"{url}/api/v1/credentials", headers=signed)))["items"]
    ids = {credential["name"]: credential["id"] for credential in credentials}
    assert set(ids) == {"Support inbox", "Team mailbox (POP3)", "Integration (OAuth2)", "Billing (wrong password)"}
    aliases = json.loads(fetch(urllib.request.Request(f"{url}/api/v1/aliases", headers=signed)))["items"]
    assert [alias["address"] for alias in aliases] == ["support@example.test"]
    outcomes = {}
    for name, credential_id in ids.items():
        request = urllib.request.Request(
            f"{url}/api/v1/connection-tests", data=json.dumps({"credential_id": credential_id}).encode(),
            headers={"Content-Type": "application/json", **signed},
        )
        result = json.loads(fetch(request))
        outcomes[name] = result["cause"]["code"] if result["cause"] else "ok"
    assert outcomes == {"Support inbox": "ok", "Team mailbox (POP3)": "ok", "Integration (OAuth2)": "ok",
                        "Billing (wrong password)": "auth_failed"}


def fetch(request):
    with urllib.request.urlopen(request) as response:
        return response.read().decode()


def test_the_demo_dials_only_the_servers_it_started(demo):
    url, token = demo
    request = urllib.request.Request(
        f"{url}/api/v1/connection-tests", data=json.dumps({
            "protocol": "IMAP", "host": "localhost", "port": 993, "security": "ssl_tls", "username": "someone",
            "password": "not-a-secret", "folder": "INBOX"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    assert json.loads(fetch(request))["cause"]["code"] == "destination_not_allowed"
