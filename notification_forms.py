"""The forms of the Notifications page (Flask-WTF): a new channel, the SMTP relay, and "Send test email".

Like forms.py's, they check only the shape of what is typed (how long, a choice offered, one address) and
hand over plain values (``values()``). Whether a channel or the relay will do is notifications.py's to say
(``create_channel`` and ``save_relay`` raise notifications.ChannelError with a message for each field), and
what it checks is not checked here again: the page puts its messages on these forms' fields. Its limits
reach the browser as ``maxlength``.
"""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    URLField,
)
from wtforms.validators import DataRequired, Length

import notifications
from forms import MAX_LIST_ITEMS, ModelForm, email_address, strip
from models import Group, NotificationChannel
from service_forms import CheckboxesField
from web import naturally

# The longest kind or security (a choice's value) and port (its digits) taken.
CHOICE_LENGTH = 16
PORT_LENGTH = 5
ALL_GROUPS, CHOSEN_GROUPS = "all", "chosen"


class ChannelForm(ModelForm):
    """Add a channel: a webhook (its URL) or email (its recipients), hearing about every group or the chosen
    ones. notifications.create_channel says whether the name, kind, URL and recipients will do."""

    name = StringField("Name", id="channel-name", default="",
                       render_kw={"maxlength": notifications.NAME_LENGTH})
    # Any other kind is refused by notifications.create_channel, with its message.
    kind = SelectField("Kind", [Length(max=CHOICE_LENGTH)], id="channel-kind", validate_choice=False,
                       choices=[SelectChoice(NotificationChannel.WEBHOOK, "Webhook (JSON, signed)"),
                                SelectChoice(NotificationChannel.EMAIL, "Email")])
    # Bounded by notifications.create_channel, which keeps only the one of these two its kind uses.
    url = URLField("Webhook URL", id="channel-url", default="", render_kw={"maxlength": notifications.URL_LENGTH},
                   description="For a webhook. Private addresses only when MAILKEEP_ALLOWED_NETWORKS allows them; "
                               "never link-local or metadata addresses.")
    recipients = StringField("Email recipients", id="channel-recipients", default="",
                             render_kw={"maxlength": notifications.RECIPIENTS_LENGTH})
    scope = RadioField("Hears about", choices=[SelectChoice(ALL_GROUPS, "Every group"),
                                               SelectChoice(CHOSEN_GROUPS, "Only these groups:")],
                       default=ALL_GROUPS)
    groups = CheckboxesField("Groups", [Length(max=MAX_LIST_ITEMS,
                                               message=f"Choose at most {MAX_LIST_ITEMS} groups.")], coerce=int)

    FIELDS = ("kind", "name", "url", "recipients")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups.choices = [SelectChoice(group.id, group.name) for group in naturally(Group.select(), "name")]

    def values(self, names=None):
        """The plain values notifications.create_channel takes (see ModelForm.values), with ``group_ids``: the
        groups ticked when "Only these groups" is chosen, else none (every group)."""
        values = super().values(names)
        values["group_ids"] = list(self.groups.data or ()) if self.scope.data == CHOSEN_GROUPS else []
        return values


class RelayForm(ModelForm):
    """The SMTP relay (`instance`, models.SmtpRelay). Its password is write-only: never shown, typed only to
    replace the stored one (left empty, the stored one stays) or forgotten with "Forget the stored password".
    notifications.save_relay says whether the host, port, security, username, password and sender will do."""

    host = StringField("Host", id="relay-host", default="", render_kw={"maxlength": notifications.HOST_LENGTH})
    # Text, not a number: notifications.save_relay reads the port and says when it is none.
    port = StringField("Port", [Length(max=PORT_LENGTH)], id="relay-port", render_kw={"inputmode": "numeric"})
    # Any other security is refused by notifications.save_relay, with its message.
    security = SelectField("Security", [Length(max=CHOICE_LENGTH)], id="relay-security", validate_choice=False,
                           choices=[SelectChoice(value, label)
                                    for value, label in notifications.RELAY_SECURITY.items()])
    username = StringField("Username", id="relay-username", default="",
                           render_kw={"maxlength": notifications.USERNAME_LENGTH, "autocomplete": "off"})
    password = PasswordField("Password", id="relay-password",
                             render_kw={"maxlength": notifications.PASSWORD_LENGTH, "autocomplete": "new-password"})
    forget_password = BooleanField("Forget the stored password", id="relay-forget-password")
    sender = StringField("Sender address", id="relay-sender", default="",
                         render_kw={"maxlength": notifications.ADDRESS_LENGTH})

    FIELDS = ("host", "port", "security", "username", "sender")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.password.description = ("Stored encrypted, never shown; leave empty to keep it." if self.has_password
                                     else "None stored.")

    @property
    def has_password(self):
        """True when the relay has a stored password (which may be kept or forgotten)."""
        return self.instance is not None and self.instance.has_secret("password")

    def values(self, names=None):
        """The plain values notifications.save_relay takes (see ModelForm.values), with ``password``: the one
        typed, else "" to forget the stored one when asked to, else None to keep it."""
        values = super().values(names)
        typed = self.password.data or ""
        values["password"] = typed if typed or self.forget_password.data else None
        return values


class SendTestEmailForm(FlaskForm):
    """"Send test email": the one address to send it to."""

    address = EmailField("Send a test email to", [DataRequired("Give one email address."),
                                                  Length(max=notifications.ADDRESS_LENGTH), email_address],
                         id="test-address", filters=[strip])
