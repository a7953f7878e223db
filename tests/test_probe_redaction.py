"""Secrets never come back out of a server's words: probe's one Redactor takes every form of every secret out
of the whole text before anything is cut, and hostile servers that echo them cannot get them shown."""

import base64
import json
import re
from urllib.parse import quote, quote_plus

import pytest

import probe
from probe import protocols
from probe.redaction import LONGEST_TEXT, MARK, Redactor, redact
from servers import (
    ImapScript,
    SocketServer,
    echo_secrets,
    http_answer,
    leaked_runs,
    local,
    run,
    shown_text,
)
from testdata import CANARY, CLIENT_ID, CLIENT_SECRET, MAILBOX_USER

# A password with what escaping, quoting and URL-encoding change: a space, quotes, a backslash, / + and %.
HOSTILE_PASSWORD = 'Zq7 "xv\\W9/kP3+jy8%'


def test_redact_replaces_every_secret():
    assert redact(f"a {CANARY} b {CLIENT_SECRET} c", (CANARY, None, "")) == "a •••••• b client-•••••• c"


def test_secrets_echoed_quoted_or_escaped_are_redacted_too():
    secret = 'quo"te-secret\\2'
    echoed = f'you said "{secret.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}" and {secret!r}'
    assert secret.replace("\\", "") not in redact(echoed, (secret,)).replace("\\", "")
    assert redact("Token endpoint", ("p",)) == "Token end••••••oint"  # server text only: callers never pass ours


QUOTED = HOSTILE_PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
FORMS = {
    "as typed": HOSTILE_PASSWORD,
    "IMAP-quoted": QUOTED,
    "repr": repr(HOSTILE_PASSWORD),
    "bytes repr": repr(HOSTILE_PASSWORD.encode()),
    "quoted, then repr": repr(QUOTED),
    "quoted, then bytes repr": repr(QUOTED.encode()),
    "JSON": json.dumps(HOSTILE_PASSWORD),
    "backslash before every sign": re.escape(HOSTILE_PASSWORD),
    "URL-encoded": quote(HOSTILE_PASSWORD, safe=""),
    "URL-encoded, lower-case": re.sub("%..", lambda escape: escape.group().lower(), quote(HOSTILE_PASSWORD, safe="")),
    "form-encoded": quote_plus(HOSTILE_PASSWORD),
    "base64": base64.b64encode(HOSTILE_PASSWORD.encode()).decode(),
    "base64 after one byte": base64.b64encode(b"L" + HOSTILE_PASSWORD.encode()).decode(),
    "base64 after two bytes": base64.urlsafe_b64encode(b"LO" + HOSTILE_PASSWORD.encode()).decode(),
    "hex": HOSTILE_PASSWORD.encode().hex(),
    "cut short by the server": HOSTILE_PASSWORD[:12] + "...",
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_every_form_of_a_secret_is_taken_out(form):
    cleaned = Redactor([HOSTILE_PASSWORD]).clean(f"NO you said {form} (that is wrong)")
    assert leaked_runs(cleaned, HOSTILE_PASSWORD) == [], cleaned
    assert cleaned.startswith("NO you said ") and cleaned.endswith(" (that is wrong)")


def test_non_ascii_secrets_are_taken_out_in_their_escapes():
    secret = "pässwörd-Zq7"
    for form in (repr(secret.encode()), json.dumps(secret), quote(secret), secret.encode("unicode_escape").decode()):
        assert "Zq7" not in Redactor([secret]).clean(f"you said {form}"), form


def test_http_basic_credentials_are_taken_out():
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    cleaned = Redactor([CLIENT_SECRET], basic_credentials=(CLIENT_ID, CLIENT_SECRET)).clean(f"got Basic {basic}")
    assert cleaned == f"got Basic {MARK}"


def test_the_whole_text_is_redacted_before_it_is_cut():
    text = "x" * 290 + HOSTILE_PASSWORD + "y" * 100
    cleaned = Redactor([HOSTILE_PASSWORD]).clean(text, limit=300)
    assert len(cleaned) == 300 and cleaned.endswith("…")
    assert leaked_runs(cleaned, HOSTILE_PASSWORD) == []


def test_a_text_too_long_to_redact_whole_drops_what_could_hide_a_secret():
    text = "x" * (LONGEST_TEXT - 10) + HOSTILE_PASSWORD  # the first cut splits the password
    cleaned = Redactor([HOSTILE_PASSWORD]).clean(text)
    assert leaked_runs(cleaned, HOSTILE_PASSWORD) == [] and cleaned.endswith("…")


# Hostile servers: a reply that echoes the password, in the forms a server might write it.

def _echo(make):
    """An ImapScript that answers LOGIN with what `make(command line)` gives (bytes, a whole reply)."""
    return ImapScript(answers={"LOGIN": lambda tag, command: make(tag, command)})


HOSTILE_ECHOES = {
    "padding, then the command": lambda tag, command: b"* BYE " + b"x" * 140 + b" you said " + command + b"\r\n",
    "escaped": lambda tag, command: tag + b" NO you said " + re.escape(HOSTILE_PASSWORD).encode() + b"\r\n",
    "URL-encoded": lambda tag, command: tag + b" NO you said " + quote(HOSTILE_PASSWORD).encode() + b"\r\n",
    "base64": lambda tag, command: (tag + b" NO you said " +
                                    base64.b64encode(b"LOGIN: " + HOSTILE_PASSWORD.encode()) + b"\r\n"),
    "not IMAP at all (a bytes repr of the quoted command)": lambda tag, command: b"garbage " + command + b"\r\n",
}


@pytest.mark.parametrize("make", HOSTILE_ECHOES.values(), ids=HOSTILE_ECHOES.keys())
def test_a_server_echoing_the_password_gets_no_part_of_it_shown(certificates, make):
    ca_file, cert, key = certificates
    with SocketServer(_echo(make), tls=(cert, key)) as server:
        result = run(local(server.port, password=HOSTILE_PASSWORD), ca_file)
    assert not result.ok and result.failed_step.name == "authenticate"
    assert leaked_runs(shown_text(result), HOSTILE_PASSWORD) == [], shown_text(result)


def test_a_server_echoing_secrets_has_them_redacted_everywhere(certificates):
    ca_file, cert, key = certificates
    with SocketServer(echo_secrets, tls=(cert, key)) as server:
        result = run(local(server.port), ca_file)
    # The BYE ends the session (a protocol error); its text, password and all, is in the message.
    assert result.cause.code == "protocol_error" and "you said LOGIN" in result.cause.message
    assert "••••••" in result.cause.message
    assert CANARY not in str(result.as_dict())


def test_a_token_endpoint_echoing_the_basic_credentials_gets_them_redacted():
    def echo_authorization(request):
        header = re.search(rb"Authorization: (.*?)\r\n", request).group(1)
        return json.dumps({"error": "invalid_client", "error_description": f"you sent {header.decode()}"}).encode()

    with SocketServer(http_answer(b"401 Unauthorized", echo_authorization)) as server:
        settings = probe.Settings("IMAP", "127.0.0.1", 993, "ssl_tls", MAILBOX_USER, auth=protocols.OAUTH2,
                                  client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                  token_url=f"http://127.0.0.1:{server.port}/token")
        result = run(settings)
    assert result.cause.code == "token_request_failed" and "you sent Basic" in result.cause.server_reply
    assert leaked_runs(shown_text(result), CANARY) == []
