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

import io
import json
from http import HTTPStatus

import flask
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from playhouse.flask_utils import PaginatedQuery
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.routing import IntegerConverter

from database import LARGEST_ID
from models import revision_from_text, sortable

UNPROCESSABLE = HTTPStatus.UNPROCESSABLE_ENTITY
CONFLICT = HTTPStatus.CONFLICT
TOO_MANY_REQUESTS = HTTPStatus.TOO_MANY_REQUESTS
# When all connection-test slots are taken: a test lasts seconds, so try again soon.
BUSY_HEADERS = {"Retry-After": "5"}
# The htmx event whose detail {"text": ...} mailkeep.js shows in the page's message area.
SHOW_MESSAGE = "showMessage"
# The htmx event whose detail {"text": ...} mailkeep.js says in a live region only screen readers read.
ANNOUNCE = "announce"


class TooManyFormParts(RequestEntityTooLarge):
    """A form sent more fields than MAX_FORM_PARTS (413)."""

    description = "This form sends more fields than Mailkeep accepts."


class _FormDataParser(FormDataParser):
    """Werkzeug's form parser, with MAX_FORM_PARTS applied to URL-encoded forms too: Werkzeug counts the parts
    of multipart forms only, and browsers send Mailkeep's forms URL-encoded. (It overrides a method Werkzeug
    does not document; requirements.txt pins the version it was written for.)"""

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        body = stream.read()  # at most MAX_CONTENT_LENGTH bytes: the stream is limited before it gets here
        if self.max_form_parts is not None and body.count(b"&") >= self.max_form_parts:
            raise TooManyFormParts()
        return super()._parse_urlencoded(io.BytesIO(body), mimetype, content_length, options)


class Request(flask.Request):
    """Flask's request, whose forms are held to MAX_FORM_PARTS however they are encoded."""

    form_data_parser_class = _FormDataParser


class RowIdConverter(IntegerConverter):
    """``<id:name>`` in a route: a row id, from 1 to LARGEST_ID. Any other number matches no route, so every
    route answers 404 for it (a database would overflow on a bigger one)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=LARGEST_ID)


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


def etag_of(credential):
    """The ETag of a credential (RFC 9110 section 8.8.3): its revision, quoted ("7"). It moves on with every
    change a person makes (settings, secrets; models.Credential.revision), not with a connection test's
    outcome, so a change made against it can name it in If-Match (check-and-set)."""
    return f'"{credential.revision}"'


def expected_revisions():
    """The revisions an If-Match header names (a list of numbers), or None when there is none or it is "*"
    (the change is not check-and-set). A tag that is no revision of ours names none: [], so it fails."""
    if not request.headers.get("If-Match"):
        return None
    tags = request.if_match
    if tags.star_tag:
        return None
    revisions = (revision_from_text(tag) for tag in tags.as_set(include_weak=True))
    return [revision for revision in revisions if revision is not None]


def stale(error):
    """The API's answer to models.StaleRevision: 412 Precondition Failed, with the current ETag."""
    headers = {"ETag": f'"{error.current}"'} if error.current is not None else {}
    return ({"error": "This credential was changed since the revision named in If-Match; read it again (its ETag) "
                      "and decide again."}, HTTPStatus.PRECONDITION_FAILED, headers)


def id_arg(name):
    """The query argument `name` as a row id, None when absent; 404 when it cannot be one."""
    value = request.args.get(name, type=int)
    if value is not None and not 0 < value <= LARGEST_ID:
        abort(404)
    return value


def naturally(rows, name):
    """`rows` as a list in natural order of their attribute `name` (models.sortable: "Team 2" before
    "Team 10", case ignored); equal names keep their order. For short lists; long ones are ordered by the
    database, on their ``*_sort`` column."""
    return sorted(rows, key=lambda row: sortable(getattr(row, name)))


class Pages(PaginatedQuery):
    """playhouse's PaginatedQuery (``?page=N`` of `query`), with the total given by `count` (a callable
    answering a plain COUNT of the filtered table, instead of a count wrapped around the whole list query),
    ``PAGE_SIZE`` rows a page, and a page past the end showing the last one. `fetch(page, per_page)`, when
    given, reads a page's rows instead of ``query.paginate`` (a model's own faster way)."""

    def __init__(self, query, count, per_page=None, fetch=None):
        super().__init__(query, per_page or current_app.config["PAGE_SIZE"])
        self._count = count
        self._fetch = fetch
        self._page_count = None
        self.page = min(self.get_page(), self.get_page_count())

    def get_object_list(self):
        """The rows of the current page."""
        if self._fetch is not None:
            return self._fetch(self.get_page(), self.paginate_by)
        return super().get_object_list()

    def get_page_count(self):
        """The number of pages (at least 1), counted once."""
        if self._page_count is None:
            self._page_count = max((self._count() + self.paginate_by - 1) // self.paginate_by, 1)
        return self._page_count
