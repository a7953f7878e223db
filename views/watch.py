"""Watching credentials, in the pages: a credential's history section (latest checks, uptime, a chart drawn
on the server, every change of state), pausing and resuming its scheduled checks, the list's summary, and
"Test all" with its progress (htmx polls a small partial; without JavaScript, the page reloads itself)."""

import math

from flask import Blueprint, current_app, render_template, request, url_for
from playhouse.flask_utils import get_object_or_404

import health
import worker
from access import actor_name, requires
from models import CheckRun, Credential, CredentialCheck
from services import checks, scheduler
from web import after_change, announce, fragment_or_page, is_htmx

bp = Blueprint("watch", __name__)

# The chart: the latest CHART_CHECKS checks as bars, newest on the right, in a viewBox of this size.
CHART_CHECKS = 60
CHART_WIDTH, CHART_HEIGHT = 600, 80
HISTORY_ROWS = 15


def chart(history):
    """Bars for the SVG chart of `history` (CredentialCheck rows, newest first): each {x, y, width, height,
    ok, label}, the height growing with the check's duration on a log scale (a failed check is full height,
    so it stands out), oldest on the left."""
    rows = list(reversed(history[:CHART_CHECKS]))
    slot = CHART_WIDTH / CHART_CHECKS
    bars = []
    for index, check in enumerate(rows):
        share = 1.0 if not check.ok else min(max(math.log10(max(check.duration_ms, 1)) / 4, 0.15), 1.0)
        height = round(share * (CHART_HEIGHT - 4), 1)
        bars.append({
            "x": round(CHART_WIDTH - (len(rows) - index) * slot + 1, 1), "y": round(CHART_HEIGHT - height, 1),
            "width": round(slot - 2, 1), "height": height, "ok": check.ok,
            "label": f"{check.at:%Y-%m-%d %H:%M} UTC: {'ok' if check.ok else check.cause_code or 'failed'}, "
                     f"{check.duration_ms} ms",
        })
    return bars


def history_context(credential):
    """What credentials/_history.html needs for `credential`."""
    history = list(CredentialCheck.of(credential.id).limit(CHART_CHECKS))
    return {
        "history": history[:HISTORY_ROWS], "bars": chart(history), "chart_size": (CHART_WIDTH, CHART_HEIGHT),
        "uptimes": checks.uptimes(credential.id), "state_changes": checks.changes(credential.id),
        "state": health.displayed(credential.check_state, credential.check_paused), "state_labels": health.LABELS,
        "interval": checks.interval_for(credential),
    }


def summary_context():
    """What credentials/_summary.html needs: the counts and their filter names and labels."""
    return {"summary": checks.summary(), "summary_filters": checks.SUMMARY_FILTERS,
            "summary_labels": checks.SUMMARY_LABELS}


@bp.post("/credentials/<id:credential_id>/pause")
@requires("editor")
def pause(credential_id):
    """Pause the scheduled checks of a credential (it is still tested when someone asks)."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    checks.set_paused(credential, True, actor=actor_name())
    return _after_pause(credential, f"Scheduled checks of {credential.name} are paused.")


@bp.post("/credentials/<id:credential_id>/resume")
@requires("editor")
def resume(credential_id):
    """Resume the scheduled checks of a credential."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    checks.set_paused(credential, False, actor=actor_name())
    return _after_pause(credential, f"Scheduled checks of {credential.name} resumed.")


def _after_pause(credential, message):
    if is_htmx():
        return render_template("credentials/_history.html", credential=credential,
                               **history_context(credential)), 200, announce(message)
    return after_change(message, "credentials.show", credential_id=credential.id)


@bp.post("/checks/runs")
@requires("editor")
def start_run():
    """"Test all": check every credential the list shows with its filters (all pages), in the background;
    answers the run's progress."""
    text = request.form.get("q", "").strip()
    group, protocol, auth = id_arg_form("group"), request.form.get("protocol") or None, request.form.get("auth") or None
    query = Credential.select(Credential.id).where(*Credential._filters(text, group, protocol, auth))
    state = request.form.get("health")
    if state in checks.SUMMARY_FILTERS:
        query = query.where(checks.summary_condition(state))
    ids = [row_id for (row_id,) in query.tuples()]
    run = scheduler.start_run(ids, actor=actor_name())
    worker.start_run(current_app, run.id)
    return _progress(run)


def id_arg_form(name):
    """A row id from the posted form, None when absent or not one."""
    value = request.form.get(name, type=int)
    return value if value and value > 0 else None


@bp.get("/checks/runs/<id:run_id>")
@requires("viewer")
def run_progress(run_id):
    """How far a "Test all" run is (htmx polls this partial until it is done)."""
    return _progress(get_object_or_404(CheckRun, CheckRun.id == run_id))


def _progress(run):
    progress = run.progress()
    finished = progress["done"] >= progress["total"]
    return fragment_or_page("checks/_run.html", "Test all", run=run, progress=progress, finished=finished,
                            poll_url=url_for("watch.run_progress", run_id=run.id))

