"""The one place where secrets are taken out of what a server said, before anything is cut or shown.

A hostile or careless server may echo a secret back: as typed, quoted and
escaped for IMAP (RFC 3501 section 4.3), escaped by a Python error message
(``repr`` of text or of bytes, possibly of the quoted form), backslash-escaped
some other way, URL-encoded (RFC 3986 section 2.1), in base64 (RFC 4648
sections 4 and 5) at any alignment inside a longer base64 text, in hex, as
HTTP Basic credentials (RFC 7617 section 2), or cut short after
``MIN_FRAGMENT`` characters or more. ``Redactor.clean`` replaces every such
form with ``MARK`` in the whole text first and only then cuts it to length,
so a cut can never leave part of a secret behind.
"""

import base64
import json
import re
from urllib.parse import quote, quote_plus

MARK = "••••••"
ELLIPSIS = "…"
# A run of this many characters of a secret, or more, is masked wherever it appears (a server that cut
# its echo short); shorter runs are too likely to be ordinary words ("client" in "invalid_client").
MIN_FRAGMENT = 8
# Shorter base64 or hex renderings of a secret would match ordinary text by chance.
MIN_ENCODED = 4
# Secrets up to this many characters are also matched escaped character by character, in any mixture of
# escapes (the pattern costs about a millisecond to build); longer ones (bearer tokens) in the usual forms.
ESCAPED_PATTERN_MAX = 128
# Redacting is linear in the text; a longer text is cut to this first. What lies past this point is never
# shown (results show a few hundred characters), and the end of the cut-off text is dropped as well.
LONGEST_TEXT = 64 * 1024
# The longest rendering of one character of a secret: its UTF-8 bytes as ``\\xNN`` escapes, doubled.
LONGEST_CHARACTER_FORM = 4 * len(r"\\xNN")

_CONTROL_ESCAPES = {"\t": "t", "\n": "n", "\r": "r"}
_ESCAPE_SIGNS = ("\\", "%", "+")


class Redactor:
    """Takes `secrets` (strings; empty ones and None are ignored) out of server text.

    `carriers` are strings that carried a secret over the wire along with
    words that are not secret (a SASL response holds the username too): they
    are taken out whole, in every form, but unlike `secrets` a run of their
    characters is not masked on its own. `basic_credentials` is an optional
    (client_id, client_secret) pair whose HTTP Basic forms
    (``base64(id:secret)``, raw and form-urlencoded, RFC 6749 section 2.3.1)
    are taken out too. Build one per connection test, once its secrets are
    known; it keeps no state between calls of ``clean``.
    """

    def __init__(self, secrets, carriers=(), basic_credentials=None):
        secrets = {secret for secret in secrets if secret}
        self._secrets = sorted(secrets | {carrier for carrier in carriers if carrier}, key=len, reverse=True)
        literals = set()
        for secret in self._secrets:
            literals |= _literal_forms(secret)
        if basic_credentials and all(basic_credentials):
            literals |= _basic_forms(*basic_credentials)
        # Longest first: where forms overlap (a SASL string holding the password), the whole goes.
        self._literals = sorted(literals, key=len, reverse=True)
        self._fragments = sorted({secret[start:start + MIN_FRAGMENT] for secret in secrets
                                  for start in range(len(secret) - MIN_FRAGMENT + 1)})
        self._escaped = None  # compiled on the first text that holds an escape sign
        self._longest_form = max([len(literal) for literal in self._literals] +
                                 [LONGEST_CHARACTER_FORM * len(secret) for secret in self._secrets], default=0)

    def clean(self, text, limit=None):
        """`text` with every form of every secret replaced by MARK, then cut to `limit` characters
        (ending in an ellipsis when cut; None keeps it whole). None or "" gives ""."""
        if not text:
            return ""
        cut_short = len(text) > LONGEST_TEXT
        if cut_short:
            text = text[:LONGEST_TEXT]
        for literal in self._literals:
            text = text.replace(literal, MARK)
        if any(sign in text for sign in _ESCAPE_SIGNS):
            text = self._escaped_pattern().sub(MARK, text)
        text = _mask_fragments(text, self._fragments)
        if cut_short:
            # The cut may have split a secret's rendering, which then matched nothing: drop what could be it.
            text = text[:max(len(text) - self._longest_form, 0)] + ELLIPSIS
        if limit is not None and len(text) > limit:
            text = text[:limit - len(ELLIPSIS)] + ELLIPSIS
        return text

    def _escaped_pattern(self):
        if self._escaped is None:
            patterns = [_escaped_pattern(secret) for secret in self._secrets if len(secret) <= ESCAPED_PATTERN_MAX]
            self._escaped = re.compile("|".join(patterns) or r"(?!)")
        return self._escaped


