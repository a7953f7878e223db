"""What Mailkeep knows of the identity providers people sign in with for OAuth2 sign-in: their endpoints,
the scopes mail needs, what else their authorization requests need, and how long a refresh token may lie
unused.

Microsoft: the Microsoft identity platform's v2.0 endpoints for a tenant ("Authenticate an IMAP, POP or
SMTP connection using OAuth", learn.microsoft.com; "Microsoft identity platform and OAuth 2.0
authorization code flow"). Mail needs ``https://outlook.office.com/IMAP.AccessAsUser.All`` or
``POP.AccessAsUser.All``, and a refresh token needs ``offline_access``; a refresh token lapses after 90
days unused ("Refresh tokens in the Microsoft identity platform"), and each refresh answers a new one.

Google: "Using OAuth 2.0 for Web Server Applications" (developers.google.com). Mail needs
``https://mail.google.com/``; a refresh token comes only with ``access_type=offline``, and again on a later
sign-in only with ``prompt=consent``; one unused for six months lapses, and every one lapses after 7
days while the Google Cloud project's OAuth consent screen is in "Testing".

A custom provider gives its endpoints (or an OpenID Connect issuer whose discovery document does) and the
scopes its mail servers want. Every sign-in also asks for ``openid email``, so the ID Token names the
account that signed in (OpenID Connect Core 1.0 section 5.4).
"""

from dataclasses import dataclass, field

from probe import protocols

MICROSOFT, GOOGLE, CUSTOM = "microsoft", "google", "custom"
# "organizations": any Microsoft Entra tenant (work and school accounts), not personal accounts.
DEFAULT_TENANT = "organizations"
IDENTITY_SCOPES = ("openid", "email")
MICROSOFT_LOGIN = "https://login.microsoftonline.com"
# Microsoft's delegated mail permissions (Office 365 Exchange Online), by protocol.
MICROSOFT_MAIL_SCOPES = {
    protocols.IMAP: "https://outlook.office.com/IMAP.AccessAsUser.All",
    protocols.POP3: "https://outlook.office.com/POP.AccessAsUser.All",
}
# App-only access (OAuth2 client credentials) to Exchange Online: the preset of the credential form.
MICROSOFT_APP_ONLY_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_APP_ONLY_GUIDE = (
    "https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/"
    "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth"
    "#use-client-credentials-grant-flow-to-authenticate-smtp-imap-and-pop-connections"
)
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True)
class Kind:
    """A kind of identity provider: its `label` ("Microsoft"), fixed endpoints (None: the app's own), the
    extra parameters of its authorization requests, and `idle_days`, after how many days unused its
    refresh tokens lapse (None: unknown)."""

    name: str
    label: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    authorization_params: dict = field(default_factory=dict)
    idle_days: int | None = None
    offline_scope: str = ""


KINDS = {
    MICROSOFT: Kind(
        MICROSOFT, "Microsoft", f"{MICROSOFT_LOGIN}/{{tenant}}/oauth2/v2.0/authorize",
        f"{MICROSOFT_LOGIN}/{{tenant}}/oauth2/v2.0/token", {"prompt": "select_account"}, idle_days=90,
        offline_scope="offline_access",
    ),
    GOOGLE: Kind(
        GOOGLE, "Google", "https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token",
        {"access_type": "offline", "prompt": "consent"}, idle_days=180,
    ),
    CUSTOM: Kind(CUSTOM, "Custom"),
}
KIND_LABELS = {name: kind.label for name, kind in KINDS.items()}


def microsoft_token_endpoint(tenant):
    """The v2.0 token endpoint of a Microsoft Entra `tenant` (an id, a domain, or "organizations")."""
    return KINDS[MICROSOFT].token_endpoint.format(tenant=tenant or DEFAULT_TENANT)


def mail_scopes(kind, protocol, custom_scopes=""):
    """The scopes an access token for `protocol` (IMAP, POP3) needs at a provider of `kind`, space-separated;
    `custom_scopes` are a custom provider's own."""
    if kind == MICROSOFT:
        return MICROSOFT_MAIL_SCOPES[protocol]
    if kind == GOOGLE:
        return GOOGLE_MAIL_SCOPE
    return " ".join(custom_scopes.split())


def sign_in_scopes(kind, protocol, custom_scopes=""):
    """What a sign-in asks for: ``openid email``, the mail scopes, and what a refresh token needs."""
    wanted = [*IDENTITY_SCOPES, *mail_scopes(kind, protocol, custom_scopes).split(), KINDS[kind].offline_scope]
    return " ".join(dict.fromkeys(scope for scope in wanted if scope))


def refresh_scopes(kind, protocol, custom_scopes=""):
    """What each refresh asks for (RFC 6749 section 6: no more than was granted): the mail scopes, and for
    Microsoft ``offline_access`` so a new refresh token comes with every access token."""
    wanted = [*mail_scopes(kind, protocol, custom_scopes).split(), KINDS[kind].offline_scope]
    return " ".join(dict.fromkeys(scope for scope in wanted if scope))
