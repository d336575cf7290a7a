"""Personal data at rest: AES-GCM bound to its column, keyed look-up hashes."""

from __future__ import annotations

import math
import os

import pytest

from eldercare.platform.crypto import DecryptionError, Vault, VitalsSummary


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


def test_a_vault_with_a_previous_key_opens_what_either_sealed_and_seals_with_the_current() -> None:
    old, new, third = os.urandom(32), os.urandom(32), os.urandom(32)
    both = Vault(new, previous=old)
    under_old = Vault(old).encrypt("张三", column="residents.name")
    assert both.decrypt(under_old, column="residents.name") == "张三"
    assert Vault(new).decrypt(both.encrypt("李四", column="residents.name"), column="residents.name") == "李四"
    with pytest.raises(DecryptionError, match="neither"):
        both.decrypt(Vault(third).encrypt("x", column="residents.name"), column="residents.name")
    with pytest.raises(DecryptionError):
        both.decrypt(under_old, column="residents.id_number")  # the column still binds
    resealed = both.reseal(under_old, column="residents.name")
    assert resealed is not None and Vault(new).decrypt(resealed, column="residents.name") == "张三"
    assert both.reseal(resealed, column="residents.name") is None  # under the current key already
    summary = VitalsSummary(50.0, 90.0, 700.0, 12.0, 20.0, 160.0)
    bound = Vault(old).seal_vitals_summary(summary, column="bed_hourly.vitals_enc", row="7/2026-01-01")
    moved = both.reseal(bound, column="bed_hourly.vitals_enc", row="7/2026-01-01")
    assert moved is not None
    assert Vault(new).open_vitals_summary(moved, column="bed_hourly.vitals_enc", row="7/2026-01-01") == summary
    with pytest.raises(DecryptionError):
        both.reseal(bound, column="bed_hourly.vitals_enc", row="8/2026-01-01")
    assert Vault(new, previous=new).previous is None  # the same key twice is no rotation
    with pytest.raises(ValueError, match="previous data key"):
        Vault(new, previous=b"short")


def test_open_vitals_opens_old_and_new_rows_together_and_refuses_a_third_key() -> None:
    old, new, third = os.urandom(32), os.urandom(32), os.urandom(32)
    micros, devices = [1_000_000 * i for i in range(1, 7)], [3, 3, 4, 4, 5, 5]
    sealers = [Vault(k).vitals_sealer() for k in (old, new, old, new, third, new)]
    blobs = [s.seal(m, d, 60.0 + i, 15.0) for i, (s, m, d) in enumerate(zip(sealers, micros, devices, strict=True))]
    assert all(b is not None for b in blobs)
    sealed = [b for b in blobs if b is not None]
    opened = Vault(new, previous=old).open_vitals(micros, devices, sealed)
    assert opened.ok.tolist() == [True, True, True, True, False, True]
    assert opened.hr.tolist()[:4] == [60.0, 61.0, 62.0, 63.0] and math.isnan(opened.hr[4])
    assert Vault(new).open_vitals(micros, devices, sealed).ok.tolist() == [False, True, False, True, False, True]
    out = Vault(new, previous=old).reseal_vitals(micros, devices, sealed)
    assert [type(o).__name__ for o in out] == ["bytes", "NoneType", "bytes", "NoneType", "DecryptionError", "NoneType"]
    again = [o if isinstance(o, bytes) else b for o, b in zip(out, sealed, strict=True)]
    assert Vault(new).open_vitals(micros, devices, again).ok.tolist() == [True, True, True, True, False, True]


def test_lookup_hashes_are_the_current_key_s_then_the_previous_one_s() -> None:
    old, new = os.urandom(32), os.urandom(32)
    number = "420502194001011234"
    assert Vault(new).lookup_hashes(number) == [Vault(new).lookup_hash(number)]
    assert Vault(new, previous=old).lookup_hashes(f" {number.lower()} ") == [
        Vault(new).lookup_hash(number),
        Vault(old).lookup_hash(number),
    ]
