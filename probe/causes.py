"""The causes a connection test can name: stable codes, the field to blame, and the words users read.

Hints never suggest turning certificate verification off; they point at the
CA file or the right host name instead. Where a hint names one of the
operator's settings, it uses the caller's ``SettingNames``; what the caller
knows about providers comes in through an ``advice`` callable. Nothing here
knows the application around it.
"""

from dataclasses import asdict, dataclass

from . import protocols
from .result import REPLY_LENGTH, Cause

# Server text quoted inside a message or hint (a reason, a folder name), after redaction.
REASON_LENGTH = 200


@dataclass(frozen=True)
class SettingNames:
    """What the operator's configuration calls the settings a hint may point at.

    Each is the name as the operator sets it (an environment variable, a
    configuration key); the defaults are plain words for callers without names.
    """

    ca_file: str = "the extra CA file setting"
    allowed_networks: str = "the allowed networks setting"
    allowed_ports: str = "the allowed ports setting"
    allow_insecure: str = "the setting that allows connections without TLS"


CA_FILE_HINT = (
    "If the server uses a certificate from your organisation's own certificate authority, "
    "give Mailkeep that authority's certificate with {ca_file}. Verification stays on."
)

# code: (field to blame, message, hint). Messages and hints are filled from the settings ({host}, {port},
# {folder}, {protocol}), the SettingNames ({ca_file} ...), {tls_port} (the protocol's SSL/TLS port) and
# the failure's own context ({reason} ...).
CATALOGUE = {
    "dns_not_found": (
        "host",
        "The host name {host} was not found{reason}.",
        "Check the Host for typos. Mail servers are often called imap.<your domain>.",
    ),
    "destination_not_allowed": (
        "host",
        "Mailkeep may not connect to {host}:{port}{reason}.",
        "Connection tests go only to public addresses and mail ports (993, 995, 143, 110). An administrator "
        "can allow more with {allowed_networks} and {allowed_ports}.",
    ),
    "connect_refused": (
        "port",
        "{host} refused the connection on port {port}: nothing accepts connections there.",
        "Check the Port. IMAP uses 993 with SSL/TLS and 143 with STARTTLS; POP3 uses 995 and 110.",
    ),
    "connect_timeout": (
        "host",
        "{host} did not answer on port {port}{reason}.",
        "Check the Host and the Port. A firewall may be dropping the connection.",
    ),
    "greeting_timeout": (
        "port",
        "{host}:{port} accepted the connection but never sent a greeting.",
        "This port may belong to another service, or expect SSL/TLS from the first byte. "
        "Check the Port and Security.",
    ),
    "tls_handshake_failed": (
        "security",
        "The TLS handshake with {host}:{port} failed{reason}.",
        "Check that the server speaks TLS on this port and that Security matches it.",
    ),
    "tls_certificate_untrusted": (
        "host",
        "The server's certificate is not signed by an authority Mailkeep trusts{reason}.",
        CA_FILE_HINT,
    ),
    "tls_certificate_expired": (
        "host",
        "The server's certificate has expired{reason}.",
        "The server's administrator must renew the certificate; until then the connection is not safe.",
    ),
    "tls_hostname_mismatch": (
        "host",
        "The server's certificate is not valid for the name {host}{reason}.",
        "Use the host name the certificate was issued for, as your provider documents it.",
    ),
    "starttls_unavailable": (
        "security",
        "{host}:{port} does not offer STARTTLS, so the password was not sent.",
        "Choose SSL/TLS (usually port {tls_port}) if the server supports it, or ask its administrator to "
        "enable TLS.",
    ),
    "plaintext_refused": (
        "security",
        "The password would cross the network unencrypted, and is not sent{reason}.",
        "Choose SSL/TLS or STARTTLS so the password travels encrypted.",
    ),
    "auth_failed": (
        "password",
        "The server rejected the username or password.",
        "Check the Username (often the full email address) and the Password.",
    ),
    "auth_mechanism_unavailable": (
        "password",
        "The server offers no login method Mailkeep can use{reason}.",
        "Ask the server's administrator which login methods are enabled.",
    ),
    "server_unavailable": (
        None,
        "{host}:{port} could not log in because of a problem on the server's side{reason}.",
        "Nothing in these settings is wrong. Try again later; if it lasts, tell the server's administrator.",
    ),
    "folder_not_found": (
        "folder",
        "The folder '{folder}' does not exist on the server.",
        "Folder names must match exactly; some servers are case-sensitive.",
    ),
    "token_request_failed": (
        "token_url",
        "The token endpoint did not give Mailkeep an access token{reason}.",
        "Check the Token endpoint, the Client ID and the Client secret, and that the application "
        "may use the client-credentials grant.",
    ),
    "oauth_consent_required": (
        "refresh_token",
        "The provider no longer accepts this sign-in{reason}.",
        "The person who signed in withdrew their consent, changed their password, had multi-factor "
        "authentication turned on, or the sign-in lapsed unused. Press Sign in again and sign in as that "
        "account: nothing else needs to change.",
    ),
    "oauth_discovery_failed": (
        "issuer",
        "Mailkeep could not read the OpenID Connect configuration of {issuer}{reason}.",
        "Check the Issuer: its discovery document is at <issuer>/.well-known/openid-configuration. Or leave "
        "the Issuer empty and type the authorization and token endpoints.",
    ),
    "protocol_error": (
        "port",
        "{host}:{port} did not answer in {protocol}{reason}.",
        "Check that the Port belongs to the mail service and the Protocol matches it.",
    ),
    "deadline_exceeded": (
        "port",
        "The test did not finish within {deadline:g} seconds; the server stalled at the step '{step}'.",
        "The server is too slow or is not a mail server. Check the Host and Port, or try again later.",
    ),
}

