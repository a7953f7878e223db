"""The audit log: every change, sign-in and connection test leaves an event, written with the change or
not at all; admins read and filter them."""

import pytest
from peewee import OperationalError

import models
from clients import HTMX, signed_in_through_form
from models import AuditEvent, Credential
from testdata import CANARY, MAILBOX_USER

CREDENTIAL = {"name": "Support", "description": "x", "group": "1", "protocol": "IMAP", "host": "localhost",
              "port": "993", "security": "ssl_tls", "username": MAILBOX_USER, "password": CANARY, "folder": "INBOX"}


def events(**where):
    with models.db.connection_context():
        query = AuditEvent.select().order_by(AuditEvent.id)
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        return [(e.actor, e.action, e.entry_type, e.entry_name, e.outcome) for e in query]


def test_changes_and_tests_are_recorded_with_who_what_and_how(app, dovecot):
    client = signed_in_through_form(app, "admin")
    client.post("/credentials/new", data={**CREDENTIAL, "port": str(dovecot.imaps_port)})
    with models.db.connection_context():
        credential = Credential.get()
    client.post(f"/credentials/{credential.id}/edit", data={**CREDENTIAL, "port": str(dovecot.imaps_port),
                                                             "description": "changed", "password": ""})
    client.post(f"/credentials/{credential.id}/password", data={"new_secret": "not-it", "confirm_secret": "not-it"})
    client.post(f"/credentials/{credential.id}/test")
    client.post("/aliases/new", data={"address": "help@example.com", "credential": str(credential.id)})
    client.post(f"/credentials/{credential.id}/delete")
    assert events(entry_type="credential") == [
        ("admin", "create", "credential", "Support", "ok"),
        ("admin", "update", "credential", "Support", "ok"),
        ("admin", "secret_change", "credential", "Support", "ok"),
        ("admin", "connection_test", "credential", "Support", "auth_failed"),
        ("admin", "delete", "credential", "Support", "refused"),
    ]
    assert events(entry_type="alias") == [("admin", "create", "alias", "help@example.com", "ok")]
    assert ("admin", "login", "user", "admin", "ok") in events(action="login")
    with models.db.connection_context():
        assert "not-it" not in "".join(e.details for e in AuditEvent.select())


def test_a_change_whose_event_cannot_be_written_does_not_happen(client, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("the audit table is gone")

    monkeypatch.setattr(AuditEvent, "create", broken)
    with pytest.raises(OperationalError):
        client.post("/credentials/new", data=CREDENTIAL)
    with pytest.raises(OperationalError):
        client.post("/groups/", data={"name": "Customers"})
    with models.db.connection_context():
        assert Credential.select().count() == 0
        assert models.Group.select().count() == 1  # the default group only


def test_admins_filter_the_log_and_htmx_gets_the_list(client):
    client.post("/groups/", data={"name": "Customers"})
    client.post("/groups/", data={"name": "Suppliers"})
    page = client.get("/audit/").get_data(as_text=True)
    assert "Audit log" in page and "Customers" in page and "Suppliers" in page
    only = client.get("/audit/?entry=Supp&action=create", headers=HTMX).get_data(as_text=True)
    assert "<html" not in only and "Suppliers" in only and "Customers" not in only
    assert "No event matches" in client.get("/audit/?actor=viewer").get_data(as_text=True)
    assert "No event matches" in client.get("/audit/?until=2000-01-01").get_data(as_text=True)
    assert "Customers" in client.get("/audit/?since=2000-01-01").get_data(as_text=True)


def test_dates_at_the_ends_of_the_calendar_filter_instead_of_failing(client):
    client.post("/groups/", data={"name": "Customers"})
    assert "Customers" in client.get("/audit/?until=9999-12-31").get_data(as_text=True)
    assert "Customers" in client.get("/audit/?since=0001-01-01&until=9999-12-31").get_data(as_text=True)
    assert "No event matches" in client.get("/audit/?since=9999-12-31").get_data(as_text=True)
