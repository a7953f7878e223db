"""The forms (Flask-WTF): what users may type, and the per-field messages when they may not.

Forms validate and hand over plain values (``values()``); what is then done
with them is the services'. The API and the command line validate through the
same forms with ``validated()``, so every rule and message is the same there.
"""

import ipaddress
import re
from datetime import datetime, time

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_wtf import FlaskForm
from playhouse.shortcuts import model_to_dict
from werkzeug.datastructures import MultiDict
from wtforms import (
    DateField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)

import drafts
import identity_providers
import logins
from config import MINIMUM_CHECK_INTERVAL
from database import LARGEST_ID
from models import ROLES, Alias, Credential, Group, User, utcnow
from probe import oauth, protocols

# CR, LF, NUL and other control characters (C0, DEL, C1, the Unicode line and paragraph separators)
# would split an IMAP or POP3 command line, or a log line.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The same but for CR and LF, which a description (several lines) may hold.
CONTROL_CHARACTERS_BUT_LINE_BREAKS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# A DNS name: dot-separated RFC 1123 labels, optionally with the root's trailing dot.
DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME = re.compile(rf"^(?=.{{1,253}}\.?$)(?:{DNS_LABEL}\.)*{DNS_LABEL}\.?$")

CUSTOM_DATA_ACTION = "custom_data_action"
MIN_PASSWORD_LENGTH = 12
# The longest password or secret accepted (characters): long enough for any generated one.
MAX_SECRET_LENGTH = 4096
# The most items a list sent to the API may hold (a multiple choice: scopes, groups, credentials).
MAX_LIST_ITEMS = 1000
# The longest draft of a typed secret (drafts.py): a secret of MAX_SECRET_LENGTH, encrypted and encoded, fits.
MAX_DRAFT_LENGTH = 2 * MAX_SECRET_LENGTH


class Invalid(Exception):
    """Values that do not validate: `errors` maps field names to lists of messages, and ``"_entry"``
    to messages about the entry as a whole."""

    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


def validated(form_class, values, instance=None):
    """A `form_class` form filled from plain `values` (JSON or command-line values) and validated.

    ``custom_data`` is a list of ``{"key", "value"}`` objects; None leaves a
    field out. A connection whose port is left out gets the standard port of
    its protocol and security (``with_default_port``). Returns the form; raises
    Invalid with every message otherwise: {field name: [message]}, and
    ``"_entry"`` for the entry as a whole, each message once.
    """
    if issubclass(form_class, ConnectionForm):
        values = with_default_port(values)
    formdata = MultiDict()
    for name, value in values.items():
        if name == "custom_data":
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise Invalid({"custom_data": ["Send a list of {key, value} objects."]})
            if len(value) > max_custom_data_rows():  # refused before a form field is made for each row
                raise Invalid({"custom_data": [too_many_rows_message()]})
            for index, item in enumerate(value):
                formdata.update({f"custom_data-{index}-{key}": str(item.get(key, "")) for key in ("key", "value")})
        elif isinstance(value, list):  # a multiple choice (a service account's scopes, groups)
            if len(value) > MAX_LIST_ITEMS or not all(isinstance(item, (str, int)) for item in value):
                raise Invalid({name: [f"Send a list of at most {MAX_LIST_ITEMS} names or ids."]})
            formdata.setlist(name, [str(item) for item in value])
        elif value is not None:
            formdata[name] = str(value)
    form = form_class(formdata=formdata, instance=instance, meta={"csrf": False})
    if not form.validate():
        # WTForms lists the form's own errors under "" (None before 3.2); they go under "_entry" only.
        errors = {name: _messages(messages) for name, messages in form.errors.items() if name}
        if form.form_errors:
            errors["_entry"] = list(form.form_errors)
        raise Invalid(errors)
    return form


