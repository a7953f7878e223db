"""The forms (Flask-WTF): what users may type, and the per-field messages when they may not."""

import re

from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from playhouse.shortcuts import model_to_dict
from werkzeug.datastructures import MultiDict
from wtforms import (
    FieldList,
    Form,
    FormField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange, Optional, ValidationError

import protocols
from models import Alias, Credential, Group

# CR, LF, NUL and other control characters would split an IMAP command line.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# A DNS name (RFC 1123 labels), an IPv4 address, or an IPv6 address.
HOST_NAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?$|^[0-9a-f:.]+$")

CUSTOM_DATA_ACTION = "custom_data_action"


def field_values(source, names):
    """The named values of a form (its fields' data) or of a model row, as a dict of keyword arguments."""
    if isinstance(source, Form):
        return {name: getattr(source, name).data for name in names}
    return {name: getattr(source, name) for name in names}


def strip(value):
    return value.strip() if isinstance(value, str) else value


def lower(value):
    return value.lower() if isinstance(value, str) else value


def no_control_characters(form, field):
    if field.data and CONTROL_CHARACTERS.search(field.data):
        raise ValidationError("Line breaks and other control characters are not allowed here.")


def host_name(form, field):
    if field.data and not HOST_NAME.match(field.data):
        raise ValidationError("Enter a host name such as imap.example.com, or an IP address.")


def email_address(form, field):
    """A syntactically valid address (no DNS lookup); reserved test domains such as .test are allowed."""
    try:
        validate_email(field.data, check_deliverability=False, test_environment=True, globally_deliverable=False)
    except EmailNotValidError as error:
        raise ValidationError(str(error)) from None


def username_rule(form, field):
    """Usernames are often addresses; one containing '@' must then be a valid address."""
    if field.data and "@" in field.data:
        email_address(form, field)


class ConnectionForm(FlaskForm):
    """The fields a connection test needs, shared by the credential form and the test endpoints."""

    protocol = SelectField("Protocol", choices=[SelectChoice(name) for name in protocols.PROTOCOLS])
    host = StringField(
        "Host", [DataRequired(), Length(max=253), host_name], filters=[strip, lower]
    )
    port = IntegerField(
        "Port",
        [InputRequired("Enter a port number."), NumberRange(1, 65535, "Enter a port from 1 to 65535.")],
        default=protocols.default_port(protocols.IMAP, protocols.IMPLICIT_TLS),
    )
    security = SelectField(
        "Security",
        choices=[SelectChoice(value, label) for value, label in protocols.SECURITY_LABELS.items()],
        default=protocols.IMPLICIT_TLS,
    )
    username = StringField(
        "Username", [DataRequired(), Length(max=320), no_control_characters, username_rule], filters=[strip]
    )
    # Matched exactly: folder names are case-sensitive on some servers, so nothing is stripped.
    folder = StringField("Folder", [DataRequired(), Length(max=255), no_control_characters], default="INBOX")

    CONNECTION_FIELDS = ("protocol", "host", "port", "security", "username", "folder")


class CustomDataRow(Form):
    key = StringField("Key", [Length(max=100)], filters=[strip])
    value = StringField("Value", [Length(max=1000)])


class CredentialForm(ConnectionForm):
    """Add or edit a credential. The password is not here: it has its own form and step."""

    name = StringField("Name", [DataRequired(), Length(max=100)], filters=[strip])
    description = TextAreaField("Description", [DataRequired(), Length(max=2000)], filters=[strip])
    group = SelectField("Group", coerce=int)
    custom_data = FieldList(FormField(CustomDataRow))

    def __init__(self, *args, credential=None, **kwargs):
        self.credential = credential
        self.duplicate = None
        super().__init__(*args, **kwargs)
        self.group.choices = [SelectChoice(group.id, group.name) for group in Group.ordered()]
        if self.group.data is None:
            self.group.data = Group.default().id

    @property
    def _own_id(self):
        return self.credential.id if self.credential else None

    def validate_name(self, field):
        other = Credential.matching(Credential.name, field.data, exclude_id=self._own_id)
        if other:
            raise ValidationError(f"Another credential is already called '{other.name}'.")

    def validate_custom_data(self, field):
        seen = set()
        for row in field:
            key = row.key.data
            if not key and row.value.data:
                row.key.errors.append("Give this value a key.")
            elif key and key.lower() in seen:
                row.key.errors.append(f"The key '{key}' is used twice.")
            seen.add((key or "").lower())
        if any(row.key.errors for row in field):
            raise ValidationError("Fix the custom data.")

    def validate(self, extra_validators=None):
        """Validate the fields, then refuse a second credential for the same mailbox."""
        if not super().validate(extra_validators):
            return False
        self.duplicate = Credential.same_mailbox(
            self.protocol.data, self.host.data, self.port.data, self.username.data, self.folder.data,
            exclude_id=self._own_id,
        )
        if self.duplicate:
            self.form_errors.append(
                f"'{self.duplicate.name}' already uses this protocol, host, port, username and folder."
            )
            return False
        return True

    def custom_data_pairs(self):
        """The custom data rows with a key, as ordered (key, value) pairs."""
        return [(row.key.data, row.value.data or "") for row in self.custom_data if row.key.data]


class NewCredentialForm(CredentialForm):
    password = PasswordField("Password", [DataRequired(), no_control_characters])


class ConnectionTestForm(ConnectionForm):
    """The values on screen when Test connection is pressed; the password may be left empty when stored."""

    password = PasswordField("Password", [Optional(), no_control_characters])


class PasswordChangeForm(FlaskForm):
    new_password = PasswordField("New password", [DataRequired(), no_control_characters])
    confirm_password = PasswordField(
        "Confirm password", [DataRequired(), EqualTo("new_password", "The two passwords do not match.")]
    )


class AliasForm(FlaskForm):
    address = StringField("Address", [DataRequired(), Length(max=320), email_address], filters=[strip])
    credential = SelectField("Credential", coerce=int)
    workspace = StringField("Workspace", [Length(max=100)], filters=[strip])
    project_type = StringField("Project type", [Length(max=100)], filters=[strip])
    client = StringField("Client", [Length(max=100)], filters=[strip])
    description = TextAreaField("Description", [Length(max=2000)], filters=[strip])

    FIELDS = ("address", "credential", "workspace", "project_type", "client", "description")

    def __init__(self, *args, alias=None, **kwargs):
        self.alias = alias
        super().__init__(*args, **kwargs)
        self.credential.choices = [SelectChoice(c.id, c.name) for c in Credential.select().order_by(Credential.name)]

    def validate_address(self, field):
        other = Alias.matching(Alias.address, field.data, exclude_id=self.alias.id if self.alias else None)
        if other:
            raise ValidationError(f"The alias {other.address} already exists.")


class GroupForm(FlaskForm):
    name = StringField("Name", [DataRequired(), Length(max=100)], filters=[strip])
    description = StringField("Description", [Length(max=500)], filters=[strip])

    def __init__(self, *args, group=None, **kwargs):
        self.group = group
        super().__init__(*args, **kwargs)

    def validate_name(self, field):
        other = Group.matching(Group.name, field.data, exclude_id=self.group.id if self.group else None)
        if other:
            raise ValidationError(f"The group '{other.name}' already exists.")


def credential_data(credential):
    """A credential's stored values in the shape CredentialForm's ``data`` takes."""
    data = model_to_dict(credential, recurse=False, only=[getattr(Credential, n) for n in Credential.EDITABLE])
    data["custom_data"] = [{"key": key, "value": value} for key, value in credential.custom_data]
    return data


def apply_custom_data_action(formdata):
    """Handle the custom data editor's Add row / Remove buttons, which work without JavaScript.

    Returns (formdata, add_row): `formdata` without the row a ``remove-<index>``
    action names, and whether an ``add`` action asks for a new blank row.
    """
    action = formdata.get(CUSTOM_DATA_ACTION, "")
    if action.startswith("remove-"):
        prefix = f"custom_data-{action.removeprefix('remove-')}-"
        formdata = MultiDict([(k, v) for k, v in formdata.items(multi=True) if not k.startswith(prefix)])
    return formdata, action == "add"