# Words for a cause where the catalogue's general ones would not match what happened.
SILENT_AT_TLS = (
    "{host}:{port} accepted the connection but never answered the TLS handshake.",
    "Nothing on this port answers SSL/TLS or greets like a mail server: it may belong to another service. "
    "Check the Port.",
)
SILENT_AFTER_TLS = (
    "{host}:{port} completed the TLS handshake but never sent a greeting.",
    "The service on this port speaks TLS but not {protocol}. Check the Port and the Protocol.",
)
CLOSED_BEFORE_GREETING = "{host}:{port} accepted the connection, then closed it without a greeting."
GREETING_UNFINISHED = "{host}:{port} began its greeting but did not finish it within {greeting_timeout:g} seconds."
PLAINTEXT_NOT_ALLOWED = (
    "The password would cross the network unencrypted, and is not sent: Mailkeep is not set up to allow "
    "connections without TLS ({allow_insecure})."
)
# plaintext_refused, by whether the connection was encrypted and whether the secret had gone out.
PRIVACY_REFUSED_AFTER_SENDING = (
    "The server accepts the password only over an encrypted connection{reason}.",
    None,
)
REFUSED_ALTHOUGH_ENCRYPTED = (
    "The connection is encrypted, yet the server does not accept a password login on it{reason}, "
    "so the password was not sent.",
    "The server may take passwords only on another port or with other Security. Check the Port and Security, "
    "or ask the server's administrator.",
)
PRIVACY_REFUSED_ALTHOUGH_ENCRYPTED = (
    "The server refused the login as not private enough{reason}, although the connection is encrypted.",
    REFUSED_ALTHOUGH_ENCRYPTED[1],
)
PASSWORD_EXPIRED_HINT = (
    "The server says the password has expired: change it where the provider lets you, then enter the new one here."
)


class Failure(Exception):
    """Raised inside a step to end the test with the cause `code` (a key of CATALOGUE).

    `detail` is Cause.detail (a short stable word narrowing the code, or "").
    `reply` is the server's own words, if any; `field`, `message` and `hint`
    replace the catalogue's, and are Mailkeep's own words, filled like the
    catalogue's. `reason` (a short phrase; a final period is dropped) and other
    keyword arguments fill the message and hint; they may quote the server, so
    they are redacted and cut to REASON_LENGTH characters.
    """

    def __init__(self, code, reply="", field=None, hint=None, reason="", message=None, detail="", **context):
        super().__init__(code)
        self.code = code
        self.detail = detail
        self.reply = reply
        self.field = field
        self.hint = hint
        self.message = message
        self.context = dict(context, reason=reason.strip().rstrip(".").strip())


def describe(failure, settings, redactor, *, advice=None, setting_names=None, **context):
    """Turn a Failure into the Cause users read.

    `redactor` (a ``redaction.Redactor``) cleans everything that came from the
    server (the reply, the failure's context such as ``reason``) before it is
    cut to REPLY_LENGTH or REASON_LENGTH characters; Mailkeep's own words and
    the user's settings are left as they are.
    `context` fills message fields the failure itself does not (``deadline``
    in seconds, ``step``, ``greeting_timeout`` in seconds). `setting_names` (a
    SettingNames) names the operator's settings in hints. `advice`, if given,
    is called as ``advice(settings, code)`` and may return more hint text
    (e.g. what a provider requires), appended to the hint; its errors propagate.
    """
    field, message, hint = CATALOGUE[failure.code]
    heard = {name: redactor.clean(value, REASON_LENGTH) if isinstance(value, str) else value
             for name, value in failure.context.items()}
    heard["reason"] = f" ({heard['reason']})" if heard["reason"] else ""  # messages read "... failed{reason}."
    own_port = protocols.DEFAULT_PORTS.get((settings.protocol, protocols.IMPLICIT_TLS))
    context = {
        "host": settings.host, "port": settings.port, "folder": settings.folder, "protocol": settings.protocol,
        "tls_port": own_port, **asdict(setting_names or SettingNames()), **context, **heard,
    }
    hint = (failure.hint or hint).format(**context)
    extra = advice(settings, failure.code) if advice is not None else None
    if extra:
        hint = f"{hint} {extra}"
    return Cause(
        code=failure.code,
        field=failure.field or field,
        message=(failure.message or message).format(**context),
        hint=hint,
        server_reply=redactor.clean(failure.reply, REPLY_LENGTH),
        detail=failure.detail,
    )


def security_mismatch_hint(settings):
    """A hint when the port is the other security mode's standard port, else None.

    E.g. SSL/TLS on 143: "Port 143 normally uses STARTTLS: choose STARTTLS, or use port 993 with SSL/TLS."
    """
    for security in (protocols.IMPLICIT_TLS, protocols.STARTTLS):  # never suggest going without TLS
        label = protocols.SECURITY_LABELS[security]
        standard_port = protocols.DEFAULT_PORTS.get((settings.protocol, security))
        if security != settings.security and standard_port == settings.port:
            own_port = protocols.default_port(settings.protocol, settings.security)
            own_label = protocols.SECURITY_LABELS[settings.security]
            return (
                f"Port {settings.port} normally uses {label}: choose {label}, "
                f"or use port {own_port} with {own_label}."
            )
    return None