def with_default_port(values):
    """`values` (a mapping of connection values) with ``port`` set to the standard port of their protocol and
    security (protocols.default_port; IMAP and SSL/TLS when those are left out too) when it is missing or None.

    Values whose protocol or security is unknown are returned as they are, for the form to refuse.
    """
    if values.get("port") is not None:
        return values
    protocol = values.get("protocol") or protocols.IMAP
    security = values.get("security") or protocols.IMPLICIT_TLS
    if (protocol, security) not in protocols.DEFAULT_PORTS:
        return values
    return {**values, "port": protocols.default_port(protocol, security)}


def _messages(errors):
    """A field's errors as a flat list of sentences: a list of rows (FieldList) becomes "Row 2, key: ..."."""
    messages = []
    for number, error in enumerate(errors, 1):
        if isinstance(error, dict):
            messages += [f"Row {number}, {name}: {message}" for name, texts in error.items() for message in texts]
        else:
            messages.append(error)
    return messages


def strip(value):
    """Filter: surrounding whitespace off."""
    return value.strip() if isinstance(value, str) else value


def lower(value):
    """Filter: lowercase (host names are case-insensitive, RFC 4343)."""
    return value.lower() if isinstance(value, str) else value


def no_control_characters(form, field):
    """Validator for every single-line field: no CR, LF, NUL or other control characters (they would split a
    command line sent to a server, a log line, or a line of ``credentials list``)."""
    if field.data and CONTROL_CHARACTERS.search(field.data):
        raise ValidationError("Line breaks and other control characters are not allowed here.")


def only_line_breaks(form, field):
    """Validator for text of several lines (descriptions): line breaks (CR, LF) but no other control characters."""
    if field.data and CONTROL_CHARACTERS_BUT_LINE_BREAKS.search(field.data):
        raise ValidationError("Control characters other than line breaks are not allowed here.")


def host_name(form, field):
    """Validator: a DNS name or an IPv4/IPv6 address."""
    if not field.data:
        return
    try:
        ipaddress.ip_address(field.data)
    except ValueError:
        if not DNS_NAME.match(field.data) or field.data.replace(".", "").isdigit():
            raise ValidationError("Enter a host name such as imap.example.com, or an IP address.") from None


def email_address(form, field):
    """Validator: a syntactically valid address (no DNS lookup); reserved test domains such as .test are allowed."""
    try:
        validate_email(field.data, check_deliverability=False, test_environment=True, globally_deliverable=False)
    except EmailNotValidError as error:
        raise ValidationError(str(error)) from None


def username_rule(form, field):
    """Validator: usernames are often addresses; one containing '@' must then be a valid address."""
    if field.data and "@" in field.data:
        email_address(form, field)


class UsernameRequired(DataRequired):
    """DataRequired, except for a credential that takes its username from the sign-in to come: left empty,
    the account that signs in fills it (a form says so with ``username_from_sign_in``)."""

    def __call__(self, form, field):
        if not field.data and getattr(form, "username_from_sign_in", False):
            raise StopValidation()
        super().__call__(form, field)


# A Microsoft Entra tenant: its id (a GUID), one of its domains, or "organizations".
TENANT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
# What the Token endpoint of OAuth2 client credentials takes as a Microsoft 365 tenant (the app-only preset):
# a tenant id, or the tenant's initial domain.
MICROSOFT_TENANT = re.compile(
    r"^(?:[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[A-Za-z0-9-]+\.onmicrosoft\.com)$")


def tenant_name(form, field):
    """Validator: a Microsoft Entra tenant id (a GUID), a domain, or "organizations"."""
    if field.data and not TENANT.match(field.data):
        raise ValidationError("Enter the tenant ID (a GUID such as 00000000-0000-0000-0000-000000000000) or a "
                              "domain of the tenant.")


def unique(key, message):
    """Validator: refuse a value another row already has, ignoring case; the row being edited is exempt.

    `key` is the model's ``*_key`` column; `message` may name the other row as ``{other}``.
    """
    def check(form, field):
        other = key.model.matching(key, field.data, exclude_id=form.instance.id if form.instance else None)
        if other:
            raise ValidationError(message.format(other=other))
    return check


