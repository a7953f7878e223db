"""What every view (and the access check) shares for answering a browser: htmx-aware rendering.

Every swappable piece is a partial template (``_row.html``,
``_test_result.html``, ...). An htmx request gets the partial alone; any other
request gets the full page around it, so the same URL works with and without
JavaScript.

A form that fails validation comes back with 200 and its messages: the page is
what the browser asked for, and Chromium logs every 4xx page or fragment load
as a console error, which the dashboard keeps clean. A refused change is 409 on
a full page but 200 for htmx, its explanation going to the message area. Only
"try again later" (429) keeps its status everywhere; the JSON API uses real
statuses throughout (422 for invalid input).
"""

import json
import math
import re
from http import HTTPStatus

from flask import abort, flash, redirect, render_template, request, url_for
from playhouse.flask_utils import PaginatedQuery

UNPROCESSABLE = HTTPStatus.UNPROCESSABLE_ENTITY
CONFLICT = HTTPStatus.CONFLICT
TOO_MANY_REQUESTS = HTTPStatus.TOO_MANY_REQUESTS
# When all connection-test slots are taken: a test lasts seconds, so try again soon.
BUSY_HEADERS = {"Retry-After": "5"}
# The htmx event whose detail {"text": ...} mailkeep.js shows in the page's message area.
SHOW_MESSAGE = "showMessage"
# Runs of decimal digits, which natural_key compares as numbers.
DIGITS = re.compile(r"(\d+)")
# The htmx event whose detail {"text": ...} mailkeep.js says in a live region only screen readers read.
ANNOUNCE = "announce"
# SQLite integers are 64-bit; a bigger id in a URL cannot name a row.
LARGEST_ID = 2**63 - 1


def is_htmx():
    """True for an htmx request, except the history-restore one that needs a whole page."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def fragment_or_page(fragment, title, status=200, **context):
    """Render `fragment` alone for htmx (always 200), else inside ``page.html`` headed by `title` with `status`."""
    if is_htmx():
        return render_template(fragment, **context), 200
    return render_template("page.html", fragment=fragment, title=title, **context), status


def explain_refusal(fragment, title, status=CONFLICT, **context):
    """Answer `status` (409 unless given) with an explanation; for htmx it is 200 and goes to the page's
    message area, and the row stays."""
    body, status = fragment_or_page(fragment, title, status, **context)
    return body, status, ({"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"} if is_htmx() else {})


def after_change(message, endpoint, event=None, **values):
    """After a change: for htmx an empty answer (a deleted row fades out) with two htmx events: "showMessage"
    at once, whose `message` the page's script puts in the message area, and `event` (a name, such as
    "credentialsChanged") once the swap settled, so lists listening for it refresh themselves. Else a
    notice and a 303 to `endpoint`."""
    if is_htmx():
        headers = {"HX-Trigger": json.dumps({SHOW_MESSAGE: {"text": message}})}
        if event:
            headers["HX-Trigger-After-Settle"] = event
        return "", 200, headers
    flash(message)
    return redirect(url_for(endpoint, **values), 303)


def announce(message):
    """Headers that have the page's script say `message` in its live region for screen readers (the htmx
    event "announce"), for an answer whose visible change speaks only to the eye (a new badge)."""
    return {"HX-Trigger": json.dumps({ANNOUNCE: {"text": message}})}


def id_arg(name):
    """The query argument `name` as a row id, None when absent; 404 when it cannot be one."""
    value = request.args.get(name, type=int)
    if value is not None and not 0 < value <= LARGEST_ID:
        abort(404)
    return value


def natural_key(text):
    """The sort key that puts names in the order people expect: runs of digits compare as numbers, the rest
    ignoring case ("Team 2" before "Team 10", "alpha" beside "Alpha")."""
    return [int(part) if index % 2 else part.casefold() for index, part in enumerate(DIGITS.split(text))]


def naturally(rows, name):
    """`rows` as a list in natural order (natural_key) of their attribute `name`; equal names keep their order."""
    return sorted(rows, key=lambda row: natural_key(getattr(row, name)))


class NaturallyPaged(PaginatedQuery):
    """peewee's PaginatedQuery (the page from the request's ``page`` argument) over `query`, in natural order
    (natural_key) of the text field `name` rather than the database's.

    The ids and names of every matching row are read and sorted here (a team keeps hundreds, not millions);
    only the rows of the page shown are read whole.
    """

    def __init__(self, query, name, paginate_by):
        super().__init__(query, paginate_by)
        ordered = sorted(query.select(query.model.id, name).tuples(), key=lambda row: natural_key(row[1]))
        self.ids = [row_id for row_id, _ in ordered]

    def get_page_count(self):
        """How many pages the rows fill."""
        return math.ceil(len(self.ids) / self.paginate_by)

    def get_object_list(self):
        """The rows of the current page, in natural order."""
        start = (self.get_page() - 1) * self.paginate_by
        ids = self.ids[start:start + self.paginate_by]
        rows = {row.id: row for row in self.query.where(self.query.model.id.in_(ids))}
        return [rows[row_id] for row_id in ids if row_id in rows]
