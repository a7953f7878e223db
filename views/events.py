"""The audit log page (admins only): events filtered by user, entry, action and date, newest first."""

from datetime import date, datetime, timedelta

from flask import Blueprint, render_template, request

from access import requires
from audit import ACTIONS
from models import AuditEvent, User
from web import Pages, is_htmx

bp = Blueprint("events", __name__, url_prefix="/audit")


@bp.get("/")
@requires("admin")
def index():
    """The events; htmx gets the list alone (the filters and page links swap it)."""
    filters = {name: request.args.get(name, "").strip() for name in ("actor", "entry", "action", "since", "until")}
    since, until = _day(filters["since"]), _day(filters["until"])
    # Until the end of that day; the last day there is has no day after it, so it means no end.
    before = until + timedelta(days=1) if until and until.date() < date.max else None
    events = AuditEvent.search(filters["actor"], filters["entry"], filters["action"], since, before)
    pages = Pages(events, events.count)
    template = "events/_list.html" if is_htmx() else "events/index.html"
    return render_template(
        template, events=pages.get_object_list(), pages=pages, filters=filters, actions=ACTIONS,
        users=User.select().order_by(User.username_key), page_args={k: v for k, v in filters.items() if v},
    )


def _day(text):
    """A date from an <input type=date> (YYYY-MM-DD) as a datetime at midnight UTC, or None."""
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None
