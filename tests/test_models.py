"""The database itself enforces what the forms promise: references, uniqueness, order."""

import pytest
from peewee import IntegrityError

from models import Alias, Credential, CustomDataItem, Group


def make_credential(name="Support", username="help@example.com", **fields):
    values = dict(name=name, description="Helpdesk mailbox", group=Group.default(), host="imap.example.com",
                  port=993, username=username)
    values.update(fields)
    return Credential.create(**values)


def test_a_referenced_credential_cannot_be_deleted_even_through_the_models(db):
    credential = make_credential()
    Alias.create(address="help@example.com", credential=credential)
    with pytest.raises(IntegrityError):
        credential.delete_instance()
    assert Credential.get_by_id(credential.id)


def test_a_group_holding_credentials_cannot_be_deleted(db):
    group = Group.create(name="Customers")
    make_credential(group=group)
    with pytest.raises(IntegrityError):
        group.delete_instance()


def test_names_are_unique_ignoring_case(db):
    make_credential(name="Support")
    with pytest.raises(IntegrityError):
        make_credential(name="SUPPORT", username="other@example.com")
    Group.create(name="Team")
    with pytest.raises(IntegrityError):
        Group.create(name="team")
    credential = Credential.get()
    Alias.create(address="a@example.com", credential=credential)
    with pytest.raises(IntegrityError):
        Alias.create(address="A@Example.com", credential=credential)


def test_one_mailbox_is_stored_once_username_ignoring_case_folder_exactly(db):
    make_credential(name="One", username="help@example.com")
    with pytest.raises(IntegrityError):
        make_credential(name="Two", username="HELP@example.com")
    make_credential(name="Three", username="help@example.com", folder="Archive")  # another folder is fine
    assert Credential.same_mailbox("IMAP", "IMAP.example.com", 993, "Help@Example.com", "INBOX").name == "One"
    assert Credential.same_mailbox("IMAP", "imap.example.com", 993, "help@example.com", "inbox") is None


def test_there_is_exactly_one_default_group(db):
    assert Group.default() == Group.default()
    assert Group.select().where(Group.is_default == True).count() == 1  # noqa: E712


def test_custom_data_keeps_its_order_and_goes_with_its_credential(db):
    credential = make_credential()
    credential.replace_custom_data([("zeta", "1"), ("alpha", "2")])
    assert credential.custom_data == [("zeta", "1"), ("alpha", "2")]
    with pytest.raises(IntegrityError):
        credential.replace_custom_data([("same", "1"), ("same", "2")])
    credential.delete_instance()
    assert CustomDataItem.select().count() == 0


def test_search_matches_name_description_host_and_username(db):
    make_credential(name="Support", username="help@example.com")
    make_credential(name="Billing", description="Invoices 100%", username="bills@example.org", host="mail.example.org")

    def names(text):
        return [credential.name for credential in Credential.search(text)]
    assert names("supp") == ["Support"]
    assert names("INVOICES") == ["Billing"]
    assert names("example.org") == ["Billing"]
    assert names("help@") == ["Support"]
    assert names("100%") == ["Billing"]
    assert names("%") == ["Billing"]  # LIKE wildcards are matched literally


def test_a_search_counts_what_it_finds_after_changes_and_deletes(db):
    # The count of a text search is read from the search index alone on SQLite (count_containing): it must agree
    # with the rows the search returns, as rows are added, changed and deleted.
    support = make_credential(name="Support", username="help@example.com")
    make_credential(name="Billing", description='Says "support" too', username="bills@example.org")
    make_credential(name="Sales", username="sales@example.net")
    Alias.create(address="support@example.com", credential=support)
    Alias.create(address="sales@example.com", credential=support)

    def agree(text):
        found = len(list(Credential.search(text)))
        assert Credential.count_matching(text) == found, text
        assert Alias.count_matching(text) == len(list(Alias.search(text))), text
        return found
    texts = ("support", "SUPPORT", '"support"', "su", "example", "nothing")
    assert [agree(text) for text in texts] == [2, 2, 1, 2, 3, 0]
    support.name, support.description = "Helpdesk", "Front desk"
    support.save()
    Credential.get(Credential.name == "Billing").delete_instance()
    assert [agree(text) for text in ("support", "helpdesk", "example", "x")] == [0, 2, 2, 2]
