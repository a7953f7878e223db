"""The provider table: look-ups by username domain and by server host."""

import providers
from probe import protocols


def test_every_provider_the_issue_names_is_known():
    names = {provider.name for provider in providers.PROVIDERS}
    for wanted in ("Gmail", "Outlook / Office 365", "Yahoo Mail", "iCloud Mail", "Fastmail", "Zoho Mail", "GMX",
                   "AOL Mail", "Yandex Mail"):
        assert wanted in names


def test_look_up_by_username_and_by_host():
    gmail = providers.for_username("Someone@GMAIL.com")
    assert gmail.name == "Gmail"
    assert gmail.server(protocols.IMAP) == ("imap.gmail.com", 993, protocols.IMPLICIT_TLS)
    assert gmail.server(protocols.POP3) == ("pop.gmail.com", 995, protocols.IMPLICIT_TLS)
    assert providers.for_host("outlook.office365.com").name == "Outlook / Office 365"
    assert providers.for_host("IMAP.mail.me.com.").name == "iCloud Mail"
    assert providers.for_username("a@icloud.com").server(protocols.POP3) is None
    assert providers.for_username("nobody@example.org") is None and providers.for_host("mail.example.org") is None


def test_the_notes_carry_the_facts_users_trip_on():
    assert "App Password" in providers.for_username("a@gmail.com").auth_note
    assert "OAuth2" in providers.for_username("a@outlook.com").auth_note
    assert "app-specific password" in providers.for_username("a@icloud.com").auth_note


def test_a_provider_that_takes_only_oauth2_suggests_it_with_its_scope():
    outlook = providers.for_username("a@outlook.com").suggestion(protocols.IMAP)
    assert outlook == {"host": "outlook.office365.com", "port": 993, "security": protocols.IMPLICIT_TLS,
                       "auth": protocols.OAUTH2, "scope": "https://outlook.office365.com/.default"}
    gmail = providers.for_username("a@gmail.com").suggestion(protocols.IMAP)
    assert "auth" not in gmail  # a password login stays the user's choice
    assert providers.for_username("a@icloud.com").suggestion(protocols.POP3) is None
