"""examples/fetch_unseen.py against a real Dovecot whose password changes while it runs: it reads its
connection from Mailkeep with a service token, counts unseen messages, and keeps working across a rotation
with no failed login; a rotation done in the wrong order costs one failed login, not a stop."""

import importlib.util
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from imapclient.exceptions import LoginError

import models
from clients import signed_in
from dovecot import INBOX_MESSAGE_COUNT
from models import AuditEvent
from readers import account, saved, token_of
from testdata import CANARY, ROTATING_USER

EXAMPLE = Path(__file__).parent.parent / "examples" / "fetch_unseen.py"
pytestmark = pytest.mark.runs_long  # the example program, run and waited for
# Both passwords hold the canary: the check after each test proves neither leaks beyond the connection answers.
FIRST, SECOND = CANARY, f"next-{CANARY}"


def load_example():
    spec = importlib.util.spec_from_file_location("fetch_unseen", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mailbox(rotating_dovecot):
    """The rotating Dovecot with its user's first password again, and where its log stands now."""
    rotating_dovecot.set_password(ROTATING_USER, FIRST)
    return rotating_dovecot, rotating_dovecot.log_file.stat().st_size


@pytest.fixture
def app_config(app_config, rotating_dovecot):
    app_config["CA_FILE"] = str(rotating_dovecot.ca_file)
    return app_config


def failed_logins(server, since):
    """The lines of the Dovecot log, from byte `since` on, that record a failed login of the rotating user."""
    with open(server.log_file, "rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [line for line in lines if "auth failed" in line and ROTATING_USER in line]


def imap_context(server):
    return ssl.create_default_context(cafile=str(server.ca_file))


def rotate_through_the_page(app, credential, password):
    """Rotate as an editor does: open the credential's page, type the new password into its Rotate form (which
    carries the revision the page shows) and send it."""
    editor = signed_in(app, "editor")
    page = editor.get(f"/credentials/{credential.id}").text
    [revision] = set(re.findall(r'<input[^>]*name="revision"[^>]*value="([0-9]+)"', page))
    answer = editor.post(f"/credentials/{credential.id}/rotate", data={
        "new_secret": password, "confirm_secret": password, "note": "new app password", "grace_hours": "24",
        "revision": revision})
    assert answer.status_code == 303, answer.get_data(as_text=True)


def secret_reads():
    """What each secret_read in the audit log says it served ("current version 2"), oldest first."""
    with models.db.connection_context():
        return [event.details.split(" of ")[0] for event in AuditEvent.select().where(
            AuditEvent.action == "secret_read").order_by(AuditEvent.id)]


def test_the_example_counts_unseen_messages_across_a_rotation_with_no_failed_login(app, live_server, mailbox):
    server, log_start = mailbox
    example = load_example()
    credential = saved(app, host="localhost", port=server.imaps_port, username=ROTATING_USER, password=FIRST)
    token = token_of(account(groups=["Default"]))
    connection = example.Connection(live_server, f"/api/v1/credentials/{credential.id}/connection", token, refresh=0)
    rounds = [example.check(connection, imap_context(server))]
    server.set_password(ROTATING_USER, SECOND, keep_previous=True)  # the provider's new app password, old one kept
    rounds.append(example.check(connection, imap_context(server)))
    rotate_through_the_page(app, credential, SECOND)  # tested against the server first
    rounds.append(example.check(connection, imap_context(server)))
    server.forget_previous_password(ROTATING_USER)  # the grace period is over: the old one is revoked
    rounds.append(example.check(connection, imap_context(server)))
    assert [(count, settings["version"]) for count, settings in rounds] == [
        (INBOX_MESSAGE_COUNT, 1), (INBOX_MESSAGE_COUNT, 1), (INBOX_MESSAGE_COUNT, 2), (INBOX_MESSAGE_COUNT, 2)]
    assert failed_logins(server, log_start) == []
    assert secret_reads() == ["current version 1", "current version 1", "current version 2", "current version 2"]


def test_a_rotation_in_the_wrong_order_costs_one_failed_login_and_no_stop(app, live_server, mailbox):
    server, log_start = mailbox
    example = load_example()
    credential = saved(app, host="localhost", port=server.imaps_port, username=ROTATING_USER, password=FIRST)
    token = token_of(account(groups=["Default"]))
    connection = example.Connection(live_server, f"/api/v1/credentials/{credential.id}/connection", token,
                                    refresh=3600)  # it keeps what it read
    assert example.check(connection, imap_context(server))[1]["version"] == 1
    server.set_password(ROTATING_USER, SECOND)  # the server first, and the old password gone at once
    rotate_through_the_page(app, credential, SECOND)
    count, settings = example.check(connection, imap_context(server))  # fails with version 1, reads version 2
    assert (count, settings["version"]) == (INBOX_MESSAGE_COUNT, 2)
    assert len(failed_logins(server, log_start)) == 1
    server.set_password(ROTATING_USER, FIRST)  # changed behind Mailkeep's back: the same version fails again
    with pytest.raises(LoginError):
        example.check(connection, imap_context(server))


def test_the_example_runs_as_a_program_and_prints_no_secret(app, live_server, mailbox, tmp_path):
    server, _ = mailbox
    credential = saved(app, host="localhost", port=server.imaps_port, username=ROTATING_USER, password=FIRST)
    with models.db.connection_context():
        models.Alias.create(address="support@example.com", credential=credential)
    token = token_of(account(groups=["Default"]))
    environment = {**os.environ, "MAILKEEP_TOKEN": token}
    command = [sys.executable, str(EXAMPLE), "--mailkeep", live_server, "--imap-ca", str(server.ca_file)]
    by_id = subprocess.run([*command, "--credential", str(credential.id)], env=environment, capture_output=True,
                           text=True, timeout=60)
    by_alias = subprocess.run([*command, "--alias", "support@example.com", "--every", "0.01", "--times", "2"],
                              env=environment, capture_output=True, text=True, timeout=60)
    assert (by_id.returncode, by_id.stdout, by_id.stderr) == (0, "INBOX: 3 unseen (version 1)\n", "")
    assert by_alias.stdout == "INBOX: 3 unseen (version 1)\n" * 2 and by_alias.returncode == 0
    refused = subprocess.run([*command, "--credential", "999"], env=environment, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and refused.stderr.startswith("failed: Mailkeep answered 404")
    no_token = subprocess.run([*command, "--credential", "1"], env={**environment, "MAILKEEP_TOKEN": ""},
                              capture_output=True, text=True, timeout=60)
    assert no_token.returncode != 0 and "MAILKEEP_TOKEN" in no_token.stderr
    plain = subprocess.run([*command[:3], "http://mailkeep.example.com", "--credential", "1"], env=environment,
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0 and "https://" in plain.stderr
    for output in (by_id, by_alias, refused):
        assert FIRST not in output.stdout + output.stderr and token not in output.stdout + output.stderr


def test_the_program_reads_the_connection_again_on_sighup_and_logs_in_with_no_failure(app, live_server, mailbox):
    server, log_start = mailbox
    credential = saved(app, host="localhost", port=server.imaps_port, username=ROTATING_USER, password=FIRST)
    token = token_of(account(groups=["Default"]))
    command = [sys.executable, str(EXAMPLE), "--mailkeep", live_server, "--imap-ca", str(server.ca_file),
               "--credential", str(credential.id), "--every", "0.2", "--refresh", "3600"]  # it would keep what it read
    with subprocess.Popen(command, env={**os.environ, "MAILKEEP_TOKEN": token}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as program:
        printed = queue.Queue()
        reader = threading.Thread(target=lambda: [printed.put(line) for line in program.stdout])
        reader.start()
        try:
            assert printed.get(timeout=30) == "INBOX: 3 unseen (version 1)\n"
            server.set_password(ROTATING_USER, SECOND, keep_previous=True)  # the provider's new one, the old kept
            rotate_through_the_page(app, credential, SECOND)
            program.send_signal(signal.SIGHUP)  # what a listener for secret.rotated does
            while (line := printed.get(timeout=30)) != "INBOX: 3 unseen (version 2)\n":
                assert line == "INBOX: 3 unseen (version 1)\n"
            server.forget_previous_password(ROTATING_USER)  # the grace period is over: the old one is revoked
            assert [printed.get(timeout=30) for _ in range(3)] == ["INBOX: 3 unseen (version 2)\n"] * 3
        finally:
            program.terminate()
            program.wait(timeout=30)
            reader.join(timeout=30)  # the pipe is at its end once the program is gone
        errors = program.stderr.read()  # a few lines at most: it never filled the pipe
    assert errors == "" and failed_logins(server, log_start) == []
    # One read at the start and one on SIGHUP: nothing else (no refresh, no failed login) made it read again.
    assert secret_reads() == ["current version 1", "current version 2"]
