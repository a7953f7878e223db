"""The command line: add a credential and keep its id, list them, test one, make a key."""

import os
import pathlib
import socket
import subprocess
import sys

import pytest

import encryption
import models
from models import AuditEvent, Credential, User
from testdata import CANARY, MAILBOX_USER


def test_add_prints_the_new_id_and_the_secret_comes_from_stdin(app, tmp_path):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["credentials", "add", "--name", "Support", "--description", "Helpdesk",
                                 "--host", "imap.example.com", "--username", "help@example.com", "--secret-stdin"],
                           input="s3cret\n")
    assert result.exit_code == 0, result.output
    credential_id = int(result.output.strip())
    with models.db.connection_context():
        credential = Credential.get_by_id(credential_id)
        assert (credential.port, credential.security) == (993, "ssl_tls")
        assert credential.unseal(app.extensions["mailkeep.keyring"], "password") == "s3cret"
    listed = runner.invoke(args=["credentials", "list"])
    assert f"{credential_id}\tSupport\tIMAP imap.example.com:993 SSL/TLS\thelp@example.com\tnot tested" in listed.output


def test_add_refuses_bad_values_field_by_field(app):
    result = app.test_cli_runner().invoke(
        args=["credentials", "add", "--name", "X", "--description", "x", "--host", "bad host",
              "--username", "a@", "--secret-stdin"], input="pw\n")
    assert result.exit_code == 1
    assert "host: Enter a host name" in result.output
    assert "username: There must be something after the @-sign." in result.output


def test_test_exits_0_when_the_credential_works_and_1_when_not(app, dovecot):
    runner = app.test_cli_runner()

    def add(name, secret):
        result = runner.invoke(args=["credentials", "add", "--name", name, "--description", "x", "--host", "localhost",
                                     "--port", str(dovecot.imaps_port), "--username", MAILBOX_USER,
                                     "--folder", "INBOX" if secret == CANARY else "Archive", "--secret-stdin"],
                               input=secret + "\n")
        return result.output.strip()

    good, bad = add("Good", CANARY), add("Bad", "not-it")
    ok = runner.invoke(args=["credentials", "test", good])
    assert ok.exit_code == 0 and "Connected; INBOX holds 3 messages" in ok.output
    failed = runner.invoke(args=["credentials", "test", bad])
    assert failed.exit_code == 1 and "Log in failed" in failed.output


def test_keys_generate_prints_a_usable_key(app):
    key = app.test_cli_runner().invoke(args=["keys", "generate"]).output.strip()
    assert len(encryption.parse_keys(key)) == 1


def test_users_are_created_given_roles_and_disabled_from_the_command_line(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["users", "create", "dora", "--role", "editor", "--password-stdin"],
                            input="a long enough password\n")
    assert created.exit_code == 0 and "Created dora (editor)." in created.output
    short = runner.invoke(args=["users", "create", "eve", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "password: Use at least 12 characters." in short.output
    taken = runner.invoke(args=["users", "create", "DORA", "--password-stdin"], input="x" * 20 + "\n")
    assert taken.exit_code == 1 and "username: dora exists already." in taken.output
    forged = runner.invoke(args=["users", "create", "eve\u2028admin", "--password-stdin"], input="x" * 20 + "\n")
    assert forged.exit_code == 1 and "username:" in forged.output
    assert runner.invoke(args=["users", "set-role", "dora", "admin"]).exit_code == 0
    assert runner.invoke(args=["users", "disable", "dora"]).exit_code == 0
    with models.db.connection_context():
        dora = User.get(User.username == "dora")
        assert (dora.role, dora.active) == ("admin", False)
        actions = [event.action for event in AuditEvent.select().where(AuditEvent.actor == "(command line)")
                   .order_by(AuditEvent.id)]
    assert actions == ["user_create", "role_change", "user_disable"]
    assert runner.invoke(args=["users", "disable", "nobody"]).exit_code == 2


def test_the_command_line_keeps_the_last_active_admin(app):
    runner = app.test_cli_runner()
    for args in (["users", "set-role", "admin", "editor"], ["users", "disable", "ADMIN"]):
        refused = runner.invoke(args=args)
        assert refused.exit_code == 2 and "admin is the last active admin" in refused.output, args
    with models.db.connection_context():
        admin = User.get(User.username == "admin")
        assert (admin.role, admin.active) == ("admin", True)
    assert runner.invoke(args=["users", "set-role", "editor", "admin"]).exit_code == 0
    assert runner.invoke(args=["users", "disable", "admin"]).exit_code == 0  # the editor, now admin, remains


# Issue "What a new user, a security review and servers other than Dovecot found".

def test_the_list_has_a_header_row_and_keeps_each_credential_on_one_line(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["credentials", "add", "--name", "Support", "--description", "x", "--host", "imap.example.com",
                        "--username", "help@example.com", "--secret-stdin"], input="pw\n")
    with models.db.connection_context():  # saved before line breaks were refused
        Credential.create(name="Forged\nline", description="x", group=models.Group.default(), host="b.example.com",
                          port=993, username="b@example.com")
    lines = runner.invoke(args=["credentials", "list"]).output.splitlines()
    assert lines[0] == "ID\tName\tServer\tUsername\tLast test"
    assert len(lines) == 3 and all(line.count("\t") == 4 for line in lines)
    assert "\tForged\\nline\t" in lines[1]


def flask_command(tmp_path, *args, stdin=""):
    """Run ``flask --app app ARGS`` in a process of its own (logging as a real command line sets it up)."""
    environment = {**os.environ, "MAILKEEP_INSTANCE_PATH": str(tmp_path / "instance"),
                   "MAILKEEP_ALLOWED_PORTS": "1-65535", "MAILKEEP_ALLOWED_NETWORKS": "127.0.0.0/8"}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], input=stdin, capture_output=True,
                          text=True, env=environment, cwd=pathlib.Path(__file__).parent.parent, timeout=60)


