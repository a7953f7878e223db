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

from http import HTTPStatus

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from playhouse.flask_utils import PaginatedQuery

from database import LARGEST_ID

UNPROCESSABLE = HTTPStatus.UNPROCESSABLE_ENTITY
CONFLICT = HTTPStatus.CONFLICT
TOO_MANY_REQUESTS = HTTPStatus.TOO_MANY_REQUESTS
# When all connection-test slots are taken: a test lasts seconds, so try again soon.
BUSY_HEADERS = {"Retry-After": "5"}


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


def after_change(message, endpoint, **values):
    """After a change: an empty answer for htmx (a deleted row fades out), else a notice and a 303 to `endpoint`."""
    if is_htmx():
        return ""
    flash(message)
    return redirect(url_for(endpoint, **values), 303)


def id_arg(name):
    """The query argument `name` as a row id, None when absent; 404 when it cannot be one."""
    value = request.args.get(name, type=int)
    if value is not None and not 0 < value <= LARGEST_ID:
        abort(404)
    return value


class Pages(PaginatedQuery):
    """playhouse's PaginatedQuery (``?page=N`` of `query`), with the total given by `count` (a callable
    answering a plain COUNT of the filtered table, instead of a count wrapped around the whole list query),
    ``PAGE_SIZE`` rows a page, and a page past the end showing the last one."""

    def __init__(self, query, count, per_page=None):
        super().__init__(query, per_page or current_app.config["PAGE_SIZE"])
        self._count = count
        self._page_count = None
        self.page = min(self.get_page(), self.get_page_count())

    def get_page_count(self):
        """The number of pages (at least 1), counted once."""
        if self._page_count is None:
            self._page_count = max((self._count() + self.paginate_by - 1) // self.paginate_by, 1)
        return self._page_count
