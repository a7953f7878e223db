"""For the team's own monitoring: ``/metrics`` (Prometheus text format, prometheus_client) and ``/healthz``.

``/metrics`` is read with an API token (any role), or without one from an
address in MAILKEEP_METRICS_NETWORKS. Every figure is read from the database
when scraped (a collector, not counters in one process's memory), so every
process and instance answers the same: credentials by state, checks by
outcome and cause and their duration (over the kept history), notification
deliveries by outcome, the worker's heartbeat.

``/healthz`` needs no sign-in and says no more than which part failed: 200 when
the database answers and a worker's heartbeat is recent, else 503; it answers
even when no database connection can be opened (``answers_without_database``).
"""

import logging
from datetime import timedelta

from flask import Blueprint
from peewee import Case, fn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from access import PUBLIC, before_set_up, requires, token_or_networks
from database import db
from models import CredentialCheck, NotificationDelivery, utcnow
from services import checks, scheduler

bp = Blueprint("monitoring", __name__)
log = logging.getLogger(__name__)

# Check durations' histogram buckets, in seconds.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)
# A heartbeat older than this (seconds) means no worker is running: at least two missed ticks.
HEARTBEAT_MAX_AGE = 150
# What /healthz names when it fails.
DATABASE_DOWN = "database: not answering"
WORKER_SILENT = "worker: no recent heartbeat"


class DatabaseCollector:
    """prometheus_client collector reading Mailkeep's figures from the database at each scrape."""

    def collect(self):
        states = GaugeMetricFamily("mailkeep_credentials", "Credentials by state (paused counted apart).",
                                   labels=["state"])
        for state, count in checks.summary(fresh=True).items():
            states.add_metric([state], count)
        yield states
        outcomes = CounterMetricFamily("mailkeep_checks", "Checks kept in the history, by outcome and cause.",
                                       labels=["outcome", "cause"])
        for ok, cause, count in (CredentialCheck.select(CredentialCheck.ok, CredentialCheck.cause_code,
                                                        fn.COUNT(CredentialCheck.id))
                                 .group_by(CredentialCheck.ok, CredentialCheck.cause_code).tuples()):
            outcomes.add_metric(["ok" if ok else "failed", cause or "none"], count)
        yield outcomes
        yield self._durations()
        deliveries = GaugeMetricFamily("mailkeep_notification_deliveries", "Notification deliveries by outcome.",
                                       labels=["status"])
        by_status = (NotificationDelivery.select(NotificationDelivery.status, fn.COUNT(NotificationDelivery.id))
                     .group_by(NotificationDelivery.status).tuples())
        for status, count in by_status:
            deliveries.add_metric([status], count)
        yield deliveries
        beat = scheduler.last_beat()
        heartbeat = GaugeMetricFamily("mailkeep_worker_heartbeat_age_seconds",
                                      "Seconds since a worker last said it is alive (-1: never).")
        heartbeat.add_metric([], (utcnow() - beat).total_seconds() if beat else -1)
        yield heartbeat

    def _durations(self):
        columns = [fn.SUM(Case(None, [(CredentialCheck.duration_ms <= bound * 1000, 1)], 0))
                   for bound in DURATION_BUCKETS]
        row = CredentialCheck.select(*columns, fn.COUNT(CredentialCheck.id),
                                     fn.SUM(CredentialCheck.duration_ms)).tuples().first()
        *cumulative, total, milliseconds = row if row else ([0] * len(DURATION_BUCKETS) + [0, 0])
        buckets = [(str(bound), int(count or 0)) for bound, count in zip(DURATION_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", int(total or 0)))
        histogram = HistogramMetricFamily("mailkeep_check_duration_seconds", "How long checks took.",
                                          buckets=buckets, sum_value=(milliseconds or 0) / 1000)
        return histogram


@bp.get("/metrics")
@requires("viewer")
@token_or_networks("METRICS_NETWORKS")
@before_set_up
def metrics():
    """Prometheus text format of the figures above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def answers_without_database(answer):
    """Mark a view that must answer even when no database connection can be opened: `answer()` (a Flask
    response value) is its answer then, given by app.open_database instead of failing the request."""
    def mark(view):
        view.without_database = answer
        return view
    return mark


def answer_without_database(view, error):
    """The answer of `view` (a view function, or None) when no database connection can be opened (`error`,
    the exception), or None when it has none (``answers_without_database``): the request must fail. Only a
    public view answers so, since the access check (which reads the database) is passed over: a mark on any
    other view is refused here (None) rather than let it skip its role."""
    answer = getattr(view, "without_database", None)
    if answer is None or getattr(view, "required_role", None) != PUBLIC:
        return None
    log.warning("no database connection could be opened (%s); %s answers without it", type(error).__name__,
                view.__name__)
    return answer()


def unhealthy(problems):
    """/healthz's 503 answer naming `problems` (a list of short phrases, nothing more)."""
    return {"status": "failing", "problems": problems}, 503


def database_down():
    """/healthz's answer when the database cannot be reached."""
    return unhealthy([DATABASE_DOWN])


@bp.get("/healthz")
@requires(PUBLIC)
@before_set_up
@answers_without_database(database_down)
def healthz():
    """200 "ok" when the database answers and a worker's heartbeat is recent; else 503 naming which failed."""
    try:
        db.execute_sql("SELECT 1")
        beat = scheduler.last_beat()
    except Exception:  # any database failure: say which part, nothing more
        return database_down()
    if beat is None or utcnow() - beat > timedelta(seconds=HEARTBEAT_MAX_AGE):
        return unhealthy([WORKER_SILENT])
    return {"status": "ok"}, 200

