"""Mail access protocols, connection security modes, their default ports, and ways to log in.

Security modes follow RFC 8314: implicit TLS (the connection is TLS from the
first byte, the preferred mode, section 3) or STARTTLS (a plaintext connection
upgraded before any credential is sent: IMAP STARTTLS, RFC 3501 section 6.2.1;
POP3 STLS, RFC 2595 section 4).
"""

IMAP = "IMAP"
POP3 = "POP3"
PROTOCOLS = (IMAP, POP3)

IMPLICIT_TLS = "ssl_tls"
STARTTLS = "starttls"
# No TLS at all: the password crosses the network readable. Offered only where the operator allows it.
PLAINTEXT = "none"
SECURITY_LABELS = {IMPLICIT_TLS: "SSL/TLS", STARTTLS: "STARTTLS", PLAINTEXT: "None (insecure)"}

# IANA service ports: imaps 993 and pop3s 995 (RFC 8314 section 7.2), imap 143 and pop3 110.
DEFAULT_PORTS = {
    (IMAP, IMPLICIT_TLS): 993,
    (IMAP, STARTTLS): 143,
    (POP3, IMPLICIT_TLS): 995,
    (POP3, STARTTLS): 110,
    (IMAP, PLAINTEXT): 143,
    (POP3, PLAINTEXT): 110,
}

PASSWORD = "password"
# OAuth2 client-credentials grant (RFC 6749 section 4.4), then SASL XOAUTH2 or OAUTHBEARER (RFC 7628).
OAUTH2 = "oauth2_client_credentials"
# OAuth2 sign-in: a person signed in once (authorization code with PKCE, RFC 6749 section 4.1, RFC 7636); each
# login gets an access token with the refresh-token grant (RFC 6749 section 6), then SASL as above.
OAUTH2_SIGN_IN = "oauth2_sign_in"
AUTHENTICATION_LABELS = {PASSWORD: "Password", OAUTH2: "OAuth2 client credentials", OAUTH2_SIGN_IN: "OAuth2 sign-in"}
# The logins that log in with a bearer token from a token endpoint.
TOKEN_LOGINS = (OAUTH2, OAUTH2_SIGN_IN)

# POP3 has one mailbox per login; the folder of a POP3 credential is always this.
POP3_FOLDER = "INBOX"


def default_port(protocol, security):
    """Return the standard TCP port for `protocol` under `security` (e.g. 993 for IMAP over SSL/TLS)."""
    return DEFAULT_PORTS[(protocol, security)]
