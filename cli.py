"""The command line: ``flask --app app credentials list|add|test``,
``users create|set-role|set-password|disable|delete``, ``keys generate|rotate``.

Other tools add an entry and keep the id it prints; a secret is read from a
hidden prompt or, with ``--secret-stdin``, from standard input, never from the
command line where other users could see it.
"""

import logging
import sys
from contextlib import contextmanager

import click
from flask.cli import AppGroup

import config
import encryption
import keys
import logins
import notifications
from audit import COMMAND_LINE
from forms import CONTROL_CHARACTERS, AccountForm, CredentialForm, Invalid, NewPasswordForm, validated
from models import ROLES, Credential, Group, User
from probe import protocols
from services import accounts, connection_tests, scheduler
from services.entries import save_credential


def _verbosity(context, parameter, verbose):
    """Click callback of ``--verbose``: the command logs INFO records on standard error only when asked."""
    config.console_level(logging.INFO if verbose else logging.WARNING)


class Commands(AppGroup):
    """A group of commands that print their answer on standard output and, on standard error, only warnings
    and errors unless given ``--verbose`` (the log of what happens: connection tests, their addresses)."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(function):
            verbose = click.option("--verbose", "-v", is_flag=True, expose_value=False, is_eager=True,
                                   callback=_verbosity, help="Also log what happens (INFO) on standard error.")
            return register(verbose(function))
        return decorator


credentials_cli = Commands("credentials", help="List, add and test credentials.")
checks_cli = Commands("checks", help="Run the scheduled checks once (for cron), deliver notifications.")
users_cli = Commands("users", help="Create users, change their role or password, disable or delete them.")
keys_cli = Commands("keys", help="Encryption keys.")

LIST_COLUMNS = ("ID", "Name", "Server", "Username", "Last test")


@credentials_cli.command("list")
@click.option("--auth", type=click.Choice(list(protocols.AUTHENTICATION_LABELS)),
              help="Only the credentials that log in this way.")
def list_credentials(auth):
    """Print the credentials, tab-separated under a header row: id, name, server, username, last test."""
    click.echo("\t".join(LIST_COLUMNS))
    for credential in Credential.search(auth=auth):
        outcome = "not tested" if credential.last_test_ok is None else ("ok" if credential.last_test_ok else "failing")
        click.echo("\t".join(_cell(text) for text in (
            str(credential.id), credential.name,
            f"{credential.protocol} {credential.host}:{credential.port} {credential.security_label}",
            credential.username, outcome,
        )))


def _cell(text):
    """`text` for one tab-separated cell: a tab, line break or other control character (in an entry saved
    before they were refused) is written as its escape (``\\n``), so each credential stays one line."""
    return CONTROL_CHARACTERS.sub(lambda match: repr(match.group())[1:-1], text)


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
    secret = logins.login_for(values["auth"]).secret
    typed = {}
    if secret.typed:  # OAuth2 sign-in's secret comes from signing in on the credential's page, never from here
        typed[secret.name] = sys.stdin.readline().rstrip("\r\n") if secret_stdin else \
            click.prompt(secret.label, hide_input=True)
    # A port left out (None) is the standard one of protocol and security: forms.validated's rule, as in the API.
    form = _validated(CredentialForm, {**values, "group": group.id, "port": port, **typed}, "credential")
    credential = save_credential(Credential(), form.values(), form.login_secrets().changes(), (), actor=COMMAND_LINE)
    click.echo(credential.id)


@credentials_cli.command("test")
@click.argument("credential_id", type=int)
def test_credential(credential_id):
    """Test a saved credential, print each step, and exit 0 when it works, 1 when it does not."""
    credential = Credential.get_or_none(Credential.id == credential_id)
    if credential is None:
        raise click.UsageError(f"there is no credential with id {credential_id}")
    outcome = connection_tests.test_saved(credential, actor=COMMAND_LINE)
    if outcome.busy:
        click.echo(connection_tests.TOO_MANY_TESTS, err=True)
        sys.exit(2)
    result = outcome.result
    if result is None:
        missing = logins.LoginSecrets(credential, credential.connection_values()).missing() \
            if outcome.ask_secret else None
        click.echo(f"{credential.name}: {missing or credential.last_test_summary}", err=True)
        sys.exit(1)
    for step in result.steps:
        click.echo(f"{step.outcome:8} {step.title:18} {step.duration_ms:6} ms  {step.details}")
    if result.cause:
        click.echo(f"\n{result.summary}\n{result.cause.hint}", err=True)
        if result.cause.server_reply:
            click.echo(f"The server said: {result.cause.server_reply}", err=True)
        sys.exit(1)
    click.echo(f"\n{result.summary}")


@checks_cli.command("run")
@click.option("--all", "everything", is_flag=True, help="Check every credential not paused, due or not.")
def run_checks(everything):
    """Run the checks that are due (or all of them) once, deliver the notifications they made, and print
    the counts. Several of these (or workers) at once never check one credential twice: each claims it first."""
    counts = scheduler.run_due(everything=everything)
    scheduler.sweep()
    delivered = notifications.deliver_due()
    click.echo(f"{counts['ok']} ok, {counts['failing']} failing, {counts['busy']} left for later (no free slot); "
               f"notifications: {delivered['delivered']} delivered, {delivered['retrying']} to retry, "
               f"{delivered['failed']} given up")


@keys_cli.command("rotate")
@click.option("--dry-run", is_flag=True, help="Count what would change, change nothing.")
def rotate_keys(dry_run):
    """Re-encrypt every stored secret with the first configured key.

    Put the new key first and the old one after it in MAILKEEP_ENCRYPTION_KEYS
    (or instance/encryption_keys), run this, then drop the old key. It all
    happens in one transaction: interrupted, nothing changes and every secret
    stays readable with the old key.
    """
    ring = keys.ring()
    done, unreadable = keys.rotate(ring, actor=COMMAND_LINE, dry_run=dry_run)
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
    password = _read_password(password_stdin)
    form = _validated(AccountForm, {"username": username, "password": password, "confirm_password": password,
                                    "role": role}, "user")
    user = accounts.create_user(form.username.data, password, role, actor=COMMAND_LINE)
    click.echo(f"Created {user.username} ({role}).")


@users_cli.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username, role):
    """Give a user another role; the last active admin stays an admin."""
    user = _user(username)
    with _refusal_as_usage_error():
        accounts.set_role(user, role, actor=COMMAND_LINE)
    click.echo(f"{user.username} is now {role}.")


@users_cli.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password(username, password_stdin):
    """Set a user's password (one who lost theirs); asked for (hidden, twice) unless --password-stdin.

    The checks are the pages' (at least 12 characters). Every session of the user ends; their API tokens
    keep working.
    """
    user = _user(username)
    password = _read_password(password_stdin)
    form = _validated(NewPasswordForm, {"new_password": password, "confirm_password": password}, "password")
    with _refusal_as_usage_error():
        accounts.reset_password(user, form.new_password.data, actor=COMMAND_LINE)
    click.echo(f"{user.username} has a new password; their sessions have ended.")


@users_cli.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(username, yes):
    """Delete a user and their API tokens; the audit log keeps their events. The last active admin stays."""
    user = _user(username)
    if not yes:
        click.confirm(f"Delete {user.username} and their {user.tokens.count()} API token(s)?", abort=True)
    with _refusal_as_usage_error():
        accounts.delete_user(user, actor=COMMAND_LINE)
    click.echo(f"Deleted {user.username}.")


@users_cli.command("disable")
@click.argument("username")
def disable_user(username):
    """Disable a user: they cannot sign in, their sessions and API tokens stop working."""
    user = _user(username)
    with _refusal_as_usage_error():
        accounts.set_active(user, False, actor=COMMAND_LINE)
    click.echo(f"{user.username} is disabled.")


def _validated(form_class, values, noun):
    """Validate `values` with `form_class` as its page would (forms.validated); print each error and exit 1
    when they do not validate."""
    try:
        return validated(form_class, values)
    except Invalid as invalid:
        for name, errors in invalid.errors.items():
            for error in errors:
                click.echo(f"{noun if name == '_entry' else name}: {error}", err=True)
        sys.exit(1)


def _read_password(from_stdin):
    """A password from one line of standard input, or asked for twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@contextmanager
def _refusal_as_usage_error():
    """An account change the rules refuse (accounts.AccountError) ends the command with its message (exit 2)."""
    try:
        yield
    except accounts.AccountError as refused:
        raise click.UsageError(str(refused)) from None


def _user(username):
    user = User.matching(User.username_key, username)
    if user is None:
        raise click.UsageError(f"there is no user {username!r}")
    return user
