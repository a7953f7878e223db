"""What Mailkeep knows about common mail providers: their servers, and what users trip on.

The servers are each provider's documented IMAP and POP3 endpoints, all on
implicit TLS (RFC 8314). The notes are the facts that turn a puzzling
"authentication failed" into a fix: app passwords, OAuth2-only access,
settings switches. Looked up by the domain of a username or by a server host.
"""

from dataclasses import dataclass, field

from probe import protocols


@dataclass(frozen=True)
class Provider:
    """A provider: `servers` maps protocol to (host, port, security); `auth_note` explains login trouble;
    `login` is the way to log in it accepts for mail programs (a key of protocols.AUTHENTICATION_LABELS),
    with `oauth2_scope` the scope its OAuth2 tokens need."""

    name: str
    domains: tuple
    servers: dict
    auth_note: str
    hosts: tuple = field(default=())
    login: str = protocols.PASSWORD
    oauth2_scope: str = ""

    def server(self, protocol):
        """(host, port, security) for `protocol`, or None when the provider does not offer it."""
        return self.servers.get(protocol)

    def suggestion(self, protocol):
        """The form values to fill in for `protocol` when a user takes this provider's settings: host, port
        and security, and for a provider that accepts only OAuth2 that login and its scope; None when the
        provider does not offer `protocol`."""
        server = self.server(protocol)
        if server is None:
            return None
        values = {"host": server[0], "port": server[1], "security": server[2]}
        if self.login == protocols.OAUTH2:
            values.update(auth=protocols.OAUTH2, scope=self.oauth2_scope)
        return values

    def serves(self, host):
        """True when `host` is one of this provider's mail servers."""
        host = host.lower().rstrip(".")
        return host in self.hosts or any(server[0] == host for server in self.servers.values())


def _tls(host, protocol):
    return (host, protocols.default_port(protocol, protocols.IMPLICIT_TLS), protocols.IMPLICIT_TLS)


def _both(imap_host, pop3_host):
    return {protocols.IMAP: _tls(imap_host, protocols.IMAP), protocols.POP3: _tls(pop3_host, protocols.POP3)}


PROVIDERS = (
    Provider(
        "Gmail", ("gmail.com", "googlemail.com"), _both("imap.gmail.com", "pop.gmail.com"),
        "Gmail accepts a password only as an App Password, which needs 2-Step Verification "
        "(Google Account > Security > App passwords); the account password itself is refused.",
    ),
    Provider(
        "Outlook / Office 365", ("outlook.com", "hotmail.com", "live.com", "msn.com", "office365.com"),
        _both("outlook.office365.com", "outlook.office365.com"),
        "Microsoft has switched off password logins (Basic authentication) for IMAP and POP3 in "
        "Exchange Online and Outlook.com: use OAuth2 sign-in (Sign in with Microsoft, with the OAuth app "
        "an administrator registered), or for a shared mailbox OAuth2 client credentials with an app "
        "registration (type the tenant ID as the token endpoint; scope "
        "https://outlook.office365.com/.default) and grant that app access to the mailbox.",
        hosts=("imap-mail.outlook.com", "pop-mail.outlook.com"),
        login=protocols.OAUTH2, oauth2_scope="https://outlook.office365.com/.default",
    ),
    Provider(
        "Yahoo Mail", ("yahoo.com", "ymail.com", "rocketmail.com"),
        _both("imap.mail.yahoo.com", "pop.mail.yahoo.com"),
        "Yahoo needs an app password for mail programs (Account security > Generate app password).",
    ),
    Provider(
        "iCloud Mail", ("icloud.com", "me.com", "mac.com"),
        {protocols.IMAP: _tls("imap.mail.me.com", protocols.IMAP)},
        "iCloud needs an app-specific password (appleid.apple.com > Sign-In and Security) and the "
        "username is the full iCloud address. iCloud offers no POP3.",
    ),
    Provider(
        "Fastmail", ("fastmail.com", "fastmail.fm"), _both("imap.fastmail.com", "pop.fastmail.com"),
        "Fastmail needs an app password with IMAP or POP access (Settings > Privacy & Security > App passwords).",
    ),
    Provider(
        "Zoho Mail", ("zoho.com", "zohomail.com"), _both("imap.zoho.com", "pop.zoho.com"),
        "Zoho needs IMAP or POP access switched on (Settings > Mail Accounts) and, with two-factor "
        "authentication, an application-specific password. Accounts in the EU use imap.zoho.eu.",
        hosts=("imap.zoho.eu", "pop.zoho.eu", "imappro.zoho.com"),
    ),
    Provider(
        "GMX", ("gmx.net", "gmx.de", "gmx.at", "gmx.ch"), _both("imap.gmx.net", "pop.gmx.net"),
        "GMX needs POP3/IMAP access switched on in its web mail settings first.",
    ),
    Provider(
        "GMX (international)", ("gmx.com",), _both("imap.gmx.com", "pop.gmx.com"),
        "GMX needs POP3/IMAP access switched on in its web mail settings first.",
    ),
    Provider(
        "AOL Mail", ("aol.com",), _both("imap.aol.com", "pop.aol.com"),
        "AOL needs an app password for mail programs (Account security > Generate app password).",
    ),
    Provider(
        "Yandex Mail", ("yandex.com", "yandex.ru", "ya.ru"), _both("imap.yandex.com", "pop.yandex.com"),
        "Yandex needs mail-program access switched on (Mail settings > Email clients) and an app password.",
    ),
)


def for_username(username):
    """The provider of a username's domain (``alice@gmail.com`` gives Gmail), or None."""
    domain = username.rpartition("@")[2].lower().rstrip(".")
    return next((provider for provider in PROVIDERS if domain in provider.domains), None)


def for_host(host):
    """The provider that runs a mail server host (``imap.gmail.com`` gives Gmail), or None."""
    return next((provider for provider in PROVIDERS if provider.serves(host)), None)


# Exchange Online takes an app-only token only from an app it knows and has let into the mailbox.
EXCHANGE_APP_ONLY_NOTE = (
    "Exchange Online took the app's token but not the login: register the app's service principal in Exchange "
    "Online PowerShell (New-ServicePrincipal) and give it access to this mailbox (Add-MailboxPermission "
    "-AccessRights FullAccess), as Microsoft's steps show: "
    "https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/"
    "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth"
)


def advice(settings, code):
    """Extra words for a connection test's failure (probe.Prober's `advice`): for an ``auth_failed`` of a
    password login at a known provider, what that provider requires ("Gmail: ..."); for one of OAuth2
    client credentials at Microsoft, that Exchange Online must know the app and let it into the mailbox;
    else None."""
    provider = for_host(settings.host) or for_username(settings.username)
    if code == "auth_failed" and provider and settings.auth == protocols.PASSWORD:
        return f"{provider.name}: {provider.auth_note}"
    if code == "auth_failed" and provider and provider.login == protocols.OAUTH2 and settings.auth == protocols.OAUTH2:
        return EXCHANGE_APP_ONLY_NOTE
    return None
