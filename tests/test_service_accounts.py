"""Service accounts: admins make them on their page and over the API, say what each may read and do and from
where, and give them tokens (shown once, kept as hashes, several at once, with an optional expiry)."""

import re
from datetime import timedelta

import models
from api_spec import matches_spec
from clients import signed_in
from models import AuditEvent, ServiceAccount, ServiceToken
from readers import READ, account, client_of, saved
from testdata import CANARY


def test_a_service_account_is_made_changed_given_tokens_and_deleted_over_the_api(app, api):
    credential = saved(app, group="Helpdesk")
    with models.db.connection_context():
        helpdesk = models.Group.get(models.Group.name == "Helpdesk").id
    made = matches_spec(api.post("/api/v1/service-accounts", json={
        "name": "helpdesk", "description": "The ticket system", "scopes": ["connection:read"],
        "networks": ["10.0.0.0/8", "2001:db8::/32"], "group_ids": [helpdesk]}), "/service-accounts", "post")
    assert made.status_code == 201
    body = made.get_json()
    assert (body["scopes"], body["networks"], body["group_ids"], body["credential_ids"], body["tokens"]) == (
        ["connection:read"], ["10.0.0.0/8", "2001:db8::/32"], [helpdesk], [], [])
    path = made.headers["Location"]
    token = matches_spec(api.post(f"{path}/tokens", json={"name": "production"}),
                         "/service-accounts/{row_id}/tokens", "post")
    second = api.post(f"{path}/tokens", json={"name": "next", "expires_on": str(models.utcnow().date()
                                                                                 + timedelta(days=30))})
    assert token.status_code == second.status_code == 201 and token.get_json()["token"].startswith("mks_")
    url = f"/api/v1/credentials/{credential.id}/connection"
    for text in (token.get_json()["token"], second.get_json()["token"]):  # several at once: no gap to replace one
        assert client_of(app, token=text, address="10.9.9.9").get(url).status_code == 200
    changed = matches_spec(api.patch(path, json={"scopes": ["connection:read", "connection:test"], "networks": ""}),
                           "/service-accounts/{row_id}", "patch")
    assert changed.get_json()["scopes"] == ["connection:read", "connection:test"]
    assert changed.get_json()["networks"] == []
    assert changed.get_json()["group_ids"] == [helpdesk]  # what was not sent stays
    listed = matches_spec(api.get("/api/v1/service-accounts"), "/service-accounts", "get").get_json()["items"]
    assert [token["name"] for token in listed[0]["tokens"]] == ["next", "production"]
    assert token.get_json()["token"] not in api.get(path).get_data(as_text=True)
    revoked = api.delete(f"{path}/tokens/{token.get_json()['id']}")
    assert revoked.status_code == 204
    assert client_of(app, token=token.get_json()["token"]).get(url).status_code == 401
    assert api.delete(f"{path}/tokens/{token.get_json()['id']}").status_code == 404
    assert api.delete(path).status_code == 204
    assert client_of(app, token=second.get_json()["token"]).get(url).status_code == 401
    with models.db.connection_context():
        actions = [event.action for event in AuditEvent.select().order_by(AuditEvent.id)
                   if event.action.startswith("service_")]
        assert ServiceToken.select().count() == 0
    assert actions == ["service_account_create", "service_token_create", "service_token_create",
                       "service_account_update", "service_token_revoke", "service_account_delete",
                       "service_token_revoke"]


def test_only_the_token_hash_is_kept(app, api):
    made = api.post("/api/v1/service-accounts", json={"name": "helpdesk"}).get_json()
    token = api.post(f"/api/v1/service-accounts/{made['id']}/tokens", json={"name": "t"}).get_json()["token"]
    with models.db.connection_context():
        stored = ServiceToken.get()
    assert stored.digest != token and token not in str(stored.__data__)


