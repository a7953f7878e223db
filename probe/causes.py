"""The causes a connection test can name: stable codes, the field to blame, and the words users read.

Hints never suggest turning certificate verification off; they point at the
CA file or the right host name instead.
"""

from . import protocols
import providers

from .result import REPLY_LENGTH, Cause

CA_FILE_HINT = (
    "If the server uses a certificate from your organisation's own certificate authority, "
    "give Mailkeep that authority's certificate with MAILKEEP_CA_FILE. Verification stays on."
)

# code: (field to blame, message, hint); {host}, {port}, {folder}, {reason} ... come from the failure.
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
        "can allow more with MAILKEEP_ALLOWED_NETWORKS and MAILKEEP_ALLOWED_PORTS.",
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
        "Choose SSL/TLS (usually port 993) if the server supports it, or ask its administrator to enable TLS.",
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


class Failure(Exception):
    """Raised inside a step to end the test with the cause `code`.

    `reply` is the server's own words, if any; `field` and `hint` replace the
    catalogue's; `reason` (a short technical phrase) and other keyword arguments
    fill the message.
    """

    def __init__(self, code, reply="", field=None, hint=None, reason="", **context):
        super().__init__(code)
        self.code = code
        self.reply = reply
        self.field = field
        self.hint = hint
        self.context = dict(context, reason=f" ({reason})" if reason else "")


def describe(failure, settings, secrets, **context):
    """Turn a Failure into the Cause users read.

    `context` fills message fields the failure itself does not (``deadline``,
    ``step``). What came from the server (the reply, the failure's own
    context such as ``reason``) has `secrets` redacted; Mailkeep's own words
    and the user's settings are left as they are. An ``auth_failed`` of a
    password login at a known provider gets that provider's advice added.
    """
    field, message, hint = CATALOGUE[failure.code]
    heard = {name: redact(value, secrets) if isinstance(value, str) else value
             for name, value in failure.context.items()}
    context = {
        "host": settings.host, "port": settings.port, "folder": settings.folder, "protocol": settings.protocol,
        **context, **heard,
    }
    hint = redact(failure.hint, secrets) if failure.hint else hint  # a failure's own hint may quote the server
    provider = providers.for_host(settings.host) or providers.for_username(settings.username)
    if failure.code == "auth_failed" and provider and settings.auth == protocols.PASSWORD:
        hint = f"{hint} {provider.name}: {provider.auth_note}"
    return Cause(
        code=failure.code,
        field=failure.field or field,
        message=message.format(**context),
        hint=hint,
        server_reply=redact(failure.reply, secrets)[:REPLY_LENGTH],
    )


def redact(text, secrets):
    """`text` (from a server) with each of `secrets` replaced by dots, as typed and as it is written
    quoted in IMAP (RFC 3501 section 4.3) or escaped in a Python error message.

    Servers do not normally echo a secret, but a hostile one could, and what
    they say is shown to users and kept in the database.
    """
    for secret in filter(None, secrets):
        quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
        for form in sorted({secret, quoted, repr(secret)[1:-1]}, key=len, reverse=True):
            text = text.replace(form, "••••••")
    return text


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
