"""Secrets at rest: AES-256-GCM with associated data, under a ring of keys.

A key is 32 random bytes written as URL-safe base64 (44 characters). The ring's
first key encrypts; every key in the ring decrypts, so a new key can be put in
front of the old one and the old ciphertexts stay readable until they are
re-encrypted. Each ciphertext names the key it was made with by a short
fingerprint, and is bound to a context string (the row and field it belongs to)
as AES-GCM associated data, so a ciphertext copied elsewhere does not decrypt.

Follows the `cryptography` documentation for
``cryptography.hazmat.primitives.ciphers.aead.AESGCM`` (96-bit random nonces).
"""

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
TOKEN_VERSION = "mk1"


class InvalidKeyError(ValueError):
    """A configured encryption key is not 32 bytes of URL-safe base64."""


class UndecryptableSecret(Exception):
    """A stored secret cannot be read with the keys in the ring.

    Raised when the key that made it is missing, the ciphertext was altered, or
    it belongs to another row or field.
    """


def generate_key():
    """Return a new random key as URL-safe base64 text (44 characters)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


def parse_keys(text):
    """Turn comma-separated URL-safe base64 keys into a list of 32-byte keys.

    Raises InvalidKeyError naming the position of the first malformed key, never
    its value, so the message is safe to print.
    """
    keys = []
    for position, item in enumerate((part.strip() for part in text.split(",")), start=1):
        try:
            key = base64.urlsafe_b64decode(item.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise InvalidKeyError(
                f"encryption key {position} is not a {KEY_BYTES}-byte URL-safe base64 key "
                "(generate one with: python -c \"import encryption; print(encryption.generate_key())\")"
            )
        keys.append(key)
    return keys


def fingerprint(key):
    """Return a short public identifier of a key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:16]


def key_id(token):
    """The fingerprint of the key that made the ciphertext `token`, as its text says; None if malformed."""
    parts = token.split("$")
    return parts[1] if len(parts) == 3 and parts[0] == TOKEN_VERSION else None


class KeyRing:
    """Encrypts with the first key, decrypts with whichever key made the ciphertext.

    Ciphertexts are text: ``mk1$<key fingerprint>$<base64(nonce || ciphertext || tag)>``.
    """

    def __init__(self, keys):
        """`keys` is a non-empty list of 32-byte keys, the encrypting one first; raises InvalidKeyError if empty."""
        if not keys:
            raise InvalidKeyError("at least one encryption key is needed")
        self._ciphers = {fingerprint(key): AESGCM(key) for key in keys}
        self.active_fingerprint = fingerprint(keys[0])
        self.fingerprints = list(self._ciphers)

    def encrypt(self, plaintext, context):
        """Encrypt text, binding it to `context` (e.g. ``"credential:7:password"``)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active_fingerprint].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{TOKEN_VERSION}${self.active_fingerprint}${body}"

    def is_current(self, token):
        """True when `token` was made with the active (first) key, so rotating would not change it."""
        return key_id(token) == self.active_fingerprint

    def decrypt(self, token, context):
        """Return the text sealed in `token` for `context`.

        Raises UndecryptableSecret when the token is malformed, its key is not in
        the ring, it was altered, or it was made for another context.
        """
        try:
            version, key_fingerprint, body = token.split("$")
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
        except (ValueError, binascii.Error) as error:
            raise UndecryptableSecret("malformed ciphertext") from error
        cipher = self._ciphers.get(key_fingerprint)
        if version != TOKEN_VERSION or cipher is None:
            raise UndecryptableSecret("no key in the ring made this ciphertext")
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise UndecryptableSecret("ciphertext too short")
        try:
            plaintext = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag as error:
            raise UndecryptableSecret("ciphertext altered or bound to another entry") from error
        return plaintext.decode("utf-8")