def test_what_a_service_account_is_given_is_checked_field_by_field(app, api):
    api.post("/api/v1/service-accounts", json={"name": "helpdesk"})
    refused = api.post("/api/v1/service-accounts", json={
        "name": "HELPDESK", "scopes": ["connection:write"], "networks": "10.0.0.5/8, not-a-network",
        "group_ids": [999], "credential_ids": [998], "colour": "blue"})
    assert refused.status_code == 422
    errors = refused.get_json()["errors"]
    assert set(errors) == {"colour"}
    refused = api.post("/api/v1/service-accounts", json={
        "name": "HELPDESK", "scopes": ["connection:write"], "networks": "10.0.0.5/8", "group_ids": [999],
        "credential_ids": [998]})
    errors = refused.get_json()["errors"]
    assert errors["name"] == ["Another service account is already called 'helpdesk'."]
    assert "not a valid choice" in errors["scopes"][0].lower()
    assert "not a valid choice" in errors["group_ids"][0].lower()
    assert errors["networks"] == ["10.0.0.5/8 has host bits set; did you mean 10.0.0.0/8?"]
    assert errors["credential_ids"] == ["No credential with id 998."]
    bad = api.post("/api/v1/service-accounts", json={"name": "x", "networks": "not-a-network"}).get_json()
    assert bad["errors"]["networks"] == ["not-a-network is not an IP network in CIDR notation, such as 10.0.0.0/8."]
    assert api.post("/api/v1/service-accounts", json={"name": "x", "scopes": "connection:read"}).status_code == 422
    assert api.post("/api/v1/service-accounts", json={"name": "a\nb"}).status_code == 422


def test_the_service_accounts_page_makes_one_gives_it_a_token_once_and_a_single_credential(app):
    credential = saved(app, name="Billing inbox", group="Billing", username="billing@example.com")
    admin = signed_in(app, "admin")
    assert signed_in(app, "editor").get("/service-accounts/").status_code == 403
    assert 'href="/service-accounts/"' in admin.get("/credentials/").text
    assert 'href="/service-accounts/"' not in signed_in(app, "editor").get("/credentials/").text
    added = admin.post("/service-accounts/", data={"name": "helpdesk", "description": "Tickets",
                                                   "scopes": ["connection:read"], "networks": ""})
    assert added.status_code == 303 and added.headers["Location"] == "/service-accounts/1"
    page = admin.post("/service-accounts/1/tokens", data={"token-name": "production"})
    token = re.search(r'<code id="new-token">(mks_[^<]+)</code>', page.text).group(1)
    assert "Copy it now" in page.text and token not in admin.get("/service-accounts/1").text
    url = f"/api/v1/credentials/{credential.id}/connection"
    assert client_of(app, token=token).get(url).status_code == 404  # not its group, not a single credential
    found = admin.get("/service-accounts/1?credential_query=billing")
    assert f'value="{credential.id}"' in found.text and "Billing inbox" in found.text
    assert admin.post("/service-accounts/1/credentials", data={"credential": credential.id}).status_code == 303
    assert "Billing inbox" in admin.get("/service-accounts/1").text
    assert client_of(app, token=token).get(url).get_json()["password"] == CANARY
    assert admin.post(f"/service-accounts/1/credentials/{credential.id}/remove").status_code == 303
    assert client_of(app, token=token).get(url).status_code == 404
    saved_settings = admin.post("/service-accounts/1", data={"name": "helpdesk", "description": "Tickets",
                                                             "scopes": ["connection:read", "connection:test"],
                                                             "networks": "192.0.2.0/24", "group_ids": ["2"]})
    assert saved_settings.status_code == 303
    assert client_of(app, token=token, address="192.0.2.9").get(url).status_code == 200  # group Billing (id 2)
    assert client_of(app, token=token, address="198.51.100.1").get(url).status_code == 403
    invalid = admin.post("/service-accounts/1", data={"name": "", "networks": "300.1.1.1/8"})
    assert invalid.status_code == 200 and 'aria-invalid="true"' in invalid.text
    assert admin.post("/service-accounts/1/tokens/1/revoke").status_code == 303
    assert client_of(app, token=token, address="192.0.2.9").get(url).status_code == 401
    assert "Delete the service account helpdesk" in admin.get("/service-accounts/1/delete").text
    assert admin.post("/service-accounts/1/delete").status_code == 303
    with models.db.connection_context():
        assert ServiceAccount.select().count() == 0


