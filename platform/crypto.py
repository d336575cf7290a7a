"""Personal data at rest: AES-256-GCM for the values, a keyed hash (HMAC-SHA256) to look them up.

Two sub-keys are derived from the one data key with HKDF, so the look-up hash never reveals anything
about the encryption key. A ciphertext is ``version (1 byte) | nonce (12) | ciphertext+tag``; the version
lets a later format change read old rows. The associated data binds a ciphertext to its column, so a value
copied from one column to another does not decrypt.

Key rotation: a vault may also hold the *previous* data key (``ELDERCARE_DATA_KEY_PREVIOUS``). New data is always
sealed with the current key; what does not open with it is tried with the previous one (the GCM tag, or a vitals
block's row check, tells which key sealed a value), and a look-up by ID number matches the hashes of both keys
(:meth:`Vault.lookup_hashes`). ``eldercare db rekey`` re-seals what is left under the previous key
(``platform/db/rekey.py``) with :meth:`Vault.reseal` and :meth:`Vault.reseal_vitals`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = 1
_NONCE = 12
_POSITION = struct.Struct("!dd")  # latitude, longitude
_VITALS_BLOCK = struct.Struct("!QIHH")  # (row time << 8) | flags, device, heart rate, breathing rate
_VITALS_DTYPE = np.dtype([("head", ">u8"), ("device", ">u4"), ("hr", ">u2"), ("rr", ">u2")])
_HR_FLAG, _RR_FLAG, _BOTH_FLAGS = 1, 2, 3
_SUMMARY = struct.Struct("!ffdffd")  # hr min, max, sum; rr min, max, sum


class DecryptionError(ValueError):
    """A ciphertext that does not open with this key (wrong key, wrong column or tampered)."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"eldercare:" + purpose).derive(key)


def _bound(column: str, row: str) -> str:
    """The associated data of a value bound to its column and its row."""
    return f"{column}/{row}"


