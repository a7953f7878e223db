"""The form of an OAuth app (Flask-WTF): what an administrator may type, and the messages when they may not.

Like forms.py's, it validates and hands over plain values (``values()``); the service
(services/oauth_apps.py) stores them, reading a custom provider's endpoints from its OpenID Connect
discovery document when only its issuer is given. The API validates through the same form.
"""

from wtforms import DateField, IntegerField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

import identity_providers
from forms import MAX_SECRET_LENGTH, ModelForm, no_control_characters, strip, tenant_name, unique
from models import OAuthApp
from probe import oauth
from services import oauth_tokens

URL_LENGTH = 2000


def https_endpoint(what):
    """Validator: an https:// URL (plain http only to loopback) of a host name or IP address, named `what`
    in the message."""
    def check(form, field):
        if field.data and (problem := oauth.endpoint_problem(field.data, what)):
            raise ValidationError(problem)
        if field.data and oauth_tokens.origin(field.data) is None:
            raise ValidationError(f"The {what} must name its host plainly, as in https://login.example.com/...")
    return check


class OAuthAppForm(ModelForm):
    """Add or edit an OAuth app. The client secret is write-only: required when adding, and when editing
    typed only to replace the stored one (left empty, the stored one stays)."""

    name = StringField("Name", [DataRequired(), Length(max=100), no_control_characters,
                                unique(OAuthApp.name_key, "Another OAuth app is already called '{other.name}'.")],
                       filters=[strip], description="Tells apps apart; a custom provider's sign-in button shows it.")
    kind = SelectField("Provider", choices=[SelectChoice(name, label)
                                            for name, label in identity_providers.KIND_LABELS.items()],
                       default=identity_providers.MICROSOFT)
    tenant = StringField("Tenant", [Length(max=255), no_control_characters, tenant_name], filters=[strip], default="",
                         description="Your Directory (tenant) ID; organizations only for an app registered as "
                                     "multitenant.")
    issuer = StringField("OpenID Connect issuer", [Length(max=URL_LENGTH), no_control_characters,
                                                   https_endpoint("issuer")], filters=[strip], default="",
                         description="Its discovery document gives the endpoints when they are left empty.")
    authorization_url = StringField("Authorization endpoint", [Length(max=URL_LENGTH), no_control_characters,
                                                               https_endpoint("authorization endpoint")],
                                    filters=[strip], default="")
    token_url = StringField("Token endpoint", [Length(max=URL_LENGTH), no_control_characters,
                                               https_endpoint("token endpoint")], filters=[strip], default="")
    client_id = StringField("Client ID", [DataRequired(), Length(max=255), no_control_characters], filters=[strip])
    client_secret = PasswordField("Client secret", [Length(max=MAX_SECRET_LENGTH), no_control_characters])
    scopes = StringField("Mail scopes", [Length(max=1000), no_control_characters], filters=[strip], default="",
                         description="What your mail server's tokens need, space-separated; openid and email are "
                                     "asked for as well. Include offline_access if your provider wants it for "
                                     "refresh tokens.")
    client_secret_expires_on = DateField("Client secret expires on (optional)", [Optional()],
                                         description="The page warns a month ahead.")
    idle_days = IntegerField("Refresh tokens lapse after (days unused, optional)",
                             [Optional(), NumberRange(1, 3650, "Enter a number of days from 1 to 3650.")],
                             description="Mailkeep refreshes them in time.")

    FIELDS = ("name", "kind", "tenant", "issuer", "authorization_url", "token_url", "client_id", "scopes",
              "client_secret_expires_on", "idle_days")

    @property
    def custom(self):
        return self.kind.data == identity_providers.CUSTOM

    def validate_client_secret(self, field):
        """A new app needs its client secret."""
        if self.instance is None and not field.data:
            raise ValidationError("Enter the client secret the provider gave the app.")

    def validate_token_url(self, field):
        """A custom provider needs both endpoints, or an issuer to read them from."""
        if self.custom and not self.issuer.data and not (field.data and self.authorization_url.data):
            raise ValidationError("Enter the authorization and token endpoints, or the issuer that gives them.")

    def validate_scopes(self, field):
        """A custom provider needs the scopes its mail server wants."""
        if self.custom and not field.data:
            raise ValidationError("Enter the scopes your mail server's tokens need.")

    def values(self, names=None):
        """The validated values, with what does not belong to the provider chosen left empty (Microsoft's and
        Google's endpoints are known; only Microsoft has a tenant, "organizations" unless given)."""
        values = super().values(names)
        kind = values.get("kind")
        if kind != identity_providers.CUSTOM:
            values.update(issuer="", authorization_url="", token_url="", scopes="", idle_days=None)
        values["tenant"] = (values.get("tenant") or identity_providers.DEFAULT_TENANT) \
            if kind == identity_providers.MICROSOFT else ""
        return values