class ModelForm(FlaskForm):
    """A form that adds or edits one row: `instance` is the row being edited, or None when adding.

    ``FIELDS`` names the fields that are columns of the row; ``values()`` hands them over.
    """

    FIELDS = ()

    def __init__(self, *args, instance=None, **kwargs):
        self.instance = instance
        super().__init__(*args, **kwargs)

    def values(self, names=None):
        """{name: validated value} of the fields `names` (``FIELDS`` unless given)."""
        return {name: self[name].data for name in (names or self.FIELDS)}


class ConnectionForm(ModelForm):
    """The fields a connection test needs, shared by the credential form and the test endpoints.

    The secrets are optional here: a stored one may stand in for them
    (logins.LoginSecrets decides, see ``login_secrets``). OAuth2 needs a
    Client ID and a Token endpoint.
    """

    protocol = SelectField(
        "Protocol", choices=[SelectChoice(name) for name in protocols.PROTOCOLS], default=protocols.IMAP
    )
    host = StringField(
        "Host", [DataRequired(), Length(max=253), no_control_characters, host_name], filters=[strip, lower]
    )
    port = IntegerField(
        "Port",
        [InputRequired("Enter a port number."), NumberRange(1, 65535, "Enter a port from 1 to 65535.")],
        default=protocols.default_port(protocols.IMAP, protocols.IMPLICIT_TLS),
    )
    security = SelectField("Security", default=protocols.IMPLICIT_TLS)
    username = StringField(
        "Username", [UsernameRequired(), Length(max=320), no_control_characters, username_rule], filters=[strip]
    )
    # Matched exactly: folder names are case-sensitive on some servers, so nothing is stripped.
    folder = StringField("Folder", [DataRequired(), Length(max=255), no_control_characters], default="INBOX")
    auth = SelectField(
        "Authentication",
        choices=[SelectChoice(value, label) for value, label in protocols.AUTHENTICATION_LABELS.items()],
        default=protocols.PASSWORD,
    )
    password = PasswordField(logins.PASSWORD.label, [Length(max=MAX_SECRET_LENGTH), no_control_characters])
    # Defaults of "" because the columns are NOT NULL and a form without these fields must still save.
    client_id = StringField("Client ID", [Length(max=255), no_control_characters], filters=[strip], default="")
    client_secret = PasswordField(logins.CLIENT_SECRET.label, [Length(max=MAX_SECRET_LENGTH), no_control_characters])
    token_url = StringField("Token endpoint", [Length(max=2000), no_control_characters], filters=[strip], default="")
    scope = StringField("Scope", [Length(max=1000), no_control_characters], filters=[strip], default="")
    # Secrets typed earlier into this form, kept as encrypted drafts (drafts.py) while it comes back.
    password_draft = HiddenField(validators=[Length(max=MAX_DRAFT_LENGTH), no_control_characters])
    client_secret_draft = HiddenField(validators=[Length(max=MAX_DRAFT_LENGTH), no_control_characters])

    FIELDS = logins.CONNECTION_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Connections without TLS are a choice only where an administrator allowed them.
        allowed = [protocols.IMPLICIT_TLS, protocols.STARTTLS]
        if current_app.extensions["mailkeep.policy"].plaintext:
            allowed.append(protocols.PLAINTEXT)
        self.security.choices = [SelectChoice(value, protocols.SECURITY_LABELS[value]) for value in allowed]

    @property
    def oauth2(self):
        """True when OAuth2 client credentials are chosen."""
        return self.auth.data == protocols.OAUTH2

    def validate_client_id(self, field):
        """OAuth2 needs a client ID."""
        if self.oauth2 and not field.data:
            raise ValidationError("OAuth2 needs the Client ID of your application.")

    def validate_token_url(self, field):
        """OAuth2 needs a token endpoint: https, or plain http only to loopback."""
        if not self.oauth2:
            return
        problem = oauth.token_url_problem(field.data) if field.data else \
            "OAuth2 needs the token endpoint of your identity provider."
        if problem:
            raise ValidationError(problem)

    def validate(self, extra_validators=None):
        """Validate the fields; a POP3 folder is always INBOX, as POP3 has one mailbox per login.

        The Microsoft 365 app-only preset: OAuth2 client credentials whose Token
        endpoint is a Microsoft 365 tenant id (or its onmicrosoft.com domain) get
        that tenant's token endpoint, and Exchange Online's app-only scope when
        the scope is empty.
        """
        if self.protocol.data == protocols.POP3:
            self.folder.data = protocols.POP3_FOLDER
        tenant = strip(self.token_url.data or "")
        if self.oauth2 and MICROSOFT_TENANT.match(tenant):
            self.token_url.data = identity_providers.microsoft_token_endpoint(tenant)
            self.scope.data = strip(self.scope.data or "") or identity_providers.MICROSOFT_APP_ONLY_SCOPE
        return super().validate(extra_validators)

    @property
    def draft_key(self):
        """What this form's drafts are bound to: the id of the row being edited, or "new"."""
        return self.instance.id if self.instance else "new"

    def login_secrets(self):
        """The logins.LoginSecrets of the values and secrets on this form (typed now, or kept as drafts),
        for the row being edited."""
        typed = {name: self[name].data or "" for name in logins.TYPED_SECRETS}
        kept = {
            name: drafts.unseal(self[f"{name}_draft"].data, self.draft_key, name)
            for name in logins.TYPED_SECRETS if self[f"{name}_draft"].data
        }
        return logins.LoginSecrets(self.instance, self.values(logins.CONNECTION_FIELDS), typed, kept)

    def secret_drafts(self, names=None):
        """{name: draft} for the typed secrets (of `names`, every one unless given), to keep in the form
        when it comes back: encrypted for this session and form (drafts.py), never the secret itself."""
        typed = self.login_secrets().typed
        return {
            name: drafts.seal(text, self.draft_key, name)
            for name, text in typed.items() if text and (names is None or name in names)
        }