@dataclass(frozen=True, slots=True)
class Vault:
    """Encrypts and looks up personal data with keys derived from the data key; opens, and looks up, what the
    ``previous`` key sealed as well, while a rotation is under way (see the module's docstring)."""

    data_key: bytes = field(repr=False)
    previous: bytes | None = field(default=None, repr=False, kw_only=True)
    _aead: AESGCM = field(init=False, repr=False)
    _lookup_key: bytes = field(init=False, repr=False)
    _vitals_key: bytes = field(init=False, repr=False)
    _old_aead: AESGCM | None = field(init=False, repr=False)
    _old_lookup_key: bytes | None = field(init=False, repr=False)
    _old_vitals_key: bytes | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.data_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        if self.previous is not None and len(self.previous) != 32:
            raise ValueError("the previous data key must be 32 bytes")
        if self.previous == self.data_key:
            object.__setattr__(self, "previous", None)  # the same key twice: nothing to rotate from
        object.__setattr__(self, "_aead", AESGCM(_derive(self.data_key, b"aead-v1")))
        object.__setattr__(self, "_lookup_key", _derive(self.data_key, b"lookup-v1"))
        object.__setattr__(self, "_vitals_key", _derive(self.data_key, b"vitals-v1"))
        old = self.previous
        object.__setattr__(self, "_old_aead", None if old is None else AESGCM(_derive(old, b"aead-v1")))
        object.__setattr__(self, "_old_lookup_key", None if old is None else _derive(old, b"lookup-v1"))
        object.__setattr__(self, "_old_vitals_key", None if old is None else _derive(old, b"vitals-v1"))

    def vitals_sealer(self) -> VitalsSealer:
        """A sealer of bed readings' vital signs, for one thread (a cipher context is not shared between threads)."""
        return VitalsSealer(self._vitals_key)

    def open_vitals(self, micros: Sequence[int], devices: Sequence[int], blobs: Sequence[bytes]) -> OpenedVitals:
        """The vital signs of many bed readings at once, by their rows' times (PostgreSQL microseconds) and
        devices: what :meth:`VitalsSealer.seal` stored. A row whose block does not open to its own time and device
        (another row's block copied over it, a changed byte, another key) is marked in ``ok``, not raised: one
        damaged row must not hide the others (a caller that must refuse refuses on ``ok``)."""
        n = len(blobs)
        if not (len(micros) == len(devices) == n):
            raise ValueError("one time and one device for each sealed block")
        if n == 0:
            empty = np.empty(0, dtype=np.float64)
            return OpenedVitals(empty, empty.copy(), np.empty(0, dtype=bool))
        plain, ok = _open_blocks(self._vitals_key, micros, devices, blobs)
        if self._old_vitals_key is not None and not ok.all():  # a rotation: the rows the current key did not open
            again = np.flatnonzero(~ok).tolist()
            old_plain, old_ok = _open_blocks(
                self._old_vitals_key, [micros[i] for i in again], [devices[i] for i in again], [blobs[i] for i in again]
            )
            plain = plain.copy()
            plain[again], ok[again] = old_plain, old_ok
        flags = plain["head"].astype(np.uint64) & np.uint64(0xFF)
        hr = np.where(ok & ((flags & np.uint64(_HR_FLAG)) != 0), plain["hr"] / 100.0, np.nan)
        rr = np.where(ok & ((flags & np.uint64(_RR_FLAG)) != 0), plain["rr"] / 100.0, np.nan)
        return OpenedVitals(hr, rr, ok)

    def reseal_vitals(
        self, micros: Sequence[int], devices: Sequence[int], blobs: Sequence[bytes]
    ) -> list[bytes | DecryptionError | None]:
        """For a key rotation: each block that opens to its row with the previous key only, sealed with the current
        one (the same 16 bytes of plain block, so the same rates and flags); None for a block the current key opens
        already; a :class:`DecryptionError` (returned, not raised) for one that opens with neither."""
        n = len(blobs)
        if not (len(micros) == len(devices) == n):
            raise ValueError("one time and one device for each sealed block")
        out: list[bytes | DecryptionError | None] = [None] * n
        if n == 0:
            return out
        _, ok = _open_blocks(self._vitals_key, micros, devices, blobs)
        if ok.all():
            return out
        again: list[int] = np.flatnonzero(~ok).tolist()
        if self._old_vitals_key is None:
            old_plain, old_ok = np.zeros(len(again), dtype=_VITALS_DTYPE), np.zeros(len(again), dtype=bool)
        else:
            old_plain, old_ok = _open_blocks(
                self._old_vitals_key, [micros[i] for i in again], [devices[i] for i in again], [blobs[i] for i in again]
            )
        encrypt = Cipher(algorithms.AES(self._vitals_key), modes.ECB()).encryptor().update  # noqa: S305 - see VitalsSealer
        for j, i in enumerate(again):
            out[i] = encrypt(old_plain[j].tobytes()) if old_ok[j] else DecryptionError("a block opens with neither key")
        return out

    def seal_vitals_summary(self, summary: VitalsSummary, *, column: str, row: str) -> bytes:
        """An hour's or a day's vital-sign statistics (a roll-up row's), bound to its column and to its row
        (``row``: the device and the period), so that a summary moved to another row does not open."""
        return self._seal(_SUMMARY.pack(*summary), _bound(column, row))

    def open_vitals_summary(self, blob: bytes, *, column: str, row: str) -> VitalsSummary:
        """What :meth:`seal_vitals_summary` stored, for the same column and row."""
        plain = self._open(bytes(blob), _bound(column, row))
        if len(plain) != _SUMMARY.size:
            raise DecryptionError("not a sealed vital-sign summary")
        return VitalsSummary(*_SUMMARY.unpack(plain))

    def encrypt(self, plaintext: str, *, column: str) -> bytes:
        return self._seal(plaintext.encode("utf-8"), column)

    def encrypt_text(self, text: str | None, *, column: str) -> bytes | None:
        """Free text (a note, a place) for a nullable column: None for no text, which has nothing to hide."""
        return self.encrypt(text, column=column) if text else None

    def decrypt_text(self, blob: bytes | None, *, column: str) -> str:
        """What :meth:`encrypt_text` stored: the text, or "" for none."""
        return "" if blob is None else self.decrypt(bytes(blob), column=column)

    def decrypt(self, blob: bytes, *, column: str) -> str:
        return self._open(blob, column).decode("utf-8")

    def seal_bytes(self, data: bytes, *, column: str) -> bytes:
        """Bytes as they came (a parked message's payload, which may not even be text)."""
        return self._seal(bytes(data), column)

    def open_bytes(self, blob: bytes, *, column: str) -> bytes:
        """What :meth:`seal_bytes` stored."""
        return self._open(bytes(blob), column)

    def seal_position(self, lat: float, lon: float, *, column: str) -> bytes:
        """A person's position (a wristband's fix, an SOS press's place), 45 bytes: where someone is, and
        has been, is personal data as much as their name."""
        return self._seal(_POSITION.pack(lat, lon), column)

    def open_position(self, blob: bytes, *, column: str) -> tuple[float, float]:
        """What :meth:`seal_position` stored: (latitude, longitude)."""
        plain = self._open(bytes(blob), column)
        if len(plain) != _POSITION.size:
            raise DecryptionError("not a sealed position")
        lat, lon = _POSITION.unpack(plain)
        return lat, lon

    def _seal(self, plaintext: bytes, column: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return bytes([_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, column.encode())

    def _open(self, blob: bytes, column: str) -> bytes:
        return self._open_keyed(blob, column)[0]

    def _open_keyed(self, blob: bytes, column: str) -> tuple[bytes, bool]:
        """The plaintext, and whether the previous key (not the current one) opened it."""
        if len(blob) < 1 + _NONCE + 16 or blob[0] != _VERSION:
            raise DecryptionError(f"not a version-{_VERSION} ciphertext")
        nonce, sealed, aad = blob[1 : 1 + _NONCE], blob[1 + _NONCE :], column.encode()
        try:
            return self._aead.decrypt(nonce, sealed, aad), False
        except InvalidTag:
            if self._old_aead is None:
                raise DecryptionError("ciphertext does not open with this key and column") from None
        try:
            return self._old_aead.decrypt(nonce, sealed, aad), True
        except InvalidTag:
            raise DecryptionError("ciphertext opens with neither the key nor the previous key and column") from None

    def reseal(self, blob: bytes, *, column: str, row: str | None = None) -> bytes | None:
        """For a key rotation: ``blob`` sealed with the current key if the previous key sealed it (same column, and
        row for a value bound to its row as :meth:`seal_vitals_summary`'s); None if the current key opens it
        already; :class:`DecryptionError` if neither does."""
        aad = column if row is None else _bound(column, row)
        plain, by_previous = self._open_keyed(bytes(blob), aad)
        return self._seal(plain, aad) if by_previous else None

    def key_check(self) -> bytes:
        """A value that tells this key from another and reveals nothing about it (an HMAC under a sub-key of its
        own): recorded in the database, so that a process started with another key is refused."""
        return hmac.new(_derive(self.data_key, b"check-v1"), b"eldercare data key check", hashlib.sha256).digest()

    def previous_key_check(self) -> bytes | None:
        """:meth:`key_check` of the previous key, if the vault has one."""
        return None if self.previous is None else Vault(self.previous).key_check()

    def lookup_hash(self, value: str) -> bytes:
        """Deterministic keyed hash of a normalised value, for equality look-ups (ID numbers): what is stored."""
        return hmac.new(self._lookup_key, value.strip().upper().encode(), hashlib.sha256).digest()

    def lookup_hashes(self, value: str) -> list[bytes]:
        """The hashes a stored value may carry: the current key's, and the previous key's while a rotation is under
        way (rows ``eldercare db rekey`` has not reached yet). Query with ``= ANY(%s)``."""
        normal = value.strip().upper().encode()
        found = [hmac.new(self._lookup_key, normal, hashlib.sha256).digest()]
        if self._old_lookup_key is not None:
            found.append(hmac.new(self._old_lookup_key, normal, hashlib.sha256).digest())
        return found


VITALS_BLOCK_SIZE = _VITALS_BLOCK.size  # 16: one AES block
_PACK_VITALS = _VITALS_BLOCK.pack


def _open_blocks(
    key: bytes, micros: Sequence[int], devices: Sequence[int], blobs: Sequence[bytes]
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.bool_]]:
    """The plain blocks (read-only) and which of them open to their own row with ``key``."""
    n = len(blobs)
    sizes_ok = np.fromiter((len(b) == VITALS_BLOCK_SIZE for b in blobs), dtype=bool, count=n)
    joined = b"".join(bytes(b) if ok else bytes(VITALS_BLOCK_SIZE) for b, ok in zip(blobs, sizes_ok, strict=True))
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - one unique block a row: see VitalsSealer
    plain = np.frombuffer(decryptor.update(joined) + decryptor.finalize(), dtype=_VITALS_DTYPE)
    head = plain["head"].astype(np.uint64)
    flags = head & np.uint64(0xFF)
    ok = (
        sizes_ok
        & ((head >> np.uint64(8)) == np.asarray(micros, dtype=np.int64).astype(np.uint64))
        & (plain["device"].astype(np.int64) == np.asarray(devices, dtype=np.int64))
        & (flags <= np.uint64(_BOTH_FLAGS))
        & (flags != 0)
    )
    return plain, ok


class VitalsSealer:
    """Seals a bed reading's heart and breathing rates in one AES block (16 bytes) bound to its row.

    The block is ``(row time in PostgreSQL microseconds << 8) | flags``, the device id (32 bits), and the two rates
    in hundredths (16 bits each; a flag says which is present). A device's time (to the millisecond) and its id
    name one reading, so two blocks are equal only when one device's readings of the same millisecond carry the
    same rates (in practice, one reading stored twice); AES applied to blocks that differ gives ciphertexts that
    reveal nothing, not even that two rates were equal. So the block needs no nonce, and sealing costs one AES
    block a row (0.4 µs with the packing, ``bench/vitals_seal.py``) where AES-GCM's version byte, nonce and tag
    would cost more and 29 bytes more a row, at 100,000 readings a second. Opening checks that the block holds its
    own row's time and device (88 bits), so a block copied from another row or changed in place does not open
    unnoticed; a later key would be told from this one the same way, as a block opens to its row under one key
    only. It is not AES-GCM's authentication, but a changed or moved block passes the check with odds of 2^-88."""

    __slots__ = ("_update",)

    def __init__(self, key: bytes) -> None:
        self._update = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update  # noqa: S305 - see above

    def seal(self, micros: int, device_id: int, hr: float | None, rr: float | None) -> bytes | None:
        """The sealed block for a reading; None when it has neither rate (nobody in bed): nothing to hide. A time
        before 2000 or from 2^56 µs on, or a device id from 2^32 on, does not fit and raises ``struct.error``
        (the contract's times end in 2100)."""
        if hr is not None and rr is not None:  # the usual case first: this runs once a reading
            block = _PACK_VITALS(micros << 8 | _BOTH_FLAGS, device_id, int(hr * 100 + 0.5), int(rr * 100 + 0.5))
            return self._update(block)
        if hr is not None:
            return self._update(_PACK_VITALS(micros << 8 | _HR_FLAG, device_id, int(hr * 100 + 0.5), 0))
        if rr is not None:
            return self._update(_PACK_VITALS(micros << 8 | _RR_FLAG, device_id, 0, int(rr * 100 + 0.5)))
        return None


class OpenedVitals(NamedTuple):
    """Rates (NaN where a row had none or did not open) and which rows opened."""

    hr: npt.NDArray[np.float64]
    rr: npt.NDArray[np.float64]
    ok: npt.NDArray[np.bool_]


class VitalsSummary(NamedTuple):
    """Vital-sign statistics of an hour or a day (NaN minimum and maximum, 0 sum: no rate of that kind)."""

    hr_min: float
    hr_max: float
    hr_sum: float
    rr_min: float
    rr_max: float
    rr_sum: float


# The columns that hold sealed positions, by the name the vault binds them to: ingest writes them, the platform reads.
LOCATION_POSITION = "locations.position"  # a wristband's fixes
EVENT_POSITION = "device_events.position"  # an SOS press's place, as stored for good
INBOX_POSITION = "alarm_inbox.position"  # the same, on its way to the alarm engine
PARKED_PAYLOAD = "parked_messages.payload"  # a message ingest could not store, as it came
# The roll-ups' sealed vital-sign statistics (the raw readings' blocks are bound to their rows by the block itself).
BED_HOURLY_VITALS = "bed_hourly.vitals_enc"
BED_DAILY_VITALS = "bed_daily.vitals_enc"
