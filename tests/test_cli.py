"""The command line: add a credential and keep its id, list them, test one, make a key."""

from testdata import CANARY, MAILBOX_USER

import encryption
import models
from models import AuditEvent, Credential, User


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
        actions = [event.action for event in AuditEvent.select().where(AuditEvent.actor == "(command line)")]
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