class CustomDataRow(Form):
    """One key/value row of a credential's custom data."""

    key = StringField("Key", [Length(max=100), no_control_characters], filters=[strip])
    value = StringField("Value", [Length(max=1000), no_control_characters])


class CredentialForm(ConnectionForm):
    """Add or edit a credential.

    A secret is typed here while none is stored, or when the login it was
    stored for changed; otherwise a stored one is changed in its own dialog
    (SecretChangeForm), never shown.
    """

    name = StringField(
        "Name",
        [
            DataRequired(), Length(max=100), no_control_characters,
            unique(Credential.name_key, "Another credential is already called '{other.name}'."),
        ],
        filters=[strip],
    )
    description = TextAreaField("Description", [DataRequired(), Length(max=2000), only_line_breaks], filters=[strip])
    group = SelectField("Group", coerce=int)
    custom_data = FieldList(FormField(CustomDataRow))
    client_secret_expires_on = DateField(
        "Client secret expires on", [Optional()],
        description="Optional. Some providers (Microsoft Entra) end client secrets; Mailkeep warns before the day.",
    )

    FIELDS = Credential.EDITABLE

    def __init__(self, *args, **kwargs):
        self.duplicate = None
        super().__init__(*args, **kwargs)
        self.group.choices = [SelectChoice(group.id, group.name) for group in Group.by_name()]
        if self.group.data is None:
            self.group.data = Group.default().id

    def validate_custom_data(self, field):
        """At most MAX_CUSTOM_DATA_ROWS rows; every value needs a key, and no key may appear twice (ignoring case)."""
        if len(field.entries) > max_custom_data_rows():
            raise ValidationError(too_many_rows_message())
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

    @property
    def username_from_sign_in(self):
        """True for OAuth2 sign-in: an empty username is filled in with the account that signs in."""
        return self.auth.data == protocols.OAUTH2_SIGN_IN

    def validate(self, extra_validators=None):
        """Validate the fields and the login secret, then refuse a second credential for the same mailbox."""
        valid = super().validate(extra_validators)
        login = self.login_secrets()
        problems = login.typed_over_stored()
        if missing := login.missing_for_save():
            problems[login.needed.name] = missing
        for name, message in problems.items():
            self[name].errors = [*self[name].errors, message]
        if problems or not valid:
            return False
        self.duplicate = Credential.same_mailbox(
            self.protocol.data, self.host.data, self.port.data, self.username.data, self.folder.data,
            exclude_id=self.instance.id if self.instance else None,
        )
        if self.duplicate:
            self.form_errors.append(
                f"'{self.duplicate.name}' already uses this protocol, host, port, username and folder."
            )
            return False
        return True

    def add_custom_data_row(self):
        """Append a blank custom data row (the editor's Add row), unless there are MAX_CUSTOM_DATA_ROWS already;
        then say so under the rows instead."""
        if len(self.custom_data.entries) >= max_custom_data_rows():
            self.custom_data.errors = [too_many_rows_message()]
        else:
            self.custom_data.append_entry()

    def custom_data_pairs(self):
        """The custom data rows with a key, as ordered (key, value) pairs."""
        return [(row.key.data, row.value.data or "") for row in self.custom_data if row.key.data]


