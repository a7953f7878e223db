"""The OAuth apps page and /api/v1/oauth-apps: administrators register the team's apps; the redirect URI to
register is shown; the client secret is write-only; a custom provider's endpoints come from its OpenID
Connect discovery document; an app credentials sign in with cannot be deleted."""

import datetime
import re
from html import unescape

import pytest
from peewee import IntegrityError

import encryption
import models
import probe
import providers
from app import create_app
from clients import signed_in
from models import AuditEvent, Credential, OAuthApp
from probe import protocols
from services import checks
from sign_in import registered_app, signed_in_credential
from test_api import matches_spec
from testdata import CLIENT_SECRET, SIGN_IN_CLIENT_ID, stored_credential


def app_form(**overrides):
    values = {"kind": "microsoft", "name": "Contoso mail", "tenant": "", "client_id": "11111111-2222",
              "client_secret": CLIENT_SECRET}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def field_error(html, field):
    match = re.search(rf'<small id="{field}-error">([^<]*)</small>', html)
    return match and unescape(match.group(1))


def stored_app(name="Contoso mail"):
    with models.db.connection_context():
        return OAuthApp.get(OAuthApp.name == name)


def test_the_page_shows_the_redirect_uri_built_from_the_base_url(app, client):
    app.config["BASE_URL"] = "http://localhost"  # where the test client's requests go
    page = client.get("/oauth-apps/").get_data(as_text=True)
    assert '<code id="redirect-uri" class="wrap">http://localhost/oauth/callback</code>' in page
    assert "No OAuth apps yet." in page and "You reached Mailkeep at" not in page
    app.config["BASE_URL"] = "https://mailkeep.example.com"
    elsewhere = client.get("/oauth-apps/new").get_data(as_text=True)
    assert '<code id="redirect-uri" class="wrap">https://mailkeep.example.com/oauth/callback</code>' in elsewhere
    assert 'You reached Mailkeep at <code class="wrap">http://localhost</code>' in elsewhere


def test_a_microsoft_app_keeps_its_secret_sealed_and_never_shows_it(app, client):
    response = client.post("/oauth-apps/new", data=app_form())
    assert response.status_code == 303
    saved = stored_app()
    assert (saved.tenant, saved.token_endpoint) == (
        "organizations", "https://login.microsoftonline.com/organizations/oauth2/v2.0/token")
    assert saved.authorization_endpoint == "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
    assert saved.unseal(app.extensions["mailkeep.keyring"], "client_secret") == CLIENT_SECRET
    assert saved.sign_in_scopes("IMAP") == \
        "openid email https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    assert saved.sign_in_scopes("POP3") == \
        "openid email https://outlook.office.com/POP.AccessAsUser.All offline_access"
    assert saved.refresh_scopes("IMAP") == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    edit = client.get(f"/oauth-apps/{saved.id}/edit").get_data(as_text=True)
    assert "A client secret is stored, encrypted and never shown." in edit
    # Saved again without a secret: the stored one stays. With one: it is replaced.
    kept = client.post(f"/oauth-apps/{saved.id}/edit", data=app_form(client_secret="", tenant="contoso.com"))
    assert kept.status_code == 303
    assert stored_app().unseal(app.extensions["mailkeep.keyring"], "client_secret") == CLIENT_SECRET
    assert stored_app().tenant == "contoso.com"
    client.post(f"/oauth-apps/{saved.id}/edit", data=app_form(client_secret="a-new-secret"))
    assert stored_app().unseal(app.extensions["mailkeep.keyring"], "client_secret") == "a-new-secret"
    with models.db.connection_context():
        details = [(event.action, event.details) for event in AuditEvent.select().where(
            AuditEvent.entry_type == "oauth_app").order_by(AuditEvent.id)]
    assert details == [("create", "client secret set"), ("update", ""), ("update", "client secret set")]


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"])
def test_a_microsoft_app_of_one_tenant_gets_that_tenants_endpoints(app, client, api, tenant):
    """A single-tenant app registration takes sign-ins and tokens only at its own tenant's endpoints (Microsoft
    refuses ``organizations`` for it): the tenant given, a domain or the Directory (tenant) ID, is in both."""
    assert client.post("/oauth-apps/new", data=app_form(tenant=tenant)).status_code == 303
    saved = stored_app()
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    assert (saved.tenant, saved.authorization_endpoint, saved.token_endpoint) == (
        tenant, f"{base}/authorize", f"{base}/token")
    listed = matches_spec(api.get("/api/v1/oauth-apps"), "/oauth-apps", "get").get_json()
    assert [(item["tenant"], item["token_endpoint"]) for item in listed["items"]] == [(tenant, f"{base}/token")]


