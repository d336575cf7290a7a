"""Tiny real images for the photo tests (a PNG written by hand: signature, IHDR, IDAT, IEND)."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int = 64, height: int = 40, rgb: tuple[int, int, int] = (90, 140, 90)) -> bytes:
    """A solid-colour RGB PNG with a lighter band across the middle (so it is visibly a picture)."""
    rows = bytearray()
    for y in range(height):
        colour = bytes(min(255, c + 80) for c in rgb) if height // 3 <= y < 2 * height // 3 else bytes(rgb)
        rows += b"\x00" + colour * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows)))
        + _chunk(b"IEND", b"")
    )
