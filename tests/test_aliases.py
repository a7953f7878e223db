"""The aliases pages: list, add, edit, delete, with per-field errors."""

import re

import pytest

import models
from clients import HTMX
from models import Alias, Credential, Group


@pytest.fixture
def credential(db):
    return Credential.create(name="Support desk", description="Helpdesk", group=Group.default(),
                             host="imap.example.com", port=993, username="help@example.com")


def alias_values(credential, **overrides):
    """Form data for an alias of `credential`; `overrides` may replace any field, the credential too."""
    values = {"address": "help@example.com", "credential": str(credential.id), "workspace": "Helpdesk",
              "project_type": "Ticket", "client": "ACME", "description": "First-line support"}
    values.update(overrides)
    return values


def test_the_form_has_the_promised_labels(client, credential):
    html = client.get("/aliases/new").get_data(as_text=True)
    labels = re.findall(r"<label for=\"[^\"]+\">([^<]+)</label>", html)
    assert labels == ["Address", "Credential", "Workspace", "Project type", "Client", "Description"]
    assert "Support desk" in html


def test_a_new_alias_starts_with_no_credential_chosen_and_must_be_given_one(client, credential):
    """Issue 8 item 9: the form never preselects a credential; leaving it unchosen is refused by name."""
    Credential.create(name="Another desk", description="", group=Group.default(), host="imap.example.com", port=993,
                      username="another@example.com")
    html = client.get("/aliases/new").get_data(as_text=True)
    radios = re.findall(r'<input type="radio" name="credential"[^>]*>', html)
    assert len(radios) == 2 and not any("checked" in radio for radio in radios)
    values = alias_values(credential)
    del values["credential"]
    refused = client.post("/aliases/new", data=values).get_data(as_text=True)
    assert re.search(r'id="credential-error"[^>]*>Choose a credential\.<', refused)
    assert Alias.select().count() == 0


def test_add_edit_and_delete_an_alias(client, credential):
    assert client.post("/aliases/new", data=alias_values(credential)).status_code == 303
    alias = Alias.get()
    listing = client.get("/aliases/").get_data(as_text=True)
    assert "help@example.com" in listing and "Support desk" in listing and "ACME" in listing
    edited = client.post(f"/aliases/{alias.id}/edit", data=alias_values(credential, client="Globex"))
    assert edited.status_code == 303
    assert Alias.get().client == "Globex"
    deleted = client.post(f"/aliases/{alias.id}/delete", headers=HTMX)
    assert (deleted.status_code, deleted.get_data()) == (200, b"")
    assert Alias.select().count() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"address": "not an address"}, "An email address must have an @-sign."),
        ({"address": ""}, "This field is required."),
        ({"credential": "999"}, "Not a valid choice."),
    ],
)
def test_invalid_aliases_are_refused_with_the_values_kept(client, credential, overrides, message):
    response = client.post("/aliases/new", data={**alias_values(credential), **overrides})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in html
    assert 'value="Helpdesk"' in html and 'value="ACME"' in html
    assert Alias.select().count() == 0


def test_addresses_are_unique_ignoring_case(client, credential):
    client.post("/aliases/new", data=alias_values(credential))
    response = client.post("/aliases/new", data=alias_values(credential, address="HELP@example.com"))
    assert response.status_code == 200
    assert "The alias help@example.com already exists." in response.get_data(as_text=True)
    alias = Alias.get()
    assert client.post(f"/aliases/{alias.id}/edit", data=alias_values(credential)).status_code == 303


def test_without_credentials_the_form_says_to_add_one_first(client):
    html = client.get("/aliases/new").get_data(as_text=True)
    assert "Add a credential" in html
    with models.db.connection_context():
        assert Credential.select().count() == 0
