"""The one way a connection test is run and recorded, whoever asks: a page, the API, the command line.

``test`` takes the connection values to test (plain data), the secrets typed
with them and the saved credential they belong to (or None); it finds the
secret to use (logins.py's rule), runs probe with the application's settings,
writes the audit event, and, when what was tested is exactly the saved
credential, records the outcome on it in the same transaction. It answers a
``TestOutcome`` that each caller renders in its own terms.
"""

from dataclasses import dataclass, field

from flask import current_app

import audit
import keys
from database import db
from encryption import UndecryptableSecret
from logins import UNREADABLE_SECRET, LoginSecrets, settings_for

import probe

TOO_MANY_TESTS = "Too many connection tests are running; try again in a few seconds."


@dataclass
class TestOutcome:
    """What a connection test request came to.

    `result` is the probe.Result, or None when nothing was tested; `blamed`
    ({field name: message}) what to say under each field; `ask_secret` the name
    of the secret to type before testing (none typed and no stored one serves);
    `busy` True when every test slot was taken (try again in a moment).
    """

    result: probe.Result | None = None
    blamed: dict = field(default_factory=dict)
    ask_secret: str | None = None
    busy: bool = False


def test(values, typed=None, saved=None, *, actor, list_folders=False):
    """Test the connection `values` ({name: value} for logins.CONNECTION_FIELDS, already validated).

    `typed` are the secrets typed with them ({name: text}); `saved` the saved
    credential they belong to, or None. `actor` names who asked, for the audit
    log. `list_folders` asks the server for its folders (the folder picker).
    A saved credential tested as saved (its own values and stored secret)
    gets the outcome recorded on it; an unreadable stored secret is then
    recorded as a failure too.
    """
    login = LoginSecrets(saved, values, typed)
    as_saved = saved is not None and not any(login.typed.values()) and values == saved.connection_values()
    try:
        secrets = login.for_test(keys.ring())
    except UndecryptableSecret:
        if as_saved:
            with db.atomic():
                saved.record_test(False, UNREADABLE_SECRET)
                audit.record("connection_test", saved, actor=actor, outcome="failed", details=UNREADABLE_SECRET)
        return TestOutcome(blamed={login.needed.name: UNREADABLE_SECRET})
    if not secrets:
        return TestOutcome(ask_secret=login.needed.name)
    try:
        result = run(settings_for(values, secrets))
    except probe.Busy:
        return TestOutcome(busy=True)
    if not list_folders:
        result.folders = []
    with db.atomic():
        if as_saved:
            saved.record_test(result.ok, result.summary)
        settings = result.settings
        audit.record(
            "connection_test", saved, actor=actor, outcome=result.cause.code if result.cause else "ok",
            details=f"{'saved settings' if as_saved else 'values on screen'}: {settings.protocol} "
                    f"{settings.host}:{settings.port} as {settings.username}. {result.summary}",
        )
    return TestOutcome(result=result, blamed={result.cause.field: result.cause.message} if result.cause else {})


def test_saved(credential, *, actor):
    """Test a saved credential with its stored secret and record the outcome on it (see ``test``)."""
    return test(credential.connection_values(), saved=credential, actor=actor)


def run(settings):
    """Run a connection test of probe.Settings with the application's deadline, CA file, concurrency slots
    and outbound policy; return the probe.Result (an IMAP test lists the server's folders). Raises
    probe.Busy when all slots are taken."""
    return probe.run(
        settings,
        deadline=current_app.config["CONNECTION_TEST_DEADLINE"],
        ca_file=current_app.config["CA_FILE"],
        slots=current_app.extensions["mailkeep.test_slots"],
        policy=current_app.extensions["mailkeep.policy"],
    )
