"""The JSON API of watching credentials, on the API's blueprint (views/api.py): a credential's check
history, the health summary, "Test all" runs, and the notification channels (admins). openapi.py
describes each answer; a webhook channel's signing secret is answered once, when it is made."""

from flask import current_app, request, url_for
from peewee import IntegrityError

import notifications
import worker
from access import actor_name, requires
from models import CheckRun, Credential, CredentialCheck, Group, NotificationChannel
from services import checks, scheduler
from views.api import ApiError, _find, _page_of, _payload, bp
from web import CONFLICT, LARGEST_ID, UNPROCESSABLE


@bp.get("/credentials/<id:row_id>/checks")
@requires("viewer")
def credential_checks(row_id):
    """A page of a credential's checks, newest first (``page``, ``per_page``)."""
    credential = _find(Credential, row_id)
    query = CredentialCheck.of(credential.id)
    return _page_of(query, query.count(), lambda rows: [checks.check_json(row) for row in rows])


@bp.get("/health")
@requires("viewer")
def health_summary():
    """The summary counts (as on the credentials page) and when a worker last said it is alive."""
    beat = scheduler.last_beat()
    return {"counts": checks.summary(fresh=True), "worker_heartbeat": beat.isoformat() + "Z" if beat else None,
            "check_interval": current_app.config["CHECK_INTERVAL"]}


@bp.post("/check-runs")
@requires("editor")
def start_check_run():
    """"Test all": ``{"credential_ids": [...]}``, or the list's filters (``q``, ``group``, ``protocol``, ``auth``,
    ``health``), or ``{}`` for every credential; answers 202 with the run's id and where to follow it."""
    payload = _payload()
    if "credential_ids" in payload:
        ids = payload["credential_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                  and 0 < i <= LARGEST_ID for i in ids) or len(ids) > 100_000:
            raise ApiError(UNPROCESSABLE, {"errors": {"credential_ids": ["A list of credential ids."]}})
        ids = [row_id for (row_id,) in Credential.select(Credential.id).where(Credential.id.in_(ids)).tuples()]
    else:
        group = payload.get("group")
        state = payload.get("health")
        if state is not None and state not in checks.SUMMARY_FILTERS:
            raise ApiError(UNPROCESSABLE, {"errors": {"health": [f"One of {', '.join(checks.SUMMARY_FILTERS)}."]}})
        where = (checks.summary_condition(state),) if state else ()
        query = Credential.select(Credential.id).where(*Credential._filters(
            str(payload.get("q") or "")[:200], group if isinstance(group, int) and 0 < group <= LARGEST_ID else None,
            payload.get("protocol") or None, payload.get("auth") or None, where))
        ids = [row_id for (row_id,) in query.tuples()]
    run = scheduler.start_run(ids, actor=actor_name())
    worker.start_run(current_app, run.id)
    return ({"id": run.id, "total": run.total}, 202,
            {"Location": url_for("api.check_run", run_id=run.id)})


@bp.get("/check-runs/<id:run_id>")
@requires("viewer")
def check_run(run_id):
    """How far a run is: total, done, ok, failing, and whether it is finished."""
    run = _find(CheckRun, run_id)
    progress = run.progress()
    return {"id": run.id, "started_at": run.started_at.isoformat() + "Z", "actor": run.actor, **progress,
            "finished": progress["done"] >= progress["total"]}


def channel_json(channel):
    """A channel as the API shows it: never its signing secret."""
    return {"id": channel.id, "name": channel.name, "kind": channel.kind, "url": channel.url or None,
            "recipients": notifications.split_recipients(channel.recipients), "enabled": channel.enabled,
            "groups": None if channel.all_groups else sorted(channel.group_ids),
            "created_at": channel.created_at.isoformat() + "Z"}


@bp.get("/notification-channels")
@requires("admin")
def list_channels():
    """Every notification channel."""
    query = NotificationChannel.select().order_by(NotificationChannel.name_key)
    return _page_of(query, query.count(), lambda rows: [channel_json(row) for row in rows])


@bp.post("/notification-channels")
@requires("admin")
def create_channel():
    """Add a channel: ``{"kind": "webhook", "name", "url"}`` or ``{"kind": "email", "name", "recipients": [..]}``,
    with ``"groups": [ids]`` to hear about those groups only. A webhook's answer carries its
    ``signing_secret``, this once."""
    payload = _payload()
    recipients = payload.get("recipients") or []
    groups = payload.get("groups") or []
    if not isinstance(recipients, list) or not all(isinstance(item, str) for item in recipients):
        raise ApiError(UNPROCESSABLE, {"errors": {"recipients": ["A list of email addresses."]}})
    if not isinstance(groups, list) or not all(isinstance(item, int) and not isinstance(item, bool)
                                               and 0 < item <= LARGEST_ID for item in groups):
        raise ApiError(UNPROCESSABLE, {"errors": {"groups": ["A list of group ids."]}})
    missing = set(groups) - {group.id for group in Group.select(Group.id).where(Group.id.in_(groups or [0]))}
    if missing:
        raise ApiError(UNPROCESSABLE, {"errors": {"groups": [f"No group with id {min(missing)}."]}})
    try:
        channel, secret = notifications.create_channel(
            str(payload.get("kind") or ""), str(payload.get("name") or ""), url=str(payload.get("url") or ""),
            recipients=", ".join(recipients), group_ids=groups, actor=actor_name())
    except notifications.ChannelError as refused:
        raise ApiError(UNPROCESSABLE, {"errors": {name: [message] for name, message in refused.errors.items()}}) \
            from None
    except IntegrityError:
        raise ApiError(CONFLICT, {"error": "Another channel has this name."}) from None
    body = channel_json(channel)
    if secret:
        body["signing_secret"] = secret
    return body, 201, {"Location": url_for("api.channel", row_id=channel.id)}


@bp.route("/notification-channels/<id:row_id>", methods=["GET", "PATCH", "DELETE"])
@requires("admin")
def channel(row_id):
    """One channel: read it (GET), turn it on or off (PATCH ``{"enabled": true|false}``), or delete it with
    its deliveries and their log (DELETE). One rule for the three methods, as the entries' MethodViews have."""
    found = _find(NotificationChannel, row_id)
    if request.method == "DELETE":
        notifications.delete_channel(found, actor=actor_name())
        return "", 204
    if request.method == "PATCH":
        enabled = _payload().get("enabled")
        if not isinstance(enabled, bool):
            raise ApiError(UNPROCESSABLE, {"errors": {"enabled": ["true or false."]}})
        notifications.set_channel_enabled(found, enabled, actor=actor_name())
    return channel_json(found)
