"""Sealing the heart and breathing rates an older version stored in clear (migration 0028): the bed readings'
``heart_rate`` and ``resp_rate``, and the hourly and daily roll-ups' minimum, maximum and sum of each.

Since 0028 ingest seals a reading's rates as it stores it (``bed_readings.vitals_enc``, one AES block bound to the
row's time and device) and the roll-up job seals its statistics (``vitals_enc``, AES-GCM bound to the column and to
the row's :func:`summary_row`). This step, run by ``eldercare db migrate``, seals the rows written before, the way
``positions.py`` seals the positions: in time order through the partial indexes of the rows in clear, in short
transactions of a batch each that lock only their rows, so ingest goes on writing, the roll-up job on rolling up and
the ticker on reading. ``bed_readings`` is a hypertable with no row key: a batch's rows, locked as it reads them, are
updated by their place (the chunk and the row's ``ctid``, which a lock keeps); the roll-ups are updated by their key.
Rows an older ingest or roll-up job adds in clear after the start are left to the next migrate, so the run ends even
while one still writes. The roll-ups' counts (``hr_count``, ``rr_count``) stay in clear: how many readings had a
rate says nothing of the rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from eldercare.platform.crypto import BED_DAILY_VITALS, BED_HOURLY_VITALS, Vault, VitalsSummary
from eldercare.platform.db.batches import in_batches
from eldercare.platform.db.migrate import Sealed, is_applied, sealing_vault
from eldercare.platform.sealed_vitals import seal_reading, summary_row

log = logging.getLogger(__name__)

SINCE = 28  # the migration that added vitals_enc
READING_BATCH_ROWS = 5000
"""Bed readings sealed per transaction. Measured on the test stack (2 cores shared, 1.2 million readings in clear over
60 daily chunks, 200,000 sealed per size): 1,000 rows a batch sealed 76,000 rows/s (13 ms a batch), 2,000 83,000
(24 ms), 5,000 89,000 (56 ms), 10,000 88,000 (114 ms). Past 5,000 a batch only holds its rows' locks longer; an
ingest that goes on writing never waits for them (it only inserts), and a reader never does."""
SUMMARY_BATCH_ROWS = 2000  # roll-up rows sealed per transaction: a few per device and hour, far fewer than readings
_START = datetime.min.replace(tzinfo=UTC)
TABLES = ("bed_readings", "bed_hourly", "bed_daily")  # what held rates in clear, for the scrub

Conn = psycopg.Connection[tuple[Any, ...]]


def vitals_in_clear(conn: Conn) -> dict[str, datetime | date]:
    """The tables that still hold a rate in clear, each with the time (or day) of its last row in clear (none before
    0028: there is nowhere to seal them to)."""
    if not is_applied(conn, SINCE):
        return {}
    left: dict[str, datetime | date] = {}
    for name, table in _HOLDERS.items():
        row = conn.execute(table.left).fetchone()
        if row is not None and row[0] is not None:
            left[name] = row[0]
    return left


def seal_vitals(conninfo: str, *, data_key: bytes | None = None) -> list[Sealed]:
    """Seal the rates still in clear; what was sealed, per table (as :func:`migrate.seal_in_clear` says it)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        due = vitals_in_clear(conn)
        if not due:
            return []
        need = "heart and breathing rates are stored in clear"
        vault = sealing_vault(conninfo, data_key, SINCE, need=need, to="encrypt them")
        sealed = [_seal(conn, vault, _HOLDERS[table], last) for table, last in due.items()]
        for done in sealed:
            log.info("encrypted the rates of %d rows of %s (%d batches)", done.rows, done.table, done.batches)
        conn.execute(f"VACUUM (ANALYZE) {', '.join(due)}")
    return sealed


_Sealer = Callable[[list[tuple[Any, ...]]], list[bytes | None]]


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    left: str  # the time of the last row in clear (NULL: none)
    batch: str  # a batch of rows in clear from a time on, in time order, locked; the time third
    seal: str  # the batch's rows sealed by their places or keys (its first two columns), between its first and last
    sealer: Callable[[Vault], _Sealer]  # given the vault: a batch's rates, sealed
    batch_rows: int  # rows sealed per transaction


_READINGS_LEFT = "SELECT max(time) FROM bed_readings WHERE heart_rate IS NOT NULL OR resp_rate IS NOT NULL"
# The condition in parentheses is bed_readings_vitals_in_clear's predicate, so the batch walks that index.
_READINGS_BATCH = """
SELECT tableoid, ctid, time, device_id, heart_rate, resp_rate FROM bed_readings
WHERE (heart_rate IS NOT NULL OR resp_rate IS NOT NULL) AND time >= %(after)s AND time <= %(last)s
ORDER BY time LIMIT %(limit)s FOR NO KEY UPDATE
"""
# The batch's first and last times leave only its chunks to the plan: without them, each row of the batch is looked
# for in every chunk of the table (measured: 60 daily chunks sealed 22,000 rows/s, a third of the rate with them).
_READINGS_SEAL = """
UPDATE bed_readings t SET vitals_enc = s.enc, heart_rate = NULL, resp_rate = NULL
FROM unnest(%(first)s::oid[], %(second)s::tid[], %(enc)s::bytea[]) AS s(chunk, row, enc)
WHERE t.tableoid = s.chunk AND t.ctid = s.row AND t.time >= %(start)s AND t.time <= %(end)s
"""


