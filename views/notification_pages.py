"""The Notifications page (admins): the channels (webhooks and email; the groups each hears about), the SMTP
relay (its password write-only), "Send test email", and the log of every delivery attempt.

Plain forms that post and come back (303), so it works without JavaScript; a webhook's signing secret is
shown on the page that answers its creation, once, and never again."""

from flask import Blueprint, render_template
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404

import notifications
from access import actor_name, requires
from models import NotificationChannel, SmtpRelay
from notification_forms import ChannelForm, RelayForm, SendTestEmailForm
from web import after_change

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


def _page(channel_form=None, relay_form=None, test_form=None, new_secret=None, new_channel=None, test_message=None):
    """The page, with its forms as given (one that failed comes back with what was typed, never a password, and
    its messages), else empty (the relay's showing the stored relay)."""
    if relay_form is None:
        relay = SmtpRelay.current()
        relay_form = RelayForm(formdata=None, obj=relay, instance=relay)
    channel_form = ChannelForm(formdata=None) if channel_form is None else channel_form
    deliveries = notifications.recent_deliveries()
    return render_template(
        "notifications/index.html", channels=list(NotificationChannel.select().order_by(NotificationChannel.name_key)),
        # The groups the channel form offers (every group, read once) name the groups a channel hears about.
        group_names={choice.value: choice.label for choice in channel_form.groups.choices},
        channel_form=channel_form, relay_form=relay_form,
        test_form=SendTestEmailForm(formdata=None) if test_form is None else test_form, new_secret=new_secret,
        new_channel=new_channel, test_message=test_message, deliveries=deliveries,
        attempts=notifications.attempts_of([delivery.id for delivery in deliveries]),
    )


def _refused(form, refused):
    """Put the messages of `refused` (a notifications.ChannelError) on the fields of `form` they are about."""
    for name, message in refused.errors.items():
        form[name].errors.append(message)


@bp.get("/")
@requires("admin")
def index():
    """The channels, the relay and the delivery log."""
    return _page()


@bp.post("/channels")
@requires("admin")
def add_channel():
    """Add a channel; a webhook's signing secret is shown in the answer, this once."""
    form = ChannelForm()
    if form.validate():
        try:
            channel, secret = notifications.create_channel(**form.values(), actor=actor_name())
        except notifications.ChannelError as refused:
            _refused(form, refused)
        except IntegrityError:
            form.name.errors.append("Another channel has this name.")
        else:
            if secret:
                return _page(new_secret=secret, new_channel=channel)
            return after_change(f"Added the channel {channel.name}.", ".index")
    return _page(channel_form=form)


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
    form = RelayForm(instance=SmtpRelay.current())
    if form.validate():
        try:
            notifications.save_relay(**form.values(), actor=actor_name())
        except notifications.ChannelError as refused:
            _refused(form, refused)
        else:
            return after_change("Saved the SMTP relay.", ".index")
    return _page(relay_form=form)


@bp.post("/test-email")
@requires("admin")
def test_email():
    """Send a test email through the relay now and say how it went."""
    form = SendTestEmailForm()
    if not form.validate():
        return _page(test_form=form)
    try:
        notifications.send_test_email(form.address.data)
    except notifications.DeliveryError as failure:
        return _page(test_form=form, test_message=f"The test email was not sent: {failure}.")
    return _page(test_message=f"Sent a test email to {form.address.data}.")
