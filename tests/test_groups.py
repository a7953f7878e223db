"""The groups page: list, add, rename in place, delete unless the group still holds credentials."""

import models
from clients import HTMX
from models import Credential, Group


def test_add_a_group_and_refuse_a_duplicate_name(client):
    assert client.post("/groups/", data={"name": "Customers", "description": "Shared inboxes"}).status_code == 303
    assert "Customers" in client.get("/groups/").get_data(as_text=True)
    duplicate = client.post("/groups/", data={"name": "customers"})
    assert duplicate.status_code == 200
    assert "The group &#39;Customers&#39; already exists." in duplicate.get_data(as_text=True)


def test_rename_in_place_with_htmx(client, db):
    group = Group.create(name="Team")
    editor = client.get(f"/groups/{group.id}/edit", headers=HTMX).get_data(as_text=True)
    assert editor.lstrip().startswith("<tr") and f'form="group-form-{group.id}"' in editor
    renamed = client.post(f"/groups/{group.id}/edit", data={"name": "Ops"}, headers=HTMX)
    assert renamed.status_code == 200 and "<strong>Ops</strong>" in renamed.get_data(as_text=True)
    refused = client.post(f"/groups/{group.id}/edit", data={"name": "default"}, headers=HTMX)
    assert "already exists" in refused.get_data(as_text=True)
    assert Group.get_by_id(group.id).name == "Ops"
    cancelled = client.get(f"/groups/{group.id}", headers=HTMX).get_data(as_text=True)
    assert "<strong>Ops</strong>" in cancelled


def test_rename_without_javascript(client, db):
    group = Group.create(name="Team")
    page = client.get(f"/groups/{group.id}/edit").get_data(as_text=True)
    assert "<html" in page and 'value="Team"' in page
    assert client.post(f"/groups/{group.id}/edit", data={"name": "Ops"}).status_code == 303
    assert Group.get_by_id(group.id).name == "Ops"


def test_a_group_holding_credentials_is_not_deleted_and_the_answer_says_how_many(client, db):
    group = Group.create(name="Customers")
    for number in (1, 2):
        Credential.create(name=f"C{number}", description="x", group=group, host="h.example", port=993,
                          username=f"u{number}@example.com")
    response = client.post(f"/groups/{group.id}/delete", headers=HTMX)
    assert response.headers["HX-Retarget"] == "#messages"
    assert "It still holds 2 credentials." in response.get_data(as_text=True)
    assert client.post(f"/groups/{group.id}/delete").status_code == 409
    assert Group.get_or_none(Group.id == group.id)


def test_the_default_group_is_kept_and_an_empty_group_is_deleted(client, db):
    default = Group.default()
    refused = client.post(f"/groups/{default.id}/delete", headers=HTMX).get_data(as_text=True)
    assert "It is the default group" in refused
    empty = Group.create(name="Empty")
    assert client.post(f"/groups/{empty.id}/delete").status_code == 303
    with models.db.connection_context():
        assert [group.name for group in Group.select()] == [default.name]
