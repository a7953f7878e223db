"""Saving and deleting OAuth apps, each with its audit event in the same transaction; a custom provider's
endpoints read from its OpenID Connect discovery document (through probe: outbound policy, deadline, size)."""

from flask import current_app

import audit
import identity_providers
import keys
from database import db


class DiscoveryFailed(Exception):
    """The issuer's discovery document could not be read; `message` says why (a probe cause's words)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def save_app(app, values, client_secret, *, actor):
    """Store `values` (OAuthAppForm.FIELDS names) into `app` (a new OAuthApp() to add one) and, when
    `client_secret` is given, seal it as the new client secret; log it. Returns the app.

    A custom app with an issuer and without both endpoints gets them from the
    issuer's discovery document first. Raises DiscoveryFailed (nothing
    changed) when it cannot be read, peewee.IntegrityError when another app
    took the name meanwhile.
    """
    if (values.get("kind") == identity_providers.CUSTOM and values.get("issuer")
            and not (values.get("authorization_url") and values.get("token_url"))):
        discovery, cause = current_app.extensions["mailkeep.prober"].discover(values["issuer"])
        if cause is not None:
            raise DiscoveryFailed(cause.message)
        values = {**values, "authorization_url": values.get("authorization_url") or discovery.authorization_endpoint,
                  "token_url": values.get("token_url") or discovery.token_endpoint}
    action = "update" if app.id else "create"
    with db.atomic():
        for name, value in values.items():
            setattr(app, name, value)
        if app.id is None:
            app.save()  # the id binds the ciphertext
        if client_secret:
            app.seal(keys.ring(), "client_secret", client_secret)
        app.save()
        audit.record(action, app, actor=actor, details="client secret set" if client_secret else "")
    return app
