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

UNPROCESSABLE = 422
CONFLICT = 409


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
