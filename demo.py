"""``make demo``: Mailkeep with real servers to test against, for a first look.

Starts a throwaway Dovecot (IMAP and POP3, with a demo mailbox) and an OAuth2
authorization server on loopback, then the dashboard on a fresh instance folder,
seeded with an admin, credentials that work (IMAP, POP3, OAuth2), one with a
wrong password, an alias, and an OAuth app to try OAuth2 sign-in with (its
consent page signs in as the demo mailbox). Prints the URL, the admin's password and an API
token (all throwaway); Ctrl-C stops everything and deletes the lot. ``HOST``
and ``PORT`` choose where the dashboard listens.
"""

import os
import pathlib
import sys
import tempfile
from urllib.parse import urlsplit

from werkzeug.serving import make_server

# The demo's servers are the ones the test suite runs against.
sys.path.insert(0, str(pathlib.Path(__file__).parent / "tests"))

import models  # noqa: E402
from app import create_app  # noqa: E402
from dovecot import Dovecot, MailUser  # noqa: E402
from probe import protocols  # noqa: E402
from services import oauth_apps, service_accounts  # noqa: E402
from services.entries import save_credential  # noqa: E402
from token_server import OAuthClient, TokenServer  # noqa: E402

MAILBOX = MailUser("demo@example.test", "demo-password")
CLIENT_ID, CLIENT_SECRET = "mailkeep-demo", "demo-client-secret"
SIGN_IN_CLIENT_ID = "mailkeep-demo-sign-in"
ADMIN, ADMIN_PASSWORD = "demo", "demo-admin-password"
SERVICE_ACCOUNT = "demo-tool"


def seed(app, mail, tokens):
    """Add an admin, the demo credentials (through the services, so their secrets have versions), a group, an
    alias, a service account that reads the default group and an OAuth app to try OAuth2 sign-in with;
    return (an API token of the admin, a token of
    the service account)."""
    server = {"host": "localhost", "username": MAILBOX.username, "folder": "INBOX"}

    def store(values, secrets, custom_data=()):
        return save_credential(models.Credential(), values, secrets, list(custom_data), actor=ADMIN)

    with app.app_context(), models.db.connection_context():
        admin = models.User.add(ADMIN, ADMIN_PASSWORD, "admin")
        _, api_token = models.ApiToken.issue(admin, "demo")
        default, customers = models.Group.default(), models.Group.create(name="Customers", description="Shared inboxes")
        support = store(dict(
            name="Support inbox", description="Tickets for the helpdesk, over IMAP", group=default,
            protocol=protocols.IMAP, port=mail.imaps_port, security=protocols.IMPLICIT_TLS, **server,
        ), {"password": MAILBOX.password}, [("queue", "support-l1")])
        store(dict(
            name="Team mailbox (POP3)", description="Read by the old fax gateway, over POP3 with STARTTLS",
            group=default, protocol=protocols.POP3, port=mail.pop3_port, security=protocols.STARTTLS, **server,
        ), {"password": MAILBOX.password})
        store(dict(
            name="Integration (OAuth2)", description="The CRM's mailbox, with OAuth2 client credentials",
            group=customers, protocol=protocols.IMAP, port=mail.imaps_port, security=protocols.IMPLICIT_TLS,
            auth=protocols.OAUTH2, client_id=CLIENT_ID, token_url=tokens.token_url, **dict(server, folder="Team Inbox"),
        ), {"client_secret": CLIENT_SECRET})
        store(dict(
            name="Billing (wrong password)", description="Its password was changed on the server; press Test to see",
            group=customers, protocol=protocols.IMAP, port=mail.imaps_port, security=protocols.IMPLICIT_TLS,
            **dict(server, folder="Archive"),
        ), {"password": "an-old-password"})
        models.Alias.create(address="support@example.test", credential=support, workspace="Helpdesk",
                            project_type="Ticket", client="ACME", description="First-line support")
        tool = service_accounts.create({"name": SERVICE_ACCOUNT, "description": "examples/fetch_unseen.py",
                                        "scopes": ["connection:read", "connection:test"], "group_ids": [default.id]},
                                       actor=ADMIN)
        _, service_token = service_accounts.issue_token(tool, "demo", actor=ADMIN)
        oauth_apps.save_app(models.OAuthApp(), {
            "name": "Demo provider", "kind": "custom", "authorization_url": tokens.authorization_url,
            "token_url": tokens.token_url, "client_id": SIGN_IN_CLIENT_ID, "scopes": "mail",
        }, CLIENT_SECRET, actor=ADMIN)
    return api_token, service_token


def app_config(workdir, mail, tokens, base_url=None):
    """The dashboard's configuration: a fresh instance folder in `workdir`, trusting the demo Dovecot's CA, and
    allowed to dial only the ports of the servers the demo started (`mail`, a tests.dovecot.Dovecot, and
    `tokens`, a tests.token_server.TokenServer), on loopback."""
    ports = (mail.imaps_port, mail.imap_port, mail.pop3s_port, mail.pop3_port, urlsplit(tokens.token_url).port)
    where = {"BASE_URL": base_url} if base_url else {}  # OAuth2 sign-in comes back to the dashboard here
    return {
        **where,
        "INSTANCE_PATH": str(workdir / "instance"),
        "DATABASE_URL": f"sqlite:///{workdir / 'instance' / 'mailkeep.db'}",
        "CA_FILE": str(mail.ca_file),
        "ALLOWED_PORTS": ",".join(str(port) for port in ports),
        "ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }


def main():
    """Run the demo until Ctrl-C."""
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5000"))
    with tempfile.TemporaryDirectory(prefix="mailkeep-demo-") as workdir:
        workdir = pathlib.Path(workdir)
        clients = {CLIENT_ID: OAuthClient(CLIENT_SECRET, MAILBOX.username),
                   SIGN_IN_CLIENT_ID: OAuthClient(CLIENT_SECRET, MAILBOX.username)}
        with TokenServer(clients) as tokens, Dovecot(
            workdir / "dovecot", users=[MAILBOX], oauth2_introspection_url=tokens.introspection_url
        ) as mail:
            loopback = host in ("127.0.0.1", "localhost", "::1")
            app = create_app(app_config(workdir, mail, tokens, f"http://{host}:{port}" if loopback else None))
            api_token, service_token = seed(app, mail, tokens)
            server = make_server(host, port, app, threaded=True)
            print(f"Mailkeep demo: http://{host}:{port}/  (Ctrl-C stops it and deletes everything)")
            print(f"Sign in as {ADMIN} / {ADMIN_PASSWORD}; API token: {api_token}")
            print(f"Service account {SERVICE_ACCOUNT} reads the Default group; try the example tool: "
                  f"MAILKEEP_TOKEN={service_token} {sys.executable} examples/fetch_unseen.py "
                  f"--mailkeep http://{host}:{port} --credential 1 --imap-ca {mail.ca_file}")
            print(f"Mail server: localhost, IMAP {mail.imaps_port} (SSL/TLS) and {mail.imap_port} (STARTTLS), "
                  f"POP3 {mail.pop3s_port} and {mail.pop3_port}; login {MAILBOX.username} / {MAILBOX.password}")
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print("\nStopping the demo.")
            finally:
                server.server_close()


if __name__ == "__main__":
    main()
