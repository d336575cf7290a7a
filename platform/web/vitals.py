"""A resident's recent heart and breathing rate from ``bed_readings``, for the charts of the resident's page.

Telemetry is keyed by device, not by person: the readings that belong to a resident are those of the bed
sensors bound to their bed while they were assigned to it (or bound to them directly), each over that
time only, so a resident who moved beds keeps their own history and not the next occupant's. An hour or
less comes as the readings themselves; a longer range is averaged in buckets of a width that gives a few
hundred points, with each bucket's minimum and maximum.

The rates are health data, sealed at rest (``vitals_enc``, migration 0028): the database picks the
resident's readings, and this module opens the window's blocks in one call of
:meth:`~eldercare.platform.crypto.Vault.open_vitals` and averages them with numpy. A block that does not open
to its own row (copied from another row, changed, sealed under another key) is left out of the rates, its
presence still counted, and logged: one damaged row must not blank a week's chart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import PG_EPOCH_UNIX_US, micros_sql

log = logging.getLogger(__name__)

RAW_UP_TO_HOURS = 1
TARGET_POINTS = 360
# Each divides a day, so a bucket starts where TimescaleDB's time_bucket would start it (and on the minute, the hour).
_WIDTHS_S = (10, 30, 60, 120, 300, 600, 900, 1800, 3600)

# The resident's bed sensors and the time each one watched them, cut to the requested range.
_SPANS = """
WITH spans AS (
    SELECT db.device_id, db.during * tstzrange(%(start)s, %(end)s) AS during
    FROM device_bindings db JOIN devices d ON d.id = db.device_id AND d.kind = 'bed_sensor'
    WHERE db.resident_id = %(r)s AND db.during && tstzrange(%(start)s, %(end)s)
    UNION ALL
    SELECT db.device_id, db.during * ba.during * tstzrange(%(start)s, %(end)s)
    FROM bed_assignments ba
    JOIN device_bindings db ON db.bed_id = ba.bed_id AND db.resident_id IS NULL AND db.during && ba.during
    JOIN devices d ON d.id = db.device_id AND d.kind = 'bed_sensor'
    WHERE ba.resident_id = %(r)s AND ba.during && tstzrange(%(start)s, %(end)s)
)
"""

# The readings of those spans, in time order: the time as the sealed blocks are bound to it (PostgreSQL
# microseconds), the device, presence, and the sealed rates (NULL: the reading had none).
_READINGS = (
    _SPANS
    + "SELECT "
    + micros_sql("x.time")
    + """ AS micros, x.device_id, x.presence, x.vitals_enc
FROM bed_readings x JOIN spans s ON s.device_id = x.device_id AND s.during @> x.time
WHERE x.time >= %(start)s AND x.time < %(end)s
ORDER BY x.time
"""
)

_Floats: TypeAlias = npt.NDArray[np.float64]


class Vitals(BaseModel):
    """Columns of equal length, as the charts take them; ``t`` in seconds since 1970 (UTC)."""

    resident_id: int
    start: datetime
    end: datetime
    bucket_s: int | None  # None: the readings themselves
    t: list[float]
    hr: list[float | None]
    hr_min: list[float | None]
    hr_max: list[float | None]
    rr: list[float | None]
    rr_min: list[float | None]
    rr_max: list[float | None]
    in_bed: list[float | None]  # share of the bucket's readings that showed somebody in bed


def bucket_width(hours: int) -> int | None:
    """Seconds per bucket for a range of ``hours``: None (no buckets) up to an hour, else a round width."""
    if hours <= RAW_UP_TO_HOURS:
        return None
    wanted = hours * 3600 / TARGET_POINTS
    return next((w for w in _WIDTHS_S if w >= wanted), _WIDTHS_S[-1])


async def vitals(conn: AsyncConn, *, vault: Vault, resident_id: int, end: datetime, hours: int) -> Vitals:
    """The resident's chart over the ``hours`` before ``end``: the readings themselves, or buckets of
    :func:`bucket_width` seconds with the mean, minimum and maximum of each rate and the share of readings in bed.

    A week of one sensor reporting every 10 s is 60,480 readings: 75 ms (25 ms when PostgreSQL averaged the rates
    in clear), 34 ms of it on this process's CPU (fetching the rows, opening, averaging) and the rest waiting for
    the database: measured on 2 cores, too little for a thread of its own on a page's request."""
    start = end - timedelta(hours=hours)
    width = bucket_width(hours)
    async with conn.cursor(binary=True) as cur:  # bytea as it is, not in hex: less to send and decode
        await cur.execute(_READINGS, {"r": resident_id, "start": start, "end": end})
        rows = await cur.fetchall()
    n = len(rows)
    t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    devices = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    presence = np.fromiter((r[2] for r in rows), dtype=np.float64, count=n)
    hr, rr = _rates(vault, t, devices, [r[3] for r in rows], resident_id=resident_id)
    columns = _Columns(t, hr, hr, hr, rr, rr, rr, presence)
    if width is not None and rows:
        columns = _bucketed(columns, width)
    return Vitals(
        resident_id=resident_id,
        start=start,
        end=end,
        bucket_s=width,
        t=((columns.t + PG_EPOCH_UNIX_US) / 1e6).tolist(),
        hr=_listed(columns.hr),
        hr_min=_listed(columns.hr_min),
        hr_max=_listed(columns.hr_max),
        rr=_listed(columns.rr),
        rr_min=_listed(columns.rr_min),
        rr_max=_listed(columns.rr_max),
        in_bed=_listed(columns.in_bed),
    )