def test_used_by_shows_who_read_a_credential_when_last_and_how_often_this_week(app, client):
    credential = saved(app, group="Helpdesk")
    reader = account("helpdesk", groups=["Helpdesk"])
    account("idle", credentials=[credential])
    account("elsewhere", groups=["Default"])
    service = client_of(app, reader)
    moments = [models.utcnow() - timedelta(days=days) for days in (9, 3, 0, 0)]
    for moment in moments:
        app.extensions["mailkeep.clock"] = lambda moment=moment: moment
        assert service.get(f"/api/v1/credentials/{credential.id}/connection").status_code == 200
    app.extensions.pop("mailkeep.clock")
    with models.db.connection_context():
        models.ServiceGrant.delete().where(models.ServiceGrant.service_account == reader.id).execute()
    html = client.get(f"/credentials/{credential.id}").text
    rows = re.findall(r"<tr>\s*<td data-label=\"Service account\">(.*?)</tr>", html, re.S)
    assert len(rows) == 2
    helpdesk, idle = rows
    assert "helpdesk" in helpdesk and "no longer" in helpdesk and "just now" in helpdesk
    assert re.search(r'data-label="Reads, past 7 days">3<', helpdesk)  # 9 days ago is older
    assert "idle" in idle and ">never<" in idle and re.search(r'data-label="Reads, past 7 days">0<', idle)
    assert "elsewhere" not in html


def used_by_section(html):
    """The "Used by" section of a credential's page (templates/credentials/_used_by.html)."""
    return re.search(r'<section[^>]*id="used-by">(.*?)</section>', html, re.S).group(1)


def test_used_by_lists_the_aliases_that_route_mail_through_the_credential(app, client):
    credential = saved(app)  # its username is help@example.com: no alias below is named alike
    other = saved(app, name="Other", username="other@example.com")
    page = f"/credentials/{credential.id}"
    assert "No alias routes mail through this credential." in used_by_section(client.get(page).text)
    with models.db.connection_context():
        support = models.Alias.create(address="support@example.com", credential=credential, workspace="Helpdesk")
        billing = models.Alias.create(address="billing@example.com", credential=credential)
        models.Alias.create(address="sales@example.com", credential=other, workspace="Sales")
    section = used_by_section(client.get(page).text)
    assert [item.strip() for item in re.findall(r"<li>(.*?)</li>", section, re.S)] == [
        f'<a href="/aliases/{billing.id}/edit">billing@example.com</a>',
        f'<a href="/aliases/{support.id}/edit">support@example.com</a> · Helpdesk']
    assert "sales@example.com" not in section and "Sales" not in section and "No alias routes" not in section
    # A viewer sees the same aliases, without links to pages it may not open.
    seen = used_by_section(signed_in(app, "viewer").get(page).text)
    assert re.findall(r"<li>(.*?)</li>", seen, re.S) == ["billing@example.com", "support@example.com · Helpdesk"]


def test_an_editor_sees_used_by_without_links_to_the_admins_pages(app):
    credential = saved(app)
    account("helpdesk", groups=["Default"])
    html = signed_in(app, "editor").get(f"/credentials/{credential.id}").text
    assert "helpdesk" in html and "/service-accounts/" not in html


def test_a_service_account_uses_its_token_for_reads_only_while_it_has_the_scope(app, api):
    credential = saved(app)
    made = account(scopes=(READ,), groups=["Default"])
    client = client_of(app, made)
    assert client.get(f"/api/v1/credentials/{credential.id}/connection").status_code == 200
    api.patch(f"/api/v1/service-accounts/{made.id}", json={"scopes": []})
    assert client.get(f"/api/v1/credentials/{credential.id}/connection").status_code == 403
