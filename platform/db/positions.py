"""Sealing the positions an older version stored in clear (migration 0024): a wristband's fixes (``locations``) and
the place of an SOS press (the ``sos`` events' detail, ``device_events``).

Since 0024 ingest seals them as it stores them (``position_enc``). This step, run by ``eldercare db migrate``, seals
the rows written before: in batches of :data:`BATCH_ROWS`, each a short transaction of its own that locks only its
rows, in time order through the partial indexes of the rows in clear, so ingest goes on writing and the ticker on
reading. The tables are hypertables with no row key: a batch's rows, locked as it reads them, are updated by their
place (the chunk and the row's ``ctid``, which a lock keeps). Rows an older ingest adds in clear after the start
are left to the next migrate, so the run ends even while one still writes. ``alarm_inbox`` is a queue, emptied in
seconds; the engine reads a position there in either form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from eldercare.platform.crypto import EVENT_POSITION, LOCATION_POSITION, Vault
from eldercare.platform.db.batches import in_batches
from eldercare.platform.db.migrate import Sealed, is_applied, sealing_vault

log = logging.getLogger(__name__)

SINCE = 24  # the migration that added position_enc
BATCH_ROWS = 2000
_START = datetime.min.replace(tzinfo=UTC)
TABLES = ("locations", "device_events")  # what held positions in clear, for the scrub

Conn = psycopg.Connection[tuple[Any, ...]]

_LOCATIONS_LEFT = "SELECT max(time) FROM locations WHERE lat IS NOT NULL"
_LOCATIONS_BATCH = """
SELECT tableoid, ctid, time, lat, lon FROM locations
WHERE lat IS NOT NULL AND time >= %(after)s AND time <= %(last)s ORDER BY time LIMIT %(limit)s FOR NO KEY UPDATE
"""
_LOCATIONS_SEAL = """
UPDATE locations t SET position_enc = s.enc, lat = NULL, lon = NULL
FROM unnest(%s::oid[], %s::tid[], %s::bytea[]) AS s(chunk, row, enc) WHERE t.tableoid = s.chunk AND t.ctid = s.row
  AND t.time >= %s AND t.time <= %s
"""
_EVENTS_LEFT = "SELECT max(time) FROM device_events WHERE detail ? 'lat'"
_EVENTS_BATCH = """
SELECT tableoid, ctid, time, detail FROM device_events
WHERE detail ? 'lat' AND time >= %(after)s AND time <= %(last)s ORDER BY time LIMIT %(limit)s FOR NO KEY UPDATE
"""
_EVENTS_SEAL = """
UPDATE device_events t SET position_enc = coalesce(s.enc, t.position_enc), detail = t.detail - 'lat' - 'lon'
FROM unnest(%s::oid[], %s::tid[], %s::bytea[]) AS s(chunk, row, enc) WHERE t.tableoid = s.chunk AND t.ctid = s.row
  AND t.time >= %s AND t.time <= %s
"""
# The batch's first and last times (the last two parameters) leave only its chunks to the plan: without them each
# row is looked for in every chunk of the table (platform/db/vitals.py measured a third of the rate at 60 chunks).


def positions_in_clear(conn: Conn) -> dict[str, datetime]:
    """The tables that still hold a position in clear, each with the time of its last row in clear (none before
    0024: there is nowhere to seal them to)."""
    if not is_applied(conn, SINCE):
        return {}
    left: dict[str, datetime] = {}
    for name, table in _HOLDERS.items():
        row = conn.execute(table.left).fetchone()
        if row is not None and row[0] is not None:
            left[name] = row[0]
    return left


def seal_positions(conninfo: str, *, data_key: bytes | None = None) -> list[Sealed]:
    """Seal the positions still in clear; what was sealed, per table (as :func:`migrate.seal_in_clear` says it)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        due = positions_in_clear(conn)
        if not due:
            return []
        vault = sealing_vault(conninfo, data_key, SINCE, need="positions are stored in clear", to="encrypt them")
        sealed = [_seal(conn, vault, _HOLDERS[table], last) for table, last in due.items()]
        for done in sealed:
            log.info("encrypted the positions of %d rows of %s (%d batches)", done.rows, done.table, done.batches)
        conn.execute(f"VACUUM (ANALYZE) {', '.join(due)}")
    return sealed


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    left: str  # the time of the last row in clear (NULL: none)
    batch: str  # a batch of rows in clear from a time on: tableoid, ctid, time, then what is sealed
    seal: str  # the batch's rows sealed by (tableoid, ctid), between its first and last times
    sealed: Callable[[Vault, tuple[Any, ...]], bytes | None]  # a batch row's position, sealed


_HOLDERS = {
    "locations": _Table(
        "locations",
        _LOCATIONS_LEFT,
        _LOCATIONS_BATCH,
        _LOCATIONS_SEAL,
        lambda vault, row: vault.seal_position(row[3], row[4], column=LOCATION_POSITION),
    ),
    "device_events": _Table(
        "device_events", _EVENTS_LEFT, _EVENTS_BATCH, _EVENTS_SEAL, lambda vault, row: _event_position(vault, row[3])
    ),
}


def _seal(conn: Conn, vault: Vault, table: _Table, last: datetime) -> Sealed:
    """The table's rows in clear, sealed in short transactions of :data:`BATCH_ROWS` (:func:`batches.in_batches`),
    in time order, up to ``last`` (the last one in clear at the start)."""

    def select(after: datetime) -> list[tuple[Any, ...]]:
        return conn.execute(table.batch, {"after": after, "last": last, "limit": BATCH_ROWS}).fetchall()

    def rewrite(batch: list[tuple[Any, ...]]) -> int:
        sealed = [table.sealed(vault, r) for r in batch]
        conn.execute(table.seal, ([r[0] for r in batch], [r[1] for r in batch], sealed, batch[0][2], batch[-1][2]))
        return len(batch)

    done = in_batches(
        conn, start=_START, select=select, rewrite=rewrite, after=lambda b: b[-1][2], what=f"sealing {table.name}"
    )
    return Sealed(table.name, "positions", done.rows, done.batches)


def _event_position(vault: Vault, detail: dict[str, Any]) -> bytes | None:
    """An SOS detail's position, sealed; None for a press that carried none (``lat`` stored as null)."""
    lat, lon = detail.get("lat"), detail.get("lon")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    return vault.seal_position(float(lat), float(lon), column=EVENT_POSITION)
