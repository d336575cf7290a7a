"""Telemetry rows as PostgreSQL binary COPY data, built with ``struct`` straight from the contract's structs.

psycopg's ``write_row`` costs a few microseconds per row (a dumper call per value, a ``datetime`` per
timestamp); at 100,000 readings a second that alone would fill a core. Here a timestamp goes from the
wire's milliseconds to PostgreSQL's microseconds since 2000-01-01 by integer arithmetic, and a whole row is
one ``struct.pack``. A reading's heart and breathing rates are health data: they go sealed, in one AES block bound
to the row (``VitalsSealer``), 0.3 µs a row. The layout is PostgreSQL's documented binary COPY format: a signature
and header, per row a 16-bit field count then per field a 32-bit length (-1 for NULL) and the value, and a trailer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from psycopg import Cursor

from eldercare.devices import messages as m
from eldercare.platform.crypto import LOCATION_POSITION, Vault

if TYPE_CHECKING:
    from eldercare.ingest.decode import FastBed

PG_EPOCH_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z in Unix milliseconds
HOUR_MS: Final = 3_600_000
COPY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER: Final = b"\xff\xff"

_BED_FULL: Final = struct.Struct("!hiqiqi?ifi16s")  # move and sealed rates present
_BED_HEAD: Final = struct.Struct("!hiqiqi?")
_VITALS: Final = struct.Struct("!i16s")
_F4: Final = struct.Struct("!if")
_F8: Final = struct.Struct("!id")
_NULL: Final = b"\xff\xff\xff\xff"
_SCALAR_HEAD: Final = struct.Struct("!hiqiq")
_LOCATION_HEAD: Final = struct.Struct("!hiqiq")
_BYTES_LENGTH: Final = struct.Struct("!i")


def pg_micros(ms: int) -> int:
    return (ms - PG_EPOCH_MS) * 1000


@dataclass(slots=True)
class Rows:
    """The telemetry rows of one batch, by table, plus the (hour, device) pairs they touch. ``vault`` seals the
    positions (a person's whereabouts are personal data) and the heart and breathing rates (health data); the rest
    of a reading is neither."""

    vault: Vault
    seal_vitals: Callable[[int, int, float | None, float | None], bytes | None] = field(init=False)
    bed: list[bytes] = field(default_factory=list)
    scalar: list[bytes] = field(default_factory=list)
    location: list[bytes] = field(default_factory=list)
    accel: list[tuple[int, int, int, list[int]]] = field(default_factory=list)  # ms, device, hz, samples
    touched: set[tuple[int, int]] = field(default_factory=set)  # (hour since 1970, device id)

    def __post_init__(self) -> None:
        self.seal_vitals = self.vault.vitals_sealer().seal  # a batch is built by one thread

    def count(self) -> int:
        return len(self.bed) + len(self.scalar) + len(self.location) + len(self.accel)


def add_telemetry(rows: Rows, msg: m.DeviceMessage, device_id: int) -> bool:
    """Append a telemetry message's row; False if ``msg`` is alarm-class (the caller stores those)."""
    kind = type(msg)
    ts = msg.ts
    if kind is m.BedSample:
        assert isinstance(msg, m.BedSample)
        micros, move = pg_micros(ts), msg.move
        vitals = rows.seal_vitals(micros, device_id, msg.hr, msg.rr)
        if vitals is not None and move is not None:
            rows.bed.append(_BED_FULL.pack(5, 8, micros, 8, device_id, 1, msg.presence, 4, move, 16, vitals))
        else:
            rows.bed.append(
                _BED_HEAD.pack(5, 8, micros, 8, device_id, 1, msg.presence)
                + (_NULL if move is None else _F4.pack(4, move))
                + (_NULL if vitals is None else _VITALS.pack(16, vitals))
            )
    elif kind is m.Battery:
        assert isinstance(msg, m.Battery)
        rows.scalar.append(_scalar(ts, device_id, "battery", float(msg.level)))
    elif kind is m.EnvReading:
        assert isinstance(msg, m.EnvReading)
        rows.scalar.append(_scalar(ts, device_id, msg.kind, msg.value))
    elif kind is m.Location:
        assert isinstance(msg, m.Location)
        sealed = rows.vault.seal_position(msg.lat, msg.lon, column=LOCATION_POSITION)
        rows.location.append(
            _LOCATION_HEAD.pack(4, 8, pg_micros(ts), 8, device_id)
            + (_NULL if msg.acc is None else _F4.pack(4, msg.acc))
            + _BYTES_LENGTH.pack(len(sealed))
            + sealed
        )
    elif kind is m.AccelSamples:
        assert isinstance(msg, m.AccelSamples)
        rows.accel.append((ts, device_id, msg.hz, [v for xyz in msg.xyz for v in xyz]))
    else:
        return False
    rows.touched.add((ts // HOUR_MS, device_id))
    return True


def add_beds(rows: Rows, beds: Sequence[FastBed], device_ids: Sequence[int | None]) -> list[int]:
    """Append the rows of a fast-path frame; return the positions whose device is unknown."""
    unknown: list[int] = []
    out, touched = rows.bed, rows.touched
    full, head, seal = _BED_FULL.pack, _BED_HEAD.pack, rows.seal_vitals
    for position, (msg, device_id) in enumerate(zip(beds, device_ids, strict=True)):
        if device_id is None:
            unknown.append(position)
            continue
        ts, move = msg.ts, msg.move
        micros = (ts - PG_EPOCH_MS) * 1000
        vitals = seal(micros, device_id, msg.hr, msg.rr)
        if vitals is not None and move is not None:
            out.append(full(5, 8, micros, 8, device_id, 1, msg.presence, 4, move, 16, vitals))
        else:
            out.append(
                head(5, 8, micros, 8, device_id, 1, msg.presence)
                + (_NULL if move is None else _F4.pack(4, move))
                + (_NULL if vitals is None else _VITALS.pack(16, vitals))
            )
        touched.add((ts // HOUR_MS, device_id))
    return unknown


def _scalar(ts: int, device_id: int, metric: str, value: float) -> bytes:
    name = metric.encode()
    return (
        _SCALAR_HEAD.pack(4, 8, pg_micros(ts), 8, device_id) + struct.pack("!i", len(name)) + name + _F4.pack(4, value)
    )


def copy_rows(cur: Cursor[tuple[object, ...]], rows: Rows) -> None:
    """COPY every table that has rows, in this cursor's transaction."""
    for table, columns, data in (
        ("bed_readings", "time, device_id, presence, movement, vitals_enc", rows.bed),
        ("device_readings", "time, device_id, metric, value", rows.scalar),
        ("locations", "time, device_id, accuracy, position_enc", rows.location),
    ):
        if data:
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_SIGNATURE + b"".join(data) + COPY_TRAILER)
    if rows.accel:
        with cur.copy("COPY accel_chunks (time, device_id, hz, samples) FROM STDIN (FORMAT BINARY)") as copy:
            # Rare and wide, so psycopg formats it. The binary form of timestamptz is an int64 of microseconds
            # since 2000-01-01, so the time goes as int8 and no datetime is made.
            copy.set_types(["int8", "int8", "int2", "int2[]"])
            for ms, device_id, hz, samples in rows.accel:
                copy.write_row((pg_micros(ms), device_id, hz, samples))
