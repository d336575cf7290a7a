"""Personal data at rest: AES-GCM bound to its column, keyed look-up hashes."""

from __future__ import annotations

import os

import pytest

from eldercare.platform.crypto import DecryptionError, Vault


def test_round_trip_and_no_plaintext_in_the_ciphertext() -> None:
    vault = Vault(os.urandom(32))
    blob = vault.encrypt("420502194001011234", column="residents.id_number")
    assert b"420502" not in blob
    assert vault.decrypt(blob, column="residents.id_number") == "420502194001011234"
    assert vault.encrypt("same", column="c") != vault.encrypt("same", column="c")  # fresh nonce


def test_a_value_moved_to_another_column_or_key_does_not_open() -> None:
    vault = Vault(os.urandom(32))
    blob = vault.encrypt("王秀英", column="residents.name")
    with pytest.raises(DecryptionError):
        vault.decrypt(blob, column="residents.id_number")
    with pytest.raises(DecryptionError):
        Vault(os.urandom(32)).decrypt(blob, column="residents.name")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        vault.decrypt(tampered, column="residents.name")


def test_lookup_hash_is_keyed_and_normalised() -> None:
    key = os.urandom(32)
    assert Vault(key).lookup_hash(" 42050219400101123x ") == Vault(key).lookup_hash("42050219400101123X")
    assert Vault(key).lookup_hash("42050219400101123X") != Vault(os.urandom(32)).lookup_hash("42050219400101123X")


def test_the_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Vault(b"short")
