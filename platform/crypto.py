"""Personal data at rest: AES-256-GCM for the values, a keyed hash (HMAC-SHA256) to look them up.

Two sub-keys are derived from the one data key with HKDF, so the look-up hash never reveals anything
about the encryption key. A ciphertext is ``version (1 byte) | nonce (12) | ciphertext+tag``; the version
lets a later key rotation read old rows. The associated data binds a ciphertext to its column, so a value
copied from one column to another does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = 1
_NONCE = 12
_POSITION = struct.Struct("!dd")  # latitude, longitude


class DecryptionError(ValueError):
    """A ciphertext that does not open with this key (wrong key, wrong column or tampered)."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"eldercare:" + purpose).derive(key)


@dataclass(frozen=True, slots=True)
class Vault:
    """Encrypts and looks up personal data with keys derived from the data key."""

    data_key: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False)
    _lookup_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.data_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        object.__setattr__(self, "_aead", AESGCM(_derive(self.data_key, b"aead-v1")))
        object.__setattr__(self, "_lookup_key", _derive(self.data_key, b"lookup-v1"))

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
        if len(blob) < 1 + _NONCE + 16 or blob[0] != _VERSION:
            raise DecryptionError(f"not a version-{_VERSION} ciphertext")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], column.encode())
        except InvalidTag as exc:
            raise DecryptionError("ciphertext does not open with this key and column") from exc

    def key_check(self) -> bytes:
        """A value that tells this key from another and reveals nothing about it (an HMAC under a sub-key of its
        own): recorded in the database, so that a process started with another key is refused."""
        return hmac.new(_derive(self.data_key, b"check-v1"), b"eldercare data key check", hashlib.sha256).digest()

    def lookup_hash(self, value: str) -> bytes:
        """Deterministic keyed hash of a normalised value, for equality look-ups (ID numbers)."""
        return hmac.new(self._lookup_key, value.strip().upper().encode(), hashlib.sha256).digest()


# The columns that hold sealed positions, by the name the vault binds them to: ingest writes them, the platform reads.
LOCATION_POSITION = "locations.position"  # a wristband's fixes
EVENT_POSITION = "device_events.position"  # an SOS press's place, as stored for good
INBOX_POSITION = "alarm_inbox.position"  # the same, on its way to the alarm engine
PARKED_PAYLOAD = "parked_messages.payload"  # a message ingest could not store, as it came