def test_google_asks_for_offline_access_and_consent(app, client):
    client.post("/oauth-apps/new", data=app_form(kind="google", name="Gmail"))
    google = stored_app("Gmail")
    assert google.tenant == "" and google.token_endpoint == "https://oauth2.googleapis.com/token"
    assert google.sign_in_scopes("IMAP") == "openid email https://mail.google.com/"
    assert google.authorization_params == {"access_type": "offline", "prompt": "consent"}
    assert google.button_label == "Sign in with Google"


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"client_secret": ""}, "client_secret", "Enter the client secret the provider gave the app."),
        ({"tenant": "not a tenant"}, "tenant", "Enter the tenant ID"),
        ({"kind": "custom"}, "token_url", "Enter the authorization and token endpoints, or the issuer"),
        ({"kind": "custom", "issuer": "https://x.example", "scopes": ""}, "scopes", "Enter the scopes"),
        ({"kind": "custom", "token_url": "http://login.example.com/token", "authorization_url": "https://a.example",
          "scopes": "mail"}, "token_url", "The token endpoint must be an https:// URL"),
        ({"idle_days": "0"}, "idle_days", "Enter a number of days from 1 to 3650."),
    ],
)
def test_what_an_app_needs_is_said_on_its_field(client, values, field, message):
    html = client.post("/oauth-apps/new", data=app_form(**values)).get_data(as_text=True)
    assert message in (field_error(html, field) or "")


def test_a_custom_provider_reads_its_endpoints_from_its_issuer(app, client, token_server):
    form = app_form(kind="custom", name="Keycloak", issuer=token_server.url, scopes="mail offline_access")
    assert client.post("/oauth-apps/new", data=form).status_code == 303
    custom = stored_app("Keycloak")
    assert (custom.authorization_url, custom.token_url) == (token_server.authorization_url, token_server.token_url)
    assert custom.sign_in_scopes("IMAP") == "openid email mail offline_access"
    assert custom.button_label == "Sign in with Keycloak"
    broken = app_form(kind="custom", name="Nowhere", issuer=token_server.url + "/realms/none", scopes="mail")
    html = client.post("/oauth-apps/new", data=broken).get_data(as_text=True)
    assert "Mailkeep could not read the OpenID Connect configuration" in field_error(html, "issuer")
    assert OAuthApp.select().count() == 1


def test_an_expiring_client_secret_is_flagged(app, client):
    today = models.utcnow().date()
    soon = (today + datetime.timedelta(days=10)).isoformat()
    client.post("/oauth-apps/new", data=app_form(client_secret_expires_on=soon))
    client.post("/oauth-apps/new", data=app_form(name="Old", client_secret_expires_on=today.isoformat()))
    page = client.get("/oauth-apps/").get_data(as_text=True)
    assert f"expires {(today + datetime.timedelta(days=10)).isoformat()}" in page
    assert f"expired {today.isoformat()}" in page


