"""The forms of service accounts and secret rotation (Flask-WTF), shared by the pages and the API (through
forms.validated), with the same rules and messages as every other form (forms.py's validators)."""

import ipaddress

from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

import logins
from config import MAX_GRACE_SECONDS
from forms import MAX_SECRET_LENGTH, ModelForm, no_control_characters, only_line_breaks, strip, unique
from models import SCOPES, Credential, Group, ServiceAccount, revision_from_text
from services.versions import MAX_NOTE_LENGTH

# The most networks one service account may list.
MAX_NETWORKS = 50
# The grace period as the page asks for it: whole hours, at most MAX_GRACE_SECONDS.
MAX_GRACE_HOURS = MAX_GRACE_SECONDS // 3600


class CheckboxesField(SelectMultipleField):
    """Several choices as checkboxes (WTForms' documented pattern for a multiple choice as checkboxes)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def networks_rule(form, field):
    """Validator: IP networks in CIDR notation, separated by commas (at most MAX_NETWORKS); a host address
    alone counts as its own network (/32, /128)."""
    items = [item.strip() for item in (field.data or "").split(",") if item.strip()]
    if len(items) > MAX_NETWORKS:
        raise ValidationError(f"List at most {MAX_NETWORKS} networks.")
    for item in items:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError:
            try:
                suggestion = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValidationError(f"{item} is not an IP network in CIDR notation, such as 10.0.0.0/8.") from None
            raise ValidationError(f"{item} has host bits set; did you mean {suggestion}?") from None


def normalized_networks(text):
    """The networks in `text` (valid: see networks_rule) as Mailkeep keeps them: "10.0.0.0/8, 2001:db8::/32"."""
    return ", ".join(str(ipaddress.ip_network(item.strip())) for item in (text or "").split(",") if item.strip())


def existing_credentials(form, field):
    """Validator: every id names a credential (it may have been deleted since the page was shown)."""
    ids = set(field.data or ())
    found = {row_id for (row_id,) in Credential.select(Credential.id).where(Credential.id.in_(list(ids))).tuples()}
    if missing := sorted(ids - found):
        raise ValidationError(f"No credential with id {', '.join(str(row_id) for row_id in missing)}.")


class ServiceAccountForm(ModelForm):
    """Add or change a service account: its name, description, scopes, networks and the groups (and, over the
    API, the single credentials) it may read."""

    name = StringField(
        "Name",
        [DataRequired(), Length(max=80), no_control_characters,
         unique(ServiceAccount.name_key, "Another service account is already called '{other.name}'.")],
        filters=[strip],
    )
    description = TextAreaField("Description", [Length(max=2000), only_line_breaks], filters=[strip], default="")
    scopes = CheckboxesField("What it may do", choices=[SelectChoice(scope, words) for scope, words in SCOPES.items()],
                             default=["connection:read"])
    networks = StringField(
        "Networks it may call from", [Length(max=2000), no_control_characters, networks_rule], filters=[strip],
        default="", description="IP networks in CIDR notation, separated by commas, e.g. 10.0.0.0/8, "
                                "2001:db8::/32. Empty: from anywhere.",
    )
    group_ids = CheckboxesField("Groups it may read", coerce=int)
    credential_ids = SelectMultipleField("Single credentials it may read", [existing_credentials], coerce=int,
                                         validate_choice=False)

    # What the page edits; single credentials are added and taken back one at a time there.
    PAGE_FIELDS = ("name", "description", "scopes", "networks", "group_ids")
    FIELDS = (*PAGE_FIELDS, "credential_ids")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_ids.choices = [SelectChoice(group.id, group.name) for group in Group.by_name()]

    def values(self, names=None):
        """The validated values (see ModelForm.values), the networks in the form Mailkeep keeps them."""
        values = super().values(names)
        if "networks" in values:
            values["networks"] = normalized_networks(values["networks"])
        return values


class CheckAndSetForm(ModelForm):
    """A change made on a credential's page against the revision the page showed (models.Credential.revision,
    carried in a hidden field): the change passes ``expected_revision()`` on, so services.versions refuses
    it (models.StaleRevision) when someone changed the credential after the page was rendered.

    A form made for rendering (``formdata=None``) takes the revision of
    `instance`; a submitted one holds only what was sent, never the stored
    revision, so a submission without one is refused rather than waved through.
    """

    revision = HiddenField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("formdata", False) is None and self.instance is not None:
            self.revision.data = str(self.instance.revision)

    def expected_revision(self):
        """The revisions the change may be made against, as services.versions takes `expected_revision`: a list
        of the one revision sent, or [] (no revision passes) when none or no number was sent."""
        revision = revision_from_text(self.revision.data or "")
        return [] if revision is None else [revision]


class RotationForm(CheckAndSetForm):
    """Rotate a credential's secret on its page: the new secret (typed twice), a note, how long the previous
    one stays readable (hours), whether to save it although its test fails, and the revision the page showed
    (CheckAndSetForm)."""

    new_secret = PasswordField("New password", [DataRequired(), Length(max=MAX_SECRET_LENGTH),
                                                no_control_characters])
    confirm_secret = PasswordField("Confirm it", [DataRequired(), Length(max=MAX_SECRET_LENGTH),
                                                  no_control_characters])
    note = StringField("Note (optional)", [Length(max=MAX_NOTE_LENGTH), no_control_characters], filters=[strip],
                       default="", description="Why, or where the new one came from; never the secret.")
    grace_hours = IntegerField(
        "Previous one readable for (hours)",
        [InputRequired("Enter a number of hours, 0 or more."),
         NumberRange(0, MAX_GRACE_HOURS, f"Enter a number of hours from 0 to {MAX_GRACE_HOURS}.")],
        default=24, description="Tools that read it before the rotation can read it again until then.",
    )
    save_anyway = BooleanField("Save it even if the test fails")

    def __init__(self, *args, secret=logins.PASSWORD, **kwargs):
        super().__init__(*args, **kwargs)
        self.secret = secret
        self.new_secret.label.text = f"New {secret.noun}"

    def validate_confirm_secret(self, field):
        """The two typings must match."""
        if field.data != self.new_secret.data:
            raise ValidationError(f"The two {self.secret.noun}s do not match.")


class RestoreForm(CheckAndSetForm):
    """Restore a kept version on the credential's page: nothing to type, only the revision the page showed
    (CheckAndSetForm), so a restore made against a page someone changed meanwhile changes nothing."""


class RotationInput(ModelForm):
    """A rotation as the API sends it: the new secret under its own name, a note, the grace period in seconds.
    (``save_anyway`` is a JSON boolean, checked by the API itself.)"""

    password = PasswordField(logins.PASSWORD.label, [Length(max=MAX_SECRET_LENGTH), no_control_characters])
    client_secret = PasswordField(logins.CLIENT_SECRET.label, [Length(max=MAX_SECRET_LENGTH), no_control_characters])
    note = StringField("Note", [Length(max=MAX_NOTE_LENGTH), no_control_characters], filters=[strip], default="")
    grace_seconds = IntegerField("Grace period", [
        InputRequired("Send grace_seconds as a whole number of seconds."),
        NumberRange(0, MAX_GRACE_SECONDS, f"Send a number of seconds from 0 to {MAX_GRACE_SECONDS}."),
    ])


class RestoreInput(ModelForm):
    """A rollback as the API sends it: an optional note and grace period in seconds."""

    note = StringField("Note", [Length(max=MAX_NOTE_LENGTH), no_control_characters], filters=[strip], default="")
    grace_seconds = IntegerField("Grace period", [
        InputRequired("Send grace_seconds as a whole number of seconds."),
        NumberRange(0, MAX_GRACE_SECONDS, f"Send a number of seconds from 0 to {MAX_GRACE_SECONDS}."),
    ])