@pytest.mark.runs_long
def test_commands_log_only_warnings_unless_asked_to_be_verbose(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # nothing listens there once closed
    added = flask_command(tmp_path, "credentials", "add", "--name", "Nowhere", "--description", "x",
                          "--host", "127.0.0.1", "--port", str(port), "--username", "someone",
                          "--secret-stdin", stdin="pw\n")
    assert added.returncode == 0, added.stderr
    assert "Generated the encryption key" in added.stderr  # the first start still says where the key is
    quiet = flask_command(tmp_path, "credentials", "test", added.stdout.strip())
    assert quiet.returncode == 1 and "Connect failed" in quiet.stderr
    assert " INFO " not in quiet.stderr
    verbose = flask_command(tmp_path, "credentials", "test", "--verbose", added.stdout.strip())
    assert verbose.returncode == 1 and " INFO probe: connection test 127.0.0.1" in verbose.stderr


def test_control_characters_are_refused_on_the_command_line_too(app):
    result = app.test_cli_runner().invoke(args=[
        "credentials", "add", "--name", "Support\nforged", "--description", "x", "--host", "imap.example.com",
        "--username", "help@example.com", "--secret-stdin"], input="pw\n")
    assert result.exit_code == 1 and "name: Line breaks and other control characters are not allowed" in result.output


def test_passwords_are_set_and_users_deleted_from_the_command_line(app):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["users", "set-password", "editor", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "new_password: Use at least 12 characters." in short.output
    prompted = runner.invoke(args=["users", "set-password", "editor"], input="a new long password\n" * 2)
    assert prompted.exit_code == 0 and "editor has a new password" in prompted.output
    assert "a new long password" not in prompted.output  # the prompt is hidden
    with models.db.connection_context():
        assert User.get(User.username == "editor").check_password("a new long password")
    assert runner.invoke(args=["users", "delete", "editor"], input="n\n").exit_code == 1  # not confirmed
    deleted = runner.invoke(args=["users", "delete", "editor"], input="y\n")
    assert deleted.exit_code == 0 and "Deleted editor." in deleted.output
    last = runner.invoke(args=["users", "delete", "admin", "--yes"])
    assert last.exit_code == 2 and "admin is the last active admin" in last.output
    with models.db.connection_context():
        assert not User.select().where(User.username == "editor").exists()
        actions = [event.action for event in AuditEvent.select().where(AuditEvent.actor == "(command line)")
                   .order_by(AuditEvent.id)]
    assert actions == ["password_change", "user_delete"]


def test_the_list_filters_by_how_a_credential_logs_in(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["credentials", "add", "--name", "Alpha", "--description", "x", "--host", "imap.example.com",
                        "--username", "a@example.com", "--secret-stdin"], input="pw\n")
    runner.invoke(args=["credentials", "add", "--name", "Beta", "--description", "x", "--host", "imap.example.com",
                        "--username", "b@example.com", "--auth", "oauth2_client_credentials", "--client-id", "c",
                        "--token-url", "https://login.example.com/token", "--secret-stdin"], input="s\n")
    oauth = runner.invoke(args=["credentials", "list", "--auth", "oauth2_client_credentials"]).output.splitlines()
    assert [line.split("\t")[1] for line in oauth] == ["Name", "Beta"]
    password = runner.invoke(args=["credentials", "list", "--auth", "password"]).output.splitlines()
    assert [line.split("\t")[1] for line in password] == ["Name", "Alpha"]
    assert runner.invoke(args=["credentials", "list", "--auth", "carrier-pigeon"]).exit_code == 2
