"""The command line: ``flask --app app credentials list|add|test``, ``users create|set-role|disable``,
``keys generate|rotate``.

Other tools add an entry and keep the id it prints; a secret is read from a
hidden prompt or, with ``--secret-stdin``, from standard input, never from the
command line where other users could see it.
"""

import sys

import click
from flask.cli import AppGroup
from werkzeug.datastructures import MultiDict

import audit
import config
import encryption
import probe
from probe import protocols
from forms import AccountForm, CredentialForm, field_values
from models import ROLES, Credential, Group, User, check_then_write, db
from services import TOO_MANY_TESTS, keyring, test_saved_credential

credentials_cli = AppGroup("credentials", help="List, add and test credentials.")
users_cli = AppGroup("users", help="Create users, change their role, disable them.")
keys_cli = AppGroup("keys", help="Encryption keys.")


@credentials_cli.command("list")
def list_credentials():
    """Print every credential: id, name, server, username, last test."""
    for credential in Credential.search():
        outcome = "not tested" if credential.last_test_ok is None else ("ok" if credential.last_test_ok else "failing")
        click.echo(
            f"{credential.id}\t{credential.name}\t{credential.protocol} {credential.host}:{credential.port} "
            f"{credential.security_label}\t{credential.username}\t{outcome}"
        )


@credentials_cli.command("add")
@click.option("--name", required=True)
@click.option("--description", required=True)
@click.option("--group", "group_name", help="Group name; the default group when left out.")
@click.option("--protocol", type=click.Choice(protocols.PROTOCOLS), default=protocols.IMAP, show_default=True)
@click.option("--host", required=True)
@click.option("--port", type=int, help="The standard port of the protocol and security when left out.")
@click.option("--security", type=click.Choice(list(protocols.SECURITY_LABELS)), default=protocols.IMPLICIT_TLS,
              show_default=True)
@click.option("--username", required=True)
@click.option("--folder", default="INBOX", show_default=True)
@click.option("--auth", type=click.Choice(list(protocols.AUTHENTICATION_LABELS)), default=protocols.PASSWORD,
              show_default=True)
@click.option("--client-id", default="")
@click.option("--token-url", default="")
@click.option("--scope", default="")
@click.option("--secret-stdin", is_flag=True, help="Read the password or client secret from standard input.")
def add_credential(group_name, port, secret_stdin, **values):
    """Add a credential and print its id. The secret is asked for (hidden) unless --secret-stdin."""
    group = Group.matching(Group.name_key, group_name) if group_name else Group.default()
    if group is None:
        raise click.UsageError(f"there is no group called {group_name!r}")
    secret_name = "client_secret" if values["auth"] == protocols.OAUTH2 else "password"
    noun = secret_name.replace("_", " ")
    secret = sys.stdin.readline().rstrip("\r\n") if secret_stdin else click.prompt(noun.capitalize(), hide_input=True)
    if port is None:
        port = protocols.default_port(values["protocol"], values["security"])
    formdata = MultiDict({**values, "group": str(group.id), "port": str(port), secret_name: secret})
    form = _validated(CredentialForm, formdata, "credential")
    with db.atomic():
        credential = Credential().store(keyring(), form.secret_changes(), (), **field_values(form, Credential.EDITABLE))
        audit.record("create", credential)
    click.echo(credential.id)


@credentials_cli.command("test")
@click.argument("credential_id", type=int)
def test_credential(credential_id):
    """Test a saved credential, print each step, and exit 0 when it works, 1 when it does not."""
    credential = Credential.get_or_none(Credential.id == credential_id)
    if credential is None:
        raise click.UsageError(f"there is no credential with id {credential_id}")
    try:
        result = test_saved_credential(credential)
    except probe.Busy:
        click.echo(TOO_MANY_TESTS, err=True)
        sys.exit(2)
    if result is None:
        click.echo(f"{credential.name}: {credential.last_test_summary}", err=True)
        sys.exit(1)
    for step in result.steps:
        click.echo(f"{step.outcome:8} {step.title:18} {step.duration_ms:6} ms  {step.details}")
    if result.cause:
        click.echo(f"\n{result.summary}\n{result.cause.hint}", err=True)
        if result.cause.server_reply:
            click.echo(f"The server said: {result.cause.server_reply}", err=True)
        sys.exit(1)
    click.echo(f"\n{result.summary}")


@keys_cli.command("rotate")
@click.option("--dry-run", is_flag=True, help="Count what would change, change nothing.")
def rotate_keys(dry_run):
    """Re-encrypt every stored secret with the first configured key.

    Put the new key first and the old one after it in MAILKEEP_ENCRYPTION_KEYS
    (or instance/encryption_keys), run this, then drop the old key. It all
    happens in one transaction: interrupted, nothing changes and every secret
    stays readable with the old key.
    """
    ring = keyring()
    with db.atomic() as transaction:
        counts = [credential.reencrypt(ring) for credential in Credential.select()]
        done, unreadable = sum(c[0] for c in counts), sum(c[1] for c in counts)
        config.record_key(ring)
        audit.record("key_rotation", outcome="ok" if not unreadable else "failed",
                     details=f"{done} secrets re-encrypted, {unreadable} unreadable{' (dry run)' if dry_run else ''}")
        if dry_run:
            transaction.rollback()
    verb = "Would re-encrypt" if dry_run else "Re-encrypted"
    click.echo(f"{verb} {done} secrets with key {ring.active_fingerprint}.")
    if unreadable:
        click.echo(f"{unreadable} secrets cannot be read with any configured key; set them again.", err=True)
        sys.exit(1)


@keys_cli.command("generate")
def generate_key():
    """Print a new random encryption key (for MAILKEEP_ENCRYPTION_KEYS)."""
    click.echo(encryption.generate_key())


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(username, role, password_stdin):
    """Create a user; the password is asked for (hidden, twice) unless --password-stdin.

    The checks are the users page's (AccountForm): a new username, a strong enough password.
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    form = _validated(AccountForm, MultiDict(
        {"username": username, "password": password, "confirm_password": password, "role": role}
    ), "user")
    with db.atomic():
        user = User.add(form.username.data, password, role)
        audit.record("user_create", user, details=f"role {role}")
    click.echo(f"Created {user.username} ({role}).")


@users_cli.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username, role):
    """Give a user another role; the last active admin stays an admin."""
    user = _user(username)
    with check_then_write():
        if role != "admin" and user.is_last_active_admin():
            raise click.UsageError(f"{user.username} is the last active admin; make another user admin first")
        before, user.role = user.role, role
        user.save()
        audit.record("role_change", user, details=f"{before} to {role}")
    click.echo(f"{user.username} is now {role}.")


@users_cli.command("disable")
@click.argument("username")
def disable_user(username):
    """Disable a user: they cannot sign in, their sessions and API tokens stop working."""
    user = _user(username)
    with check_then_write():
        if user.is_last_active_admin():
            raise click.UsageError(f"{user.username} is the last active admin; make another user admin first")
        user.active = False
        user.end_sessions()
        user.save()
        audit.record("user_disable", user)
    click.echo(f"{user.username} is disabled.")


def _validated(form_class, formdata, noun):
    """Validate `formdata` with `form_class` as its page would; print each error and exit 1 when it fails."""
    form = form_class(formdata=formdata, meta={"csrf": False})
    if not form.validate():
        for name, errors in {**form.errors, "": form.form_errors}.items():
            for error in errors:
                click.echo(f"{name or noun}: {error}", err=True)
        sys.exit(1)
    return form


def _user(username):
    user = User.matching(User.username_key, username)
    if user is None:
        raise click.UsageError(f"there is no user {username!r}")
    return user