class _Columns(NamedTuple):
    """The chart's columns as arrays: ``t`` in PostgreSQL microseconds; NaN for no value."""

    t: npt.NDArray[np.int64]
    hr: _Floats
    hr_min: _Floats
    hr_max: _Floats
    rr: _Floats
    rr_min: _Floats
    rr_max: _Floats
    in_bed: _Floats


def _rates(
    vault: Vault, micros: npt.NDArray[np.int64], devices: npt.NDArray[np.int64], blobs: Sequence[bytes | None], *,
    resident_id: int,
) -> tuple[_Floats, _Floats]:  # fmt: skip
    """Heart and breathing rates of the readings: NaN where a reading had none (no block) or its block did not
    open, which is logged (the resident, how many, the first one's device and time; never a rate)."""
    hr = np.full(len(blobs), np.nan)
    rr = np.full(len(blobs), np.nan)
    which = np.flatnonzero(np.array([b is not None for b in blobs], dtype=bool))
    if len(which) == 0:
        return hr, rr
    opened = vault.open_vitals(micros[which].tolist(), devices[which].tolist(), [b for b in blobs if b is not None])
    hr[which], rr[which] = opened.hr, opened.rr
    if not opened.ok.all():
        bad = which[~opened.ok]
        log.warning(
            "vitals of resident %s: %d of %d sealed readings did not open and are left out of the rates"
            " (the first: device %s at %s µs since 2000-01-01)",
            resident_id, len(bad), len(which), devices[bad[0]], micros[bad[0]],
        )  # fmt: skip
    return hr, rr


def _bucketed(readings: _Columns, width: int) -> _Columns:
    """Readings in time order (at least one) averaged in buckets of ``width`` seconds: a bucket starts at a multiple
    of the width, as TimescaleDB's ``time_bucket`` starts it (every width divides a day)."""
    keys = readings.t // (width * 1_000_000)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    hr, hr_min, hr_max = _mean_min_max(readings.hr, starts)
    rr, rr_min, rr_max = _mean_min_max(readings.rr, starts)
    in_bed = np.add.reduceat(readings.in_bed, starts) / np.diff(np.r_[starts, len(keys)])
    return _Columns(keys[starts] * (width * 1_000_000), hr, hr_min, hr_max, rr, rr_min, rr_max, in_bed)


def _mean_min_max(values: _Floats, starts: npt.NDArray[np.intp]) -> tuple[_Floats, _Floats, _Floats]:
    """Per bucket (``starts``: where each begins in ``values``), the mean, minimum and maximum of the values that
    are not NaN; NaN for a bucket with none (as SQL's avg, min and max give NULL)."""
    present = ~np.isnan(values)
    counts = np.add.reduceat(present.astype(np.int64), starts)
    sums = np.add.reduceat(np.where(present, values, 0.0), starts)
    mean = np.divide(sums, counts, out=np.full(len(starts), np.nan), where=counts > 0)
    return mean, np.fmin.reduceat(values, starts), np.fmax.reduceat(values, starts)


def _listed(values: _Floats) -> list[float | None]:
    """A column for JSON: None where the value is NaN."""
    return [None if math.isnan(v) else v for v in values.tolist()]
