"""Service accounts and credentials for the tests of issue 11: credentials saved through the services (so
their secrets have versions), service accounts with what they may read, and test clients that send their
tokens from a given address."""

from datetime import timedelta

import models
from models import Credential, Group, ServiceAccount, ServiceGrant, ServiceToken
from services.entries import save_credential
from testdata import CANARY

READ, TEST = "connection:read", "connection:test"


def saved(app, password=CANARY, actor="admin", **fields):
    """Save an IMAP credential through services.entries (as the pages do: its secret becomes version 1); return
    it. `fields` override the defaults (see testdata.stored_credential); ``group`` may be a Group or a name."""
    values = dict(name="Support", description="Helpdesk mailbox", protocol="IMAP", host="imap.example.com",
                  port=993, security="ssl_tls", username="help@example.com", folder="INBOX", auth="password",
                  client_id="", token_url="", scope="")
    values.update(fields)
    secret = "client_secret" if values["auth"] == "oauth2_client_credentials" else "password"
    with app.app_context(), models.db.connection_context():
        group = values.get("group")
        if group is None:
            values["group"] = Group.default()
        elif isinstance(group, str):
            values["group"] = Group.get_or_none(Group.name == group) or Group.create(name=group)
        credential = save_credential(Credential(), values, {secret: password}, [], actor=actor)
        return Credential.get_by_id(credential.id)


def account(name="helpdesk", scopes=(READ,), groups=(), credentials=(), networks=""):
    """A service account that may read `groups` (names) and `credentials` (rows) with `scopes`."""
    with models.db.connection_context():
        made = ServiceAccount.create(name=name, scopes=" ".join(scopes), networks=networks)
        for group in groups:
            ServiceGrant.create(service_account=made, group=Group.get(Group.name == group))
        for credential in credentials:
            ServiceGrant.create(service_account=made, credential=credential.id)
        return made


def token_of(made, expired=False, name="tests"):
    """A new token of the service account `made` (an expired one with `expired`)."""
    with models.db.connection_context():
        expires_at = models.utcnow() - timedelta(minutes=1) if expired else None
        return ServiceToken.issue(made, name, expires_at)[1]


def client_of(app, made=None, token=None, address="127.0.0.1", expired=False):
    """A test client that sends a token of `made` (or `token`), as if from `address`."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token or token_of(made, expired=expired)}"
    client.environ_base["REMOTE_ADDR"] = address
    return client
