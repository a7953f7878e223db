"""What the pages, the JSON API and the command line share: the key ring, and connection tests run
with the application's settings, their outcome recorded on the credential's health badge."""

from flask import current_app

import probe
from encryption import UndecryptableSecret
from forms import ConnectionForm, field_values

TOO_MANY_TESTS = "Too many connection tests are running; try again in a few seconds."
UNREADABLE_SECRET = "This secret cannot be read with the current keys; set it again."


def keyring():
    """The application's ``encryption.KeyRing``."""
    return current_app.extensions["mailkeep.keyring"]


def run_connection_test(settings):
    """Run a connection test with the app's deadline, CA file, concurrency slots and outbound policy;
    return the probe.Result. Raises probe.Busy when all slots are taken.
    """
    return probe.run(
        settings,
        deadline=current_app.config["CONNECTION_TEST_DEADLINE"],
        ca_file=current_app.config["CA_FILE"],
        slots=current_app.extensions["mailkeep.test_slots"],
        policy=current_app.extensions["mailkeep.policy"],
    )


def test_saved_credential(credential):
    """Test a saved credential with its stored secret and record the outcome; return the probe.Result or None.

    None means the secret could not be decrypted, which is recorded as the
    outcome instead. Raises probe.Busy when all slots are taken.
    """
    try:
        secret = credential.secret(keyring(), credential.login_secret)
    except UndecryptableSecret:
        credential.record_test(False, UNREADABLE_SECRET)
        return None
    settings = probe.Settings(
        **{credential.login_secret: secret}, **field_values(credential, ConnectionForm.CONNECTION_FIELDS)
    )
    result = run_connection_test(settings)
    credential.record_test(result.ok, result.summary)
    return result