def redact(text, secrets):
    """`text` with every form of each of `secrets` replaced by MARK (see Redactor), not cut."""
    return Redactor(secrets).clean(text)


def _literal_forms(secret):
    """The usual renderings of `secret`: as typed, IMAP-quoted, repr'd (of text or UTF-8 bytes, plain or
    quoted first), JSON, regex- or URL-escaped, in hex, and its base64 (standard and URL-safe) at each
    of the three alignments it can have inside a longer base64 text."""
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    forms = {secret, quoted, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             re.escape(secret), quote(secret), quote(secret, safe=""), quote_plus(secret)}
    for text in (secret, quoted):
        forms |= {repr(text)[1:-1], repr(text.encode("utf-8"))[2:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda escape: escape.group().lower(), form) for form in forms}
    raw = secret.encode("utf-8")
    forms |= {raw.hex(), raw.hex().upper()}
    for shift in range(3):
        padded = b"\0" * shift + raw
        # Only the characters whose six bits all come from the secret: the rest depend on its neighbours.
        first, last = -(-8 * shift // 6), 8 * len(padded) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(padded).decode()[first:last])
    return {form for form in forms if form == secret or len(form) >= MIN_ENCODED}


def _basic_forms(client_id, client_secret):
    """``base64(client_id:client_secret)`` as HTTP Basic sends it, raw and form-urlencoded, in UTF-8 and Latin-1."""
    forms = set()
    for pair in (f"{client_id}:{client_secret}", f"{quote_plus(client_id)}:{quote_plus(client_secret)}"):
        for encoding in ("utf-8", "latin-1"):
            try:
                forms.add(base64.b64encode(pair.encode(encoding)).decode())
            except UnicodeEncodeError:
                continue
    return forms


def _mask_fragments(text, fragments):
    """`text` with every run of MIN_FRAGMENT or more characters of a secret replaced by MARK."""
    spans = []
    for fragment in fragments:
        start = text.find(fragment)
        while start != -1:
            spans.append((start, start + len(fragment)))
            start = text.find(fragment, start + 1)
    if not spans:
        return text
    pieces, previous = [], 0
    for start, end in _merged(spans):
        pieces += [text[previous:start], MARK]
        previous = end
    return "".join(pieces) + text[previous:]


def _merged(spans):
    merged = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _escaped_pattern(secret):
    """A regular expression for `secret` escaped character by character, in any mixture: after
    backslashes (IMAP quoting, JSON, quoted then repr'd), as ``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN`` or
    ``\\t``-style escapes, as UTF-8 bytes in ``\\xNN`` (a bytes repr), or URL-encoded (``%NN``, ``+``)."""
    return "".join(f"(?:{'|'.join(_character_forms(character))})" for character in secret)


def _character_forms(character):
    utf8 = character.encode("utf-8")
    forms = [r"\\{1,4}"] if character == "\\" else [r"\\{0,3}" + re.escape(character)]
    forms.append("".join("%" + _hex(byte, 2) for byte in utf8))
    if character == " ":
        forms.append(r"\+")
    if not character.isascii() or not character.isprintable():
        code = ord(character)
        if code < 0x100:
            forms.append(r"\\{1,2}x" + _hex(code, 2))
        if code < 0x10000:
            forms.append(r"\\{1,2}u" + _hex(code, 4))
        forms.append(r"\\{1,2}U" + _hex(code, 8))
        forms.append("".join(r"\\{1,2}x" + _hex(byte, 2) for byte in utf8))
        if character in _CONTROL_ESCAPES:
            forms.append(r"\\{1,2}" + _CONTROL_ESCAPES[character])
    return forms


def _hex(number, width):
    """`number` as `width` hex digits, matching either case."""
    return "".join(f"[{digit}{digit.upper()}]" if digit.isalpha() else digit for digit in f"{number:0{width}x}")