def test_a_sign_in_whose_apps_client_secret_expires_soon_counts_as_expiring_soon(app, client, token_server,
                                                                                  dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    window = datetime.timedelta(days=max(app.config["EXPIRY_WARNING_DAYS"]))
    for expires_on, expiring in ((models.utcnow().date() + window + datetime.timedelta(days=1), False),
                                 (models.utcnow().date() + window - datetime.timedelta(days=1), True)):
        with models.db.connection_context():
            OAuthApp.update(client_secret_expires_on=expires_on).where(OAuthApp.id == oauth_app.id).execute()
        with app.app_context(), models.db.connection_context():
            assert checks.summary(fresh=True)["expiring"] == int(expiring)
        listed = client.get("/credentials/?health=expiring").get_data(as_text=True)
        assert (f'id="credential-{credential.id}"' in listed) == expiring
    with models.db.connection_context():  # switched to a password, it no longer signs in with the app
        Credential.update(auth=protocols.PASSWORD).where(Credential.id == credential.id).execute()
    with app.app_context(), models.db.connection_context():
        assert checks.summary(fresh=True)["expiring"] == 0


def test_an_app_credentials_sign_in_with_is_not_deleted(app, client, token_server, dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    response = client.post(f"/oauth-apps/{oauth_app.id}/delete")
    assert response.status_code == 409
    assert "Test provider was not deleted." in response.get_data(as_text=True)
    with models.db.connection_context():
        with pytest.raises(IntegrityError):
            OAuthApp.delete().where(OAuthApp.id == oauth_app.id).execute()  # the database refuses too
    page = client.get(f"/credentials/{credential.id}").get_data(as_text=True)
    assert "Sign-in" in page and "Scopes granted" in page and "Sign in again" in page
    other = registered_app(app, token_server, name="Spare")
    assert client.post(f"/oauth-apps/{other.id}/delete").status_code == 303
    assert OAuthApp.select().count() == 1


def test_only_admins_see_the_oauth_apps_link(app):
    assert 'href="/oauth-apps/"' in signed_in(app, "admin").get("/credentials/").get_data(as_text=True)
    assert 'href="/oauth-apps/"' not in signed_in(app, "editor").get("/credentials/").get_data(as_text=True)


# The API, each answer checked against the OpenAPI document.

def test_the_api_adds_changes_lists_and_deletes_apps_without_answering_the_secret(app, api, token_server):
    created = matches_spec(api.post("/api/v1/oauth-apps", json={
        "kind": "custom", "name": "API app", "issuer": token_server.url, "scopes": "mail",
        "client_id": SIGN_IN_CLIENT_ID, "client_secret": CLIENT_SECRET}), "/oauth-apps", "post")
    assert created.status_code == 201
    body = created.get_json()
    assert body["client_secret_set"] is True and "client_secret" not in body
    assert body["token_endpoint"] == token_server.token_url and body["redirect_uri"].endswith("/oauth/callback")
    changed = matches_spec(api.patch(f"/api/v1/oauth-apps/{body['id']}", json={"idle_days": 30}),
                           "/oauth-apps/{row_id}", "patch")
    assert changed.get_json()["idle_days"] == 30 and changed.get_json()["client_secret_set"] is True
    listed = matches_spec(api.get("/api/v1/oauth-apps"), "/oauth-apps", "get").get_json()
    assert [item["name"] for item in listed["items"]] == ["API app"]
    refused = matches_spec(api.post("/api/v1/oauth-apps", json={"kind": "custom", "name": "X", "client_id": "c",
                                                                "client_secret": "s", "scopes": "m",
                                                                "issuer": token_server.url + "/none"}),
                           "/oauth-apps", "post")
    assert refused.status_code == 422 and "issuer" in refused.get_json()["errors"]
    deleted = matches_spec(api.delete(f"/api/v1/oauth-apps/{body['id']}"), "/oauth-apps/{row_id}", "delete")
    assert deleted.status_code == 204
    assert CLIENT_SECRET not in str(listed)


def test_the_api_shows_a_credentials_sign_in_but_never_takes_a_refresh_token(app, api, client, token_server, dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    body = matches_spec(api.get(f"/api/v1/credentials/{credential.id}"), "/credentials/{row_id}", "get").get_json()
    assert body["auth"] == protocols.OAUTH2_SIGN_IN and body["refresh_token_set"] is True
    assert body["sign_in"]["oauth_app_id"] == oauth_app.id and body["sign_in"]["scopes"]
    assert api.put(f"/api/v1/credentials/{credential.id}/secrets/refresh_token", json={"value": "x"}).status_code == 404
    # Added over the API, a sign-in credential waits for someone to sign in on its page.
    response = api.post("/api/v1/credentials", json={
        "name": "By API", "description": "d", "protocol": "IMAP", "host": "imap.example.com",
        "security": "ssl_tls", "username": "a@example.com", "folder": "INBOX", "auth": "oauth2_sign_in"})
    assert response.status_code == 201 and response.get_json()["sign_in"] is None
    tested = api.post("/api/v1/connection-tests", json={"credential_id": response.get_json()["id"]})
    assert tested.status_code == 422 and "Sign in first" in tested.get_json()["errors"]["refresh_token"][0]


def test_microsofts_app_only_preset_takes_a_tenant_for_the_token_endpoint(app, api):
    tenant = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    response = api.post("/api/v1/credentials", json={
        "name": "Shared", "description": "d", "protocol": "IMAP", "host": "outlook.office365.com",
        "security": "ssl_tls", "username": "shared@contoso.com", "folder": "INBOX",
        "auth": "oauth2_client_credentials", "client_id": "app", "client_secret": CLIENT_SECRET, "token_url": tenant})
    body = response.get_json()
    assert body["token_url"] == f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    assert body["scope"] == "https://outlook.office365.com/.default"
    typed_scope = api.post("/api/v1/credentials", json={
        "name": "Other", "description": "d", "protocol": "IMAP", "host": "outlook.office365.com",
        "security": "ssl_tls", "username": "other@contoso.com", "folder": "INBOX",
        "auth": "oauth2_client_credentials", "client_id": "app", "client_secret": CLIENT_SECRET,
        "token_url": "contoso.onmicrosoft.com", "scope": "https://outlook.office365.com/.default x"}).get_json()
    assert typed_scope["token_url"].startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/")
    assert typed_scope["scope"] == "https://outlook.office365.com/.default x"


def test_key_rotation_re_encrypts_client_secrets_refresh_tokens_and_verifiers(app_config):
    old, new = app_config["ENCRYPTION_KEYS"], encryption.generate_key()
    first = create_app(app_config)
    keyring = first.extensions["mailkeep.keyring"]
    with models.db.connection_context():
        oauth_app = OAuthApp(name="Rotating", kind="google", client_id="c")
        oauth_app.save()
        oauth_app.seal(keyring, "client_secret", "app-secret")
        oauth_app.save()
        credential = stored_credential(keyring, auth="oauth2_sign_in", oauth_app=oauth_app.id)
        credential.seal(keyring, "refresh_token", "a-refresh-token")
        credential.save()
        user = models.User.add("someone", "a long enough password", "editor")
        pending = models.OAuthSignIn.create(state_digest="d", session_digest="s", user=user.id,
                                            credential=credential.id, oauth_app=oauth_app.id, nonce="n")
        pending.seal(keyring, "code_verifier", "a-verifier")
        pending.save()
    rotating = create_app({**app_config, "ENCRYPTION_KEYS": f"{new},{old}"})
    result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0 and "Re-encrypted 4 secrets" in result.output  # the password too
    new_only = encryption.KeyRing(encryption.parse_keys(new))
    with models.db.connection_context():
        assert OAuthApp.get().unseal(new_only, "client_secret") == "app-secret"
        assert Credential.get().unseal(new_only, "refresh_token") == "a-refresh-token"
        assert models.OAuthSignIn.get().unseal(new_only, "code_verifier") == "a-verifier"
    create_app({**app_config, "ENCRYPTION_KEYS": new})


def test_an_app_only_login_refused_by_exchange_online_points_at_the_service_principal():
    settings = probe.Settings("IMAP", "outlook.office365.com", 993, "ssl_tls", "shared@contoso.com",
                              auth=protocols.OAUTH2, client_id="app", token_url="https://login.example.com/t")
    assert "New-ServicePrincipal" in providers.advice(settings, "auth_failed")
    assert "Add-MailboxPermission" in providers.advice(settings, "auth_failed")
    assert providers.advice(settings, "token_request_failed") is None
    signed_in = probe.Settings("IMAP", "outlook.office365.com", 993, "ssl_tls", "a@contoso.com",
                               auth=protocols.OAUTH2_SIGN_IN)
    assert providers.advice(signed_in, "auth_failed") is None