class SecretChangeForm(FlaskForm):
    """Change one stored secret (a logins.SecretRule): typed twice, saved only when both match."""

    new_secret = PasswordField("New password", [DataRequired(), Length(max=MAX_SECRET_LENGTH), no_control_characters])
    confirm_secret = PasswordField("Confirm password", [DataRequired(), Length(max=MAX_SECRET_LENGTH),
                                                        no_control_characters])

    def __init__(self, *args, secret=logins.PASSWORD, **kwargs):
        super().__init__(*args, **kwargs)
        self.noun = secret.noun
        self.new_secret.label.text = f"New {secret.noun}"
        self.confirm_secret.label.text = f"Confirm {secret.noun}"

    def validate_confirm_secret(self, field):
        """The two typings must match."""
        if field.data != self.new_secret.data:
            raise ValidationError(f"The two {self.noun}s do not match.")


class SecretForm(FlaskForm):
    """A new value for one stored secret, as the API sends it (``{"value": "..."}``); never echoed back."""

    value = PasswordField("Value", [DataRequired("Send the new value; it cannot be empty."),
                                    Length(max=MAX_SECRET_LENGTH), no_control_characters])


class AliasForm(ModelForm):
    """Add or edit an alias. The credential is chosen by id (the page's picker searches for it: a list of
    every credential would not scale), and must exist."""

    address = StringField(
        "Address",
        [
            DataRequired(), Length(max=320), no_control_characters, email_address,
            unique(Alias.address_key, "The alias {other.address} already exists."),
        ],
        filters=[strip],
    )
    credential = IntegerField("Credential", [InputRequired("Choose a credential."),
                                             NumberRange(1, LARGEST_ID, "Choose a credential.")])
    workspace = StringField("Workspace", [Length(max=100), no_control_characters], filters=[strip], default="")
    project_type = StringField("Project type", [Length(max=100), no_control_characters], filters=[strip], default="")
    client = StringField("Client", [Length(max=100), no_control_characters], filters=[strip], default="")
    description = TextAreaField("Description", [Length(max=2000), only_line_breaks], filters=[strip], default="")

    FIELDS = ("address", "credential", "workspace", "project_type", "client", "description")

    def validate_credential(self, field):
        """The chosen credential must exist (and may have been deleted since the page was shown)."""
        if field.data is not None and not Credential.select().where(Credential.id == field.data).exists():
            raise ValidationError("Not a valid choice. That credential does not exist (any more); choose another.")

    @property
    def chosen_credential(self):
        """The credential chosen (a Credential), or None."""
        if not isinstance(self.credential.data, int):
            return None
        return Credential.select(Credential.id, Credential.name, Credential.host).where(
            Credential.id == self.credential.data).first()


