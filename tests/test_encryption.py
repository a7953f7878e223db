"""Secrets at rest: AES-GCM under a key ring, bound to the row and field they belong to."""

import pytest

from encryption import (
    InvalidKeyError,
    KeyRing,
    UndecryptableSecret,
    generate_key,
    parse_keys,
)

CONTEXT = "credential:1:password"


def ring(*keys):
    return KeyRing(parse_keys(",".join(keys)))


def test_round_trip_and_the_ciphertext_hides_the_text():
    keys = ring(generate_key())
    token = keys.encrypt("s3cret ünïcode", CONTEXT)
    assert "s3cret" not in token
    assert keys.decrypt(token, CONTEXT) == "s3cret ünïcode"
    assert keys.encrypt("same", CONTEXT) != keys.encrypt("same", CONTEXT)  # fresh nonce each time


def test_a_ciphertext_does_not_decrypt_for_another_row_or_field():
    keys = ring(generate_key())
    token = keys.encrypt("s3cret", CONTEXT)
    for other in ("credential:2:password", "credential:1:client_secret"):
        with pytest.raises(UndecryptableSecret):
            keys.decrypt(token, other)


def test_a_tampered_ciphertext_is_refused():
    keys = ring(generate_key())
    token = keys.encrypt("s3cret", CONTEXT)
    body = token.rsplit("$", 1)[1]
    flipped = body[:-6] + ("A" if body[-6] != "A" else "B") + body[-5:]
    with pytest.raises(UndecryptableSecret):
        keys.decrypt(token.replace(body, flipped), CONTEXT)
    key_id = token.split("$")[1]
    for malformed in ("not a ciphertext", f"mk1${key_id}$", f"mk1${key_id}$AAAA", f"mk2${key_id}${body}"):
        with pytest.raises(UndecryptableSecret):
            keys.decrypt(malformed, CONTEXT)


def test_the_first_key_encrypts_and_every_key_decrypts():
    old, new = generate_key(), generate_key()
    token_by_old = ring(old).encrypt("s3cret", CONTEXT)
    both = ring(new, old)
    assert both.decrypt(token_by_old, CONTEXT) == "s3cret"
    token_by_new = both.encrypt("s3cret", CONTEXT)
    assert ring(new).decrypt(token_by_new, CONTEXT) == "s3cret"
    with pytest.raises(UndecryptableSecret):
        ring(old).decrypt(token_by_new, CONTEXT)


@pytest.mark.parametrize("text", ["", "short", "!!!not-base64!!!", generate_key()[:-4]],
                         ids=["empty", "short", "not base64", "a key cut short"])
def test_a_malformed_key_is_refused_without_echoing_it(text):
    with pytest.raises(InvalidKeyError) as raised:
        parse_keys(f"{generate_key()},{text}")
    assert "encryption key 2" in str(raised.value)
    if text:
        assert text not in str(raised.value)
