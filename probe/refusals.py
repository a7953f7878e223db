"""Why a server refused a login: a wrong password, or something else that must not be blamed on it.

A response code, where the server sends one, says it: RFC 5530 for IMAP
(``[AUTHENTICATIONFAILED]``, ``[PRIVACYREQUIRED]``, ``[UNAVAILABLE]`` ...),
RFC 2449 and RFC 3206 for POP3 (``[AUTH]``, ``[SYS/TEMP]``, ``[IN-USE]``,
``[LOGIN-DELAY]``). Otherwise, on a connection without TLS, what the server
announced (IMAP ``LOGINDISABLED``, RFC 3501 section 6.2.3, or a capability
such as ``XTLSREQUIRED``; a POP3 ``CAPA`` without ``USER``, RFC 2449 section
6.3 and RFC 2595 section 4) and the words of its answer ("TLS required",
"only available under a layer", "Command disabled", "Incorrect state") say
that it wants TLS before a password. Only what is left is a wrong password.
"""

import re

from .causes import (
    PASSWORD_EXPIRED_HINT,
    PRIVACY_REFUSED_AFTER_SENDING,
    PRIVACY_REFUSED_ALTHOUGH_ENCRYPTED,
    REFUSED_ALTHOUGH_ENCRYPTED,
    Failure,
)

# Response codes (upper case) and what they mean for a refused login.
PRIVACY_CODES = frozenset({"PRIVACYREQUIRED"})
# A problem on the server's side, most often passing: RFC 5530 section 3, RFC 3206 section 4, RFC 2449 section 8.1.
SERVER_CODES = frozenset({"UNAVAILABLE", "SERVERBUG", "LIMIT", "INUSE", "SYS/TEMP", "SYS/PERM", "IN-USE",
                          "LOGIN-DELAY"})
# The login is right but may not act as this user (RFC 5530): the username, not the password.
AUTHORIZATION_CODES = frozenset({"AUTHORIZATIONFAILED"})
EXPIRED_CODES = frozenset({"EXPIRED"})

_RESPONSE_CODE = re.compile(r"^\s*(?:NO|BAD|-ERR)?\s*\[([A-Za-z0-9/._-]+)", re.IGNORECASE)
# Words of an answer that asks for TLS first.
_TLS_WORDS = re.compile(
    r"\b(?:tls|ssl|starttls|stls|encrypt\w*|unencrypted|privacy|plain\s?text|clear\s?text|security\s+layer"
    r"|under\s+a\s+layer|non-?secure|insecure|secure\s+(?:connection|channel|transport|session))\b",
    re.IGNORECASE,
)
# Words of an answer that refuses the command itself, not the credentials it carried.
_COMMAND_WORDS = re.compile(
    r"\b(?:command\s+(?:is\s+)?(?:disabled|not\s+(?:allowed|permitted|available))|incorrect\s+state"
    r"|only\s+(?:available|allowed|permitted)\s+(?:under|after|over|with|in|on)\b"
    r"|not\s+(?:allowed|permitted|available)\s+(?:in\s+this\s+state|yet|here|now))",
    re.IGNORECASE,
)
# Capability names that announce a login needs TLS first (LOGINDISABLED, XTLSREQUIRED, X-REQUIRE-SSL ...).
_TLS_REQUIRED_CAPABILITY = re.compile(r"LOGINDISABLED|(?:TLS|SSL|PRIVACY).*REQ|REQ.*(?:TLS|SSL)", re.IGNORECASE)


def response_code(reply):
    """The response code at the start of a status reply, in upper case, or None.

    ``"NO [AUTHENTICATIONFAILED] Authentication failed."`` gives ``"AUTHENTICATIONFAILED"``,
    ``"-ERR [SYS/TEMP] try later"`` gives ``"SYS/TEMP"``.
    """
    match = _RESPONSE_CODE.match(reply)
    return match.group(1).upper() if match else None


def tls_required_capability(capabilities):
    """The first of `capabilities` (names, str or bytes) announcing that a login needs TLS, or None."""
    for name in sorted(capabilities):
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        if _TLS_REQUIRED_CAPABILITY.search(text):
            return text
    return None


def plaintext_refused(encrypted, sent, reply="", reason=""):
    """The ``plaintext_refused`` Failure, blaming Security, worded for whether the connection was
    `encrypted` and whether the secret was `sent` before the server refused."""
    message, hint = {
        (False, False): (None, None),
        (False, True): PRIVACY_REFUSED_AFTER_SENDING,
        (True, False): REFUSED_ALTHOUGH_ENCRYPTED,
        (True, True): PRIVACY_REFUSED_ALTHOUGH_ENCRYPTED,
    }[(encrypted, sent)]
    return Failure("plaintext_refused", reply=reply, field="security", reason=reason, message=message, hint=hint)


def login_refused(reply, *, encrypted, sent, oauth, capabilities=()):
    """The Failure for a login the server refused (IMAP ``NO``, POP3 ``-ERR``) with `reply`.

    `encrypted` says whether the connection was TLS, `sent` whether the secret
    had gone out (a POP3 ``USER`` refused before ``PASS`` had not), `oauth`
    whether it was a bearer token (the client secret was good, since the token
    came: the mailbox login is blamed), `capabilities` what the server
    announced. Returns ``plaintext_refused``, ``server_unavailable``,
    ``auth_mechanism_unavailable`` or ``auth_failed``.
    """
    code = response_code(reply)
    if code in PRIVACY_CODES:
        return plaintext_refused(encrypted, sent, reply, reason=code)
    if code in SERVER_CODES:
        return Failure("server_unavailable", reply=reply, reason=f"it answered {code}")
    if not encrypted:
        announced = tls_required_capability(capabilities)
        if announced or _TLS_WORDS.search(reply) or _COMMAND_WORDS.search(reply):
            reason = f"it announced {announced}" if announced else "it wants TLS before a login"
            return plaintext_refused(encrypted, sent, reply, reason=reason)
    elif _COMMAND_WORDS.search(reply) and code is None:
        return Failure("auth_mechanism_unavailable", reply=reply, reason="it refused the login command itself")
    if code in AUTHORIZATION_CODES:
        return Failure("auth_failed", reply=reply, field="username")
    hint = PASSWORD_EXPIRED_HINT if code in EXPIRED_CODES else None
    return Failure("auth_failed", reply=reply, field="username" if oauth else None, hint=hint)
