"""How tests register an OAuth app with the test authorization server (tests/token_server.py) and sign a
credential in through Mailkeep's own pages, as a person would: the credential form's "Sign in with ..."
button, consent at the provider, and the callback."""

import urllib.parse

import models
from testdata import CLIENT_SECRET, MAILBOX_USER, SIGN_IN_CLIENT_ID

# What the test server's tokens are for (a custom provider's mail scope), and refresh tokens besides.
MAIL_SCOPES = "mail offline_access"


def registered_app(app, token_server, name="Test provider", **fields):
    """Store a custom OAuthApp at the test server (client SIGN_IN_CLIENT_ID, secret CLIENT_SECRET); return it.
    Needs no open connection."""
    values = dict(name=name, kind="custom", authorization_url=token_server.authorization_url,
                  token_url=token_server.token_url, client_id=SIGN_IN_CLIENT_ID, scopes=MAIL_SCOPES, idle_days=90)
    with models.db.connection_context():
        oauth_app = models.OAuthApp(**{**values, **fields})
        oauth_app.save()
        oauth_app.seal(app.extensions["mailkeep.keyring"], "client_secret", CLIENT_SECRET)
        oauth_app.save()
    return oauth_app


def credential_form(dovecot, **overrides):
    """The credential form's values for an OAuth2 sign-in to the test Dovecot's IMAP, username left to the
    sign-in."""
    values = {"name": "Signed in", "description": "Read by signing in", "group": "1", "protocol": "IMAP",
              "host": "localhost", "port": str(dovecot.imaps_port), "security": "ssl_tls", "username": "",
              "folder": "INBOX", "auth": "oauth2_sign_in"}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def local_path(url):
    """The path and query of `url`, for a Flask test client."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def start(client, form, oauth_app, credential_id=None):
    """Press "Sign in with ..." on the credential form (saving it); return the provider URL it leads to."""
    url = f"/credentials/{credential_id}/edit" if credential_id else "/credentials/new"
    response = client.post(url, data={**form, "sign_in_app": str(oauth_app.id)})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"]


def sign_in(client, token_server, form, oauth_app, credential_id=None, approve=True):
    """Sign in through the form and the test provider's consent; return the callback's response."""
    authorization = start(client, form, oauth_app, credential_id)
    back = token_server.approve(authorization) if approve else token_server.deny(authorization)
    return client.get(local_path(back))


def signed_in_credential(app, client, token_server, dovecot, **overrides):
    """A credential signed in through the pages, as MAILBOX_USER; returns (credential, the OAuthApp)."""
    oauth_app = registered_app(app, token_server)
    response = sign_in(client, token_server, credential_form(dovecot, **overrides), oauth_app)
    assert response.status_code == 303, response.get_data(as_text=True)
    with models.db.connection_context():
        credential = models.Credential.get(models.Credential.name == overrides.get("name", "Signed in"))
    assert credential.oauth_account == MAILBOX_USER
    return credential, oauth_app


def stored_refresh_token(app, credential_id):
    """The refresh token stored for a credential, decrypted (for tests that ask the test server about it)."""
    with models.db.connection_context():
        credential = models.Credential.get_by_id(credential_id)
        return credential.unseal(app.extensions["mailkeep.keyring"], "refresh_token")
