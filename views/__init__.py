"""Blueprints, one per concern, and what they share: htmx-aware rendering.

Every swappable piece is a partial template (``_row.html``,
``_test_result.html``, ...). An htmx request gets the partial alone; any other
request gets the full page around it, so the same URL works with and without
JavaScript.

Failed validation (422) and a refused change (409) keep their status on full
pages, but an htmx request gets 200 with the error fragment: Chromium logs every
4xx answer to a script's request as a console error, and the dashboard keeps a
clean console.
"""

from flask import current_app, flash, redirect, render_template, request, url_for

import probe
from encryption import UndecryptableSecret
from forms import ConnectionForm, field_values

UNPROCESSABLE = 422
CONFLICT = 409
TOO_MANY_REQUESTS = 429
TOO_MANY_TESTS = "Too many connection tests are running; try again in a few seconds."
UNREADABLE_SECRET = "This secret cannot be read with the current keys; set it again."


def is_htmx():
    """True for an htmx request, except the history-restore one that needs a whole page."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def respond(fragment, title, status=200, **context):
    """Render `fragment` alone for htmx (always 200), else inside ``page.html`` headed by `title` with `status`."""
    if is_htmx():
        return render_template(fragment, **context), 200
    return render_template("page.html", fragment=fragment, title=title, **context), status


def keyring():
    """The application's ``encryption.KeyRing``."""
    return current_app.extensions["mailkeep.keyring"]


def refuse(fragment, title, **context):
    """Answer 409 with an explanation; for htmx it goes to the page's message area and the row stays."""
    body, status = respond(fragment, title, CONFLICT, **context)
    return body, status, ({"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"} if is_htmx() else {})


def finish(message, endpoint, **values):
    """After a change: an empty answer for htmx (a deleted row fades out), else a notice and a 303 to `endpoint`."""
    if is_htmx():
        return ""
    flash(message)
    return redirect(url_for(endpoint, **values), 303)


def run_connection_test(settings):
    """Run a connection test with the app's deadline, CA file and concurrency slots.

    Raises probe.Busy when all slots are taken.
    """
    return probe.run(
        settings,
        deadline=current_app.config["CONNECTION_TEST_DEADLINE"],
        ca_file=current_app.config["CA_FILE"],
        slots=current_app.extensions["mailkeep.test_slots"],
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
