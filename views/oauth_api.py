"""``/api/v1/oauth-apps``: the OAuth apps, for administrators. The client secret goes in, never out (an app
says only ``client_secret_set``); each app says the redirect URI to register with its provider. Added to
the API's blueprint (views/api.py) as one more MethodView resource, described in openapi.py."""

from peewee import IntegrityError

from access import actor_name, requires
from forms import Invalid
from models import OAuthApp
from oauth_forms import OAuthAppForm
from services import oauth_sign_in
from services.oauth_apps import DiscoveryFailed, save_app
from views.api import CONFLICT, ApiError, Entries, bp


class OAuthApps(Entries):
    """``/oauth-apps``: every method for administrators only."""

    model = OAuthApp
    form_class = OAuthAppForm
    endpoint = "oauth_apps"

    @requires("admin")
    def get(self, row_id=None):
        return super().get(row_id)

    @requires("admin")
    def post(self):
        return super().post()

    @requires("admin")
    def patch(self, row_id):
        return super().patch(row_id)

    @requires("admin")
    def delete(self, row_id):
        return super().delete(row_id)

    def to_json(self, app):
        return oauth_app_json(app)

    def to_input(self, app, payload):
        """The form's values: the app's stored ones (when changing it) with the payload's on top."""
        base = {}
        if app is not None:
            base = {name: getattr(app, name) for name in OAuthAppForm.FIELDS}
            base["client_secret_expires_on"] = app.client_secret_expires_on and app.client_secret_expires_on.isoformat()
        return {**base, **{key: value for key, value in payload.items() if value is not None}}

    def save(self, form, app):
        try:
            return save_app(app or OAuthApp(), form.values(), form.client_secret.data or None, actor=actor_name())
        except DiscoveryFailed as failed:
            raise Invalid({"issuer": [failed.message]}) from None

    def _saved(self, form, app):
        try:
            return self.save(form, app)
        except IntegrityError:
            raise ApiError(CONFLICT, {"error": "Another request took this name meanwhile."}) from None

    def listed(self):
        return OAuthApp.by_name(), OAuthApp.select().count()

    def refusal(self, app, refused):
        return {
            "error": f"{app.name} is still used by {len(refused.references)} credential(s).",
            "credentials": [{"id": credential.id, "name": credential.name} for credential in refused.references],
        }


def oauth_app_json(app):
    """An OAuth app as the API shows it: its settings, the endpoints in use, the redirect URI to register,
    whether a client secret is set (never the secret) and how many credentials sign in with it."""
    return {
        "id": app.id,
        **{name: getattr(app, name) for name in OAuthAppForm.FIELDS if name != "client_secret_expires_on"},
        "client_secret_expires_on": app.client_secret_expires_on and app.client_secret_expires_on.isoformat(),
        "client_secret_set": app.has_secret("client_secret"),
        "authorization_endpoint": app.authorization_endpoint,
        "token_endpoint": app.token_endpoint,
        "redirect_uri": oauth_sign_in.callback_url(),
        "credential_count": getattr(app, "credential_count", None) or app.credentials.count(),
        "created_at": app.created_at.isoformat() + "Z",
        "updated_at": app.updated_at.isoformat() + "Z",
    }


_view = OAuthApps.as_view(OAuthApps.endpoint)
bp.add_url_rule("/oauth-apps/<id:row_id>", view_func=_view, methods=["GET", "PATCH", "DELETE"])
bp.add_url_rule("/oauth-apps", view_func=_view, methods=["GET", "POST"])