class GroupForm(ModelForm):
    """Add or rename a group."""

    name = StringField(
        "Name",
        [
            DataRequired(), Length(max=100), no_control_characters,
            unique(Group.name_key, "The group '{other.name}' already exists."),
        ],
        filters=[strip],
    )
    description = StringField("Description", [Length(max=500), no_control_characters], filters=[strip], default="")
    check_interval = IntegerField(
        "Check every (seconds)", [Optional(), NumberRange(min=MINIMUM_CHECK_INTERVAL, max=7 * 86400)],
        description="Empty: MAILKEEP_CHECK_INTERVAL.")
    password_max_age_days = IntegerField(
        "Rotate passwords after (days)", [Optional(), NumberRange(min=1, max=3650)],
        description="Empty: no rotation reminders.")

    FIELDS = ("name", "description", "check_interval", "password_max_age_days")


def max_custom_data_rows():
    """How many custom data rows a credential may have (MAILKEEP_MAX_CUSTOM_DATA_ROWS)."""
    return current_app.config["MAX_CUSTOM_DATA_ROWS"]


def too_many_rows_message():
    """What the pages and the API say to more custom data rows than ``max_custom_data_rows()``."""
    return f"A credential holds at most {max_custom_data_rows()} rows of custom data."


def credential_form_data(credential):
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


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", [DataRequired(), Length(max=100), no_control_characters], filters=[strip])
    # Compared with the stored hash only (never stored, logged or sent on), so control characters are not
    # refused here: a password set before they were refused still signs in.
    password = PasswordField("Password", [DataRequired(), Length(max=MAX_SECRET_LENGTH)])


def strong_password(form, field):
    """Validator: at least MIN_PASSWORD_LENGTH characters."""
    if field.data and len(field.data) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"Use at least {MIN_PASSWORD_LENGTH} characters.")


class AccountForm(ModelForm):
    """A new account: a username nobody has, and a password typed twice."""

    FIELDS = ("username", "password", "role")

    username = StringField(
        "Username",
        [
            DataRequired(), Length(max=100), no_control_characters,
            unique(User.username_key, "{other.username} exists already."),
        ],
        filters=[strip],
    )
    password = PasswordField("Password", [DataRequired(), strong_password, Length(max=MAX_SECRET_LENGTH),
                                          no_control_characters],
                             description=f"At least {MIN_PASSWORD_LENGTH} characters.")
    confirm_password = PasswordField("Confirm password", [DataRequired(), Length(max=MAX_SECRET_LENGTH),
                                                          no_control_characters])
    role = SelectField("Role", choices=[SelectChoice(role, role.capitalize()) for role in ROLES], default="viewer")

    def validate_confirm_password(self, field):
        """The two typings must match."""
        if field.data != self.password.data:
            raise ValidationError("The two passwords do not match.")


class NewPasswordForm(FlaskForm):
    """A new password for an account, typed twice (an admin setting someone's, the command line)."""

    new_password = PasswordField(
        "New password", [DataRequired(), strong_password, Length(max=MAX_SECRET_LENGTH), no_control_characters],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
    )
    confirm_password = PasswordField("Confirm the new password", [DataRequired(), Length(max=MAX_SECRET_LENGTH),
                                                                   no_control_characters])

    def validate_confirm_password(self, field):
        """The two typings must match."""
        if field.data != self.new_password.data:
            raise ValidationError("The two passwords do not match.")


class PasswordChangeForm(NewPasswordForm):
    """Your own password: the current one (services.accounts checks it), then the new one twice."""

    # Compared with the stored hash only, like the sign-in password.
    current_password = PasswordField("Current password", [DataRequired(), Length(max=MAX_SECRET_LENGTH)])


class TokenForm(FlaskForm):
    """A name for a new API token, to tell it apart when revoking, and the day it stops working, if any."""

    name = StringField("Name", [DataRequired(), Length(max=100), no_control_characters], filters=[strip])
    expires_on = DateField("Expires on (optional)", [Optional()])

    def validate_expires_on(self, field):
        """A day after today (UTC): the token works until that day begins."""
        if field.data is not None and field.data <= utcnow().date():
            raise ValidationError("Choose a day after today, or none for a token that does not expire.")

    def expires_at(self):
        """The moment the token stops working (naive UTC: the chosen day's first moment), or None."""
        return None if self.expires_on.data is None else datetime.combine(self.expires_on.data, time())
