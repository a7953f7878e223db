"""The Notifications page (admins): the channels (webhooks and email; the groups each hears about), the SMTP
relay (its password write-only), "Send test email", and the log of every delivery attempt.

Plain forms that post and come back (303), so it works without JavaScript; a webhook's signing secret is
shown on the page that answers its creation, once, and never again."""

from flask import Blueprint, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404

import notifications
from access import actor_name, requires
from models import Group, NotificationChannel, SmtpRelay
from web import after_change, naturally

bp = Blueprint("notifications", __name__, url_prefix="/notifications")

# The longest text any field of this page takes.
MAX_FIELD = 2000


def _field(name, limit=MAX_FIELD):
    return request.form.get(name, "")[:limit]


def _page(channel_errors=None, relay_errors=None, new_secret=None, new_channel=None, test_message=None, status=200):
    channels = list(NotificationChannel.select().order_by(NotificationChannel.name_key))
    deliveries = notifications.recent_deliveries()
    return render_template(
        "notifications/index.html", channels=channels, groups=naturally(Group.select(), "name"),
        group_names={group.id: group.name for group in Group.select(Group.id, Group.name)},
        relay=SmtpRelay.current(), security_labels=notifications.RELAY_SECURITY,
        channel_errors=channel_errors or {}, relay_errors=relay_errors or {}, new_secret=new_secret,
        new_channel=new_channel, test_message=test_message, deliveries=deliveries,
        attempts=notifications.attempts_of([delivery.id for delivery in deliveries]), form=request.form,
    ), status


@bp.get("/")
@requires("admin")
def index():
    """The channels, the relay and the delivery log."""
    return _page()


@bp.post("/channels")
@requires("admin")
def add_channel():
    """Add a channel; a webhook's signing secret is shown in the answer, this once."""
    group_ids = [int(value) for value in request.form.getlist("groups") if value.isdigit()][:1000]
    known = {group.id for group in Group.select(Group.id)}
    try:
        channel, secret = notifications.create_channel(
            _field("kind", 16), _field("name", 100), url=_field("url"), recipients=_field("recipients"),
            group_ids=[group_id for group_id in group_ids if group_id in known] if request.form.get("scope") == "chosen"
            else [], actor=actor_name())
    except notifications.ChannelError as refused:
        return _page(channel_errors=refused.errors)
    except IntegrityError:
        return _page(channel_errors={"name": "Another channel has this name."})
    if secret:
        return _page(new_secret=secret, new_channel=channel)
    return after_change(f"Added the channel {channel.name}.", ".index")


@bp.post("/channels/<id:channel_id>/enable")
@requires("admin")
def enable_channel(channel_id):
    """Turn a channel on."""
    channel = get_object_or_404(NotificationChannel, NotificationChannel.id == channel_id)
    notifications.set_channel_enabled(channel, True, actor=actor_name())
    return after_change(f"{channel.name} is on.", ".index")


@bp.post("/channels/<id:channel_id>/disable")
@requires("admin")
def disable_channel(channel_id):
    """Turn a channel off."""
    channel = get_object_or_404(NotificationChannel, NotificationChannel.id == channel_id)
    notifications.set_channel_enabled(channel, False, actor=actor_name())
    return after_change(f"{channel.name} is off.", ".index")


@bp.post("/channels/<id:channel_id>/delete")
@requires("admin")
def delete_channel(channel_id):
    """Delete a channel, its deliveries and their log."""
    channel = get_object_or_404(NotificationChannel, NotificationChannel.id == channel_id)
    notifications.delete_channel(channel, actor=actor_name())
    return after_change(f"Deleted the channel {channel.name}.", ".index")


@bp.post("/relay")
@requires("admin")
def save_relay():
    """Store the SMTP relay; an empty password field keeps the stored password."""
    password = request.form.get("password", "")[:4097]
    try:
        notifications.save_relay(
            host=_field("host", 253), port=_field("port", 5), security=_field("security", 16),
            username=_field("username", 321), sender=_field("sender", 321),
            password=None if not password and not request.form.get("forget_password") else password,
            actor=actor_name())
    except notifications.ChannelError as refused:
        return _page(relay_errors=refused.errors)
    return after_change("Saved the SMTP relay.", ".index")


@bp.post("/test-email")
@requires("admin")
def test_email():
    """Send a test email through the relay now and say how it went."""
    address = _field("address", 320).strip()
    if "@" not in address or any(c in address for c in "\r\n <>,"):
        return _page(relay_errors={"address": "Give one email address."})
    try:
        notifications.send_test_email(address)
    except notifications.DeliveryError as failure:
        return _page(test_message=f"The test email was not sent: {failure}.")
    return _page(test_message=f"Sent a test email to {address}.")
