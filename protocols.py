"""Mail access protocols, connection security modes and their default ports.

Security modes follow RFC 8314: implicit TLS (the connection is TLS from the
first byte, the preferred mode, section 3) or STARTTLS (a plaintext connection
upgraded before any credential is sent, RFC 3501 section 6.2.1 for IMAP).
"""

IMAP = "IMAP"
PROTOCOLS = (IMAP,)

IMPLICIT_TLS = "ssl_tls"
STARTTLS = "starttls"
SECURITY_LABELS = {IMPLICIT_TLS: "SSL/TLS", STARTTLS: "STARTTLS"}

# IANA service ports: imaps 993 (RFC 8314 section 7.2), imap 143 (RFC 3501).
DEFAULT_PORTS = {
    (IMAP, IMPLICIT_TLS): 993,
    (IMAP, STARTTLS): 143,
}


def default_port(protocol, security):
    """Return the standard TCP port for `protocol` under `security` (e.g. 993 for IMAP over SSL/TLS)."""
    return DEFAULT_PORTS[(protocol, security)]