def _rollup_table(name: str, period: str, sql_type: str, column: str) -> _Table:
    """A roll-up table (``bed_hourly`` by ``bucket``, ``bed_daily`` by ``day``): its batch is the key (device,
    period), the period again (where the next batch starts) and the six statistics; it is updated by its key. What
    is put in the SQL is this module's names only (the two calls in ``_HOLDERS``)."""
    in_clear = "(hr_sum IS NOT NULL OR rr_sum IS NOT NULL)"  # a row whose counts are 0 has no statistics at all
    left = f"SELECT max({period}) FROM {name} WHERE {in_clear}"  # noqa: S608
    batch = f"""
SELECT device_id, {period}, {period}, hr_min, hr_max, hr_sum, rr_min, rr_max, rr_sum FROM {name}
WHERE {in_clear} AND {period} >= %(after)s AND {period} <= %(last)s
ORDER BY {period} LIMIT %(limit)s FOR NO KEY UPDATE
"""  # noqa: S608
    seal = f"""
UPDATE {name} t
SET vitals_enc = s.enc, hr_min = NULL, hr_max = NULL, hr_sum = NULL, rr_min = NULL, rr_max = NULL, rr_sum = NULL
FROM unnest(%(first)s::bigint[], %(second)s::{sql_type}[], %(enc)s::bytea[]) AS s(device_id, period, enc)
WHERE t.device_id = s.device_id AND t.{period} = s.period AND t.{period} >= %(start)s AND t.{period} <= %(end)s
"""  # noqa: S608
    return _Table(name, left, batch, seal, _summaries_sealer(column), SUMMARY_BATCH_ROWS)


def _readings_sealer(vault: Vault) -> _Sealer:
    """The rates of a batch of readings, each sealed in its row's block: the ``real`` rates as the floats they are
    (the block keeps hundredths)."""
    sealer = vault.vitals_sealer()

    def seal(batch: list[tuple[Any, ...]]) -> list[bytes | None]:
        return [seal_reading(sealer, time, device, hr, rr) for _, _, time, device, hr, rr in batch]

    return seal


def _summaries_sealer(column: str) -> Callable[[Vault], _Sealer]:
    """The statistics of a batch of roll-up rows, each sealed to ``column`` and its row (:func:`summary_row`)."""

    def sealer(vault: Vault) -> _Sealer:
        def seal(batch: list[tuple[Any, ...]]) -> list[bytes | None]:
            return [
                vault.seal_vitals_summary(_summary(stats), column=column, row=summary_row(device, period))
                for device, period, _, *stats in batch
            ]

        return seal

    return sealer


def _summary(stats: list[float | None]) -> VitalsSummary:
    """A roll-up's statistics as the roll-up job seals them: NaN for a minimum or maximum of no rate, 0 for its sum."""
    hr_min, hr_max, hr_sum, rr_min, rr_max, rr_sum = stats
    return VitalsSummary(
        math.nan if hr_min is None else hr_min,
        math.nan if hr_max is None else hr_max,
        0.0 if hr_sum is None else hr_sum,
        math.nan if rr_min is None else rr_min,
        math.nan if rr_max is None else rr_max,
        0.0 if rr_sum is None else rr_sum,
    )


_HOLDERS = {
    "bed_readings": _Table(
        "bed_readings", _READINGS_LEFT, _READINGS_BATCH, _READINGS_SEAL, _readings_sealer, READING_BATCH_ROWS
    ),
    "bed_hourly": _rollup_table("bed_hourly", "bucket", "timestamptz", BED_HOURLY_VITALS),
    "bed_daily": _rollup_table("bed_daily", "day", "date", BED_DAILY_VITALS),
}


def _seal(conn: Conn, vault: Vault, table: _Table, last: datetime | date) -> Sealed:
    """The table's rows in clear, sealed in short transactions of a batch each (:func:`batches.in_batches`), in time
    order, up to ``last`` (the last one in clear at the start)."""
    seal, limit = table.sealer(vault), table.batch_rows

    def select(after: datetime | date) -> list[tuple[Any, ...]]:
        return conn.execute(table.batch, {"after": after, "last": last, "limit": limit}).fetchall()

    def rewrite(batch: list[tuple[Any, ...]]) -> int:
        first, second, enc = [r[0] for r in batch], [r[1] for r in batch], seal(batch)
        conn.execute(
            table.seal, {"first": first, "second": second, "enc": enc, "start": batch[0][2], "end": batch[-1][2]}
        )
        return len(batch)

    start: datetime | date = _START if isinstance(last, datetime) else date.min
    done = in_batches(
        conn, start=start, select=select, rewrite=rewrite, after=lambda b: b[-1][2], what=f"sealing {table.name}"
    )
    return Sealed(table.name, "rates", done.rows, done.batches)
