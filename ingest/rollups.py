"""Hourly and daily roll-ups in ordinary tables, maintained incrementally; works on the Apache edition.

Each run, in one transaction (the caller holds the maintenance lock):

1. takes the rows of ``rollup_pending`` it can see (``DELETE ... RETURNING``): the (hour, device) pairs
   that ingest batches touched, device 0 meaning the whole hour;
2. rolls up the hours that closed since the watermark (an hour closes ``lag_s`` after its end), all
   devices, from raw data, and moves the watermark;
3. recomputes the pending pairs of hours *before* the old watermark (late data), from raw data;
4. recomputes every local day that contains a recomputed hour, from the hourly rows.

Every computation is ``DELETE`` then ``INSERT ... SELECT`` from the source, so a re-run changes nothing.
Why it misses nothing: a batch's pending row commits with its readings, so when the job sees the row it
sees the readings too; a pair of an hour at or after the watermark is dropped because that hour will be
rolled up from raw data later, by a transaction that sees the readings. Hours older than the raw
retention are never recomputed: their raw data may be gone, and the roll-up is all that is left.

Heart and breathing rates are health data, sealed in every row (``vitals_enc``, migration 0028): SQL cannot see
them. Everything else (samples, minutes, the device tables) is still computed by SQL; the rates' statistics are
computed here, an hour at a time: the hour's sealed blocks are opened in one :meth:`Vault.open_vitals` call and
grouped by device with numpy, and each (hour, device) row gets its counts in clear (how many readings had a rate
says nothing of the rate) and its minimum, maximum and sum sealed (:data:`BED_HOURLY_VITALS`, bound to the row by
:func:`summary_row`); ``hr_min`` ... ``rr_sum`` stay NULL. A day combines its hours' opened summaries the same way
(:data:`BED_DAILY_VITALS`). A row without a rate of a kind has NaN minimum and maximum and 0 sum for it; a row with
neither rate has ``vitals_enc`` NULL (nothing to hide, as a reading with neither has no block).

A reading whose block does not open to its own row (a damaged byte, a block copied from another row, another key)
is left out of the rates' statistics - not counted in ``hr_count``/``rr_count`` either, so that a mean is the mean
of what opened - and logged as an error naming its device and time; it still counts as a sample, and the roll-up
goes on: one damaged row must neither stop the job (every later hour would wait behind it) nor vanish silently.
An hourly summary that does not open is left out of its day the same way. Their number is in the run's result
(``unopened``). Readings still in clear (written before 0028 and not yet sealed by ``eldercare db migrate``) are
not read: migrate seals them first.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from psycopg.types.json import Jsonb

from eldercare.ingest import locks
from eldercare.ingest.registry import Conn
from eldercare.ingest.rows import HOUR_MS
from eldercare.platform.crypto import BED_DAILY_VITALS, BED_HOURLY_VITALS, DecryptionError, Vault, VitalsSummary
from eldercare.platform.sealed_vitals import PG_EPOCH, micros_sql, summary_row

log = logging.getLogger(__name__)


# A minute of the hour as a bit of a bigint: distinct minutes are then bit_count(bit_or(...)), which is
# seven times faster than count(DISTINCT ...) (measured: 0.44 against 3.1 µs a row).
def _minute_bit(column: str) -> str:
    return f"(1::bigint << extract(minute FROM {column} AT TIME ZONE 'UTC')::int)"


_DEVICE_FILTER = "(%(devices)s::bigint[] IS NULL OR device_id = ANY(%(devices)s))"
_RANGE = f"time >= %(start)s AND time < %(end)s AND {_DEVICE_FILTER}"

# An hour's rows, the rates' part from Python (:func:`_hour_rates`): one element a device with a sealed reading.
_BED_HOURS = f"""
INSERT INTO bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count, vitals_enc)
SELECT b.bucket, b.device_id, b.samples, b.observed, b.occupied,
       coalesce(v.hr_count, 0), coalesce(v.rr_count, 0), v.vitals_enc
FROM (
    SELECT time_bucket('1 hour', time) AS bucket, device_id, count(*) AS samples,
           bit_count(bit_or({_minute_bit("time")})::bit(64)) AS observed,
           coalesce(bit_count((bit_or({_minute_bit("time")}) FILTER (WHERE presence))::bit(64)), 0) AS occupied
    FROM bed_readings WHERE {_RANGE}
    GROUP BY 1, 2
) b
LEFT JOIN unnest(%(rate_devices)s::bigint[], %(hr_counts)s::integer[], %(rr_counts)s::integer[], %(sealed)s::bytea[])
    AS v(device_id, hr_count, rr_count, vitals_enc) ON v.device_id = b.device_id
"""  # noqa: S608 - composed of this module's constants only

_SEALED_READINGS = f"""
SELECT device_id, {micros_sql("time")}, vitals_enc FROM bed_readings WHERE {_RANGE} AND vitals_enc IS NOT NULL
"""  # noqa: S608 - composed of this module's constants only

_DEVICE_HOURS = f"""
INSERT INTO device_hourly (bucket, device_id, messages, active_minutes)
SELECT time_bucket('1 hour', t), device_id, count(*), bit_count(bit_or({_minute_bit("t")})::bit(64))
FROM (
    SELECT time AS t, device_id FROM bed_readings WHERE {_RANGE}
    UNION ALL SELECT time, device_id FROM device_readings WHERE {_RANGE}
    UNION ALL SELECT time, device_id FROM locations WHERE {_RANGE}
    UNION ALL SELECT time, device_id FROM accel_chunks WHERE {_RANGE}
    UNION ALL SELECT time, device_id FROM device_events WHERE {_RANGE}
) s
GROUP BY 1, 2
"""  # noqa: S608 - composed of this module's constants only

_DAY_JOIN = (
    "JOIN unnest(%(days)s::date[]) AS d(day) ON h.bucket >= (d.day::timestamp AT TIME ZONE %(tz)s)"
    " AND h.bucket < ((d.day + 1)::timestamp AT TIME ZONE %(tz)s)"
)

# A day's rows, the rates' part from Python (:func:`_day_rates`): one element a device with a day of rates.
_BED_DAYS = f"""
INSERT INTO bed_daily (day, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count, vitals_enc)
SELECT b.day, b.device_id, b.samples, b.observed, b.occupied,
       coalesce(v.hr_count, 0), coalesce(v.rr_count, 0), v.vitals_enc
FROM (
    SELECT d.day, h.device_id, sum(h.samples) AS samples, sum(h.observed_minutes) AS observed,
           sum(h.occupied_minutes) AS occupied
    FROM bed_hourly h {_DAY_JOIN}
    GROUP BY 1, 2
) b
LEFT JOIN unnest(%(rate_days)s::date[], %(rate_devices)s::bigint[], %(hr_counts)s::bigint[], %(rr_counts)s::bigint[],
                 %(sealed)s::bytea[])
    AS v(day, device_id, hr_count, rr_count, vitals_enc) ON v.day = b.day AND v.device_id = b.device_id
"""  # noqa: S608 - composed of this module's constants only

_HOURS_OF_DAYS = f"""
SELECT d.day, h.device_id, h.bucket, h.hr_count, h.rr_count, h.vitals_enc
FROM bed_hourly h {_DAY_JOIN}
WHERE h.hr_count > 0 OR h.rr_count > 0 OR h.vitals_enc IS NOT NULL
"""  # noqa: S608 - composed of this module's constants only

_DEVICE_DAYS = f"""
INSERT INTO device_daily (day, device_id, messages, active_minutes)
SELECT d.day, h.device_id, sum(h.messages), sum(h.active_minutes)
FROM device_hourly h {_DAY_JOIN}
GROUP BY 1, 2
"""  # noqa: S608 - composed of this module's constants only

_FIRST_DATA = """
SELECT least((SELECT min(time) FROM bed_readings), (SELECT min(time) FROM device_readings),
             (SELECT min(time) FROM locations), (SELECT min(time) FROM accel_chunks),
             (SELECT min(time) FROM device_events))
"""


@dataclass(frozen=True, slots=True)
class RollupResult:
    hours_rolled: int  # newly closed hours rolled up, all devices
    late_hours: int  # hours before the watermark recomputed for late data
    days: int  # local days recomputed from their hours
    pending_rows: int  # rollup_pending rows consumed
    watermark: datetime | None
    unopened: int = 0  # sealed readings and hourly summaries that did not open: left out, logged


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


def run(
    conn: Conn, *, vault: Vault, lag_s: float, timezone: str, raw_retention_s: float, max_hours: int = 48
) -> RollupResult:
    """One run of the job (see the module's docstring); ``vault`` opens the readings' rates and seals the
    roll-ups' statistics."""
    with conn.transaction():
        pending = conn.execute("DELETE FROM rollup_pending RETURNING hours, devices").fetchall()
        now_row = conn.execute("SELECT extract(epoch FROM now())::float8 * 1000").fetchone()
        assert now_row is not None
        now_ms = float(now_row[0])
        close_hour = int((now_ms - lag_s * 1000) // HOUR_MS)  # hours before this one are over
        floor_hour = math.ceil((now_ms - raw_retention_s * 1000) / HOUR_MS)  # raw data intact from here
        job = conn.execute("SELECT watermark FROM ingest_jobs WHERE job = 'rollups' FOR UPDATE").fetchone()
        watermark = job[0] if job and job[0] is not None else _first_data(conn)
        old_mark = max(int(watermark.timestamp() // 3600), floor_hour) if watermark else close_hour
        new_mark = max(old_mark, min(close_hour, old_mark + max_hours))
        recomputed: list[int] = []
        unopened = 0
        if new_mark > old_mark:
            unopened += _hours(conn, vault, old_mark, new_mark, None)
            recomputed.extend(range(old_mark, new_mark))
        late: dict[int, set[int]] = defaultdict(set)
        for hours, devices in pending:
            for hour, device in zip(hours, devices, strict=True):
                if floor_hour <= hour < old_mark:
                    late[hour].add(device)
        for hour, devices in sorted(late.items()):
            unopened += _hours(conn, vault, hour, hour + 1, None if 0 in devices else sorted(devices))
        recomputed.extend(late)
        zone = ZoneInfo(timezone)
        days = sorted({hour_start(h).astimezone(zone).date() for h in recomputed})
        if days:
            unopened += _days(conn, vault, days, timezone)
        mark_time = hour_start(new_mark)
        result = RollupResult(len(range(old_mark, new_mark)), len(late), len(days), len(pending), mark_time, unopened)
        conn.execute(
            "INSERT INTO ingest_jobs (job, watermark, last_run_at, last_result) VALUES ('rollups', %s, now(), %s)"
            " ON CONFLICT (job) DO UPDATE SET watermark = excluded.watermark, last_run_at = excluded.last_run_at,"
            " last_result = excluded.last_result",
            (mark_time, Jsonb(_as_json(result))),
        )
    return result


@dataclass(frozen=True, slots=True)
class Dropped:
    table: str
    start: datetime
    end: datetime


class RawDataGoneError(Exception):
    """A rebuild asked for hours whose raw chunks retention dropped: their roll-ups are all that is left."""

    def __init__(self, dropped: list[Dropped]) -> None:
        first, last = min(d.start for d in dropped), max(d.end for d in dropped)
        tables = ", ".join(sorted({d.table for d in dropped}))
        super().__init__(
            f"raw data of {len(dropped)} chunk(s) between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC"
            f" ({tables}) was dropped by retention; rebuilding those hours would replace their roll-ups, which"
            " are all that is left of it, with what raw data there is now"
        )
        self.dropped = dropped


@dataclass(frozen=True, slots=True)
class Rebuilt:
    hours: int
    days: int
    start: datetime  # the whole hours recomputed: [start, end)
    end: datetime
    unopened: int = 0  # sealed readings and hourly summaries that did not open: left out, logged


def rebuild(
    conn: Conn, *, vault: Vault, start: datetime, end: datetime, timezone: str, over_dropped: bool = False
) -> Rebuilt:
    """Recompute every hour in [start, end) (widened to whole hours) from raw data, and the local days that
    hold them from their hours, after a backfill that bypassed ingest; ``vault`` opens the readings' rates and
    seals the roll-ups' statistics.

    It holds the roll-up job's lock (a job beside it would delete and insert the same rows) and the retention
    job's (a chunk dropped while it reads would take its hours' roll-ups with it). Hours whose raw chunks
    retention dropped are refused with :class:`RawDataGoneError`, unless ``over_dropped`` says their raw data has
    been restored in full."""
    if end <= start:
        raise ValueError(f"the range is empty: it ends ({end.isoformat()}) at or before its start")
    first, last = int(start.timestamp() // 3600), math.ceil(end.timestamp() / 3600)
    with conn.transaction():
        locks.hold(conn, "rollups", wait=True)
        locks.hold(conn, "retention", wait=True)
        if not over_dropped:
            found = conn.execute(  # every table retention drops is one the roll-ups read
                "SELECT table_name, range_start, range_end FROM raw_dropped WHERE range_start < %s AND range_end > %s"
                " ORDER BY range_start, table_name",
                (hour_start(last), hour_start(first)),
            ).fetchall()
            if found:
                raise RawDataGoneError([Dropped(t, s, e) for t, s, e in found])
        unopened = _hours(conn, vault, first, last, None)
        zone = ZoneInfo(timezone)
        days = sorted({hour_start(h).astimezone(zone).date() for h in range(first, last)})
        if days:
            unopened += _days(conn, vault, days, timezone)
    return Rebuilt(last - first, len(days), hour_start(first), hour_start(last), unopened)


def _first_data(conn: Conn) -> datetime | None:
    row = conn.execute(_FIRST_DATA).fetchone()
    return row[0] if row else None


def _hours(conn: Conn, vault: Vault, start_hour: int, end_hour: int, devices: list[int] | None) -> int:
    """Recompute the hours [start_hour, end_hour) of ``devices`` (None: all); the number of readings left out."""
    params: dict[str, Any] = {"start": hour_start(start_hour), "end": hour_start(end_hour), "devices": devices}
    for table in ("bed_hourly", "device_hourly"):
        conn.execute(f"DELETE FROM {table} WHERE bucket >= %(start)s AND bucket < %(end)s AND {_DEVICE_FILTER}", params)  # noqa: S608 - fixed names
    unopened = 0
    for hour in range(start_hour, end_hour):  # an hour at a time: a large home's hour is 360,000 readings
        bucket = hour_start(hour)
        one: dict[str, Any] = {"start": bucket, "end": hour_start(hour + 1), "devices": devices}
        rates, left_out = _hour_rates(conn, vault, bucket, one)
        conn.execute(_BED_HOURS, one | rates)
        unopened += left_out
    conn.execute(_DEVICE_HOURS, params)
    return unopened


def _hour_rates(conn: Conn, vault: Vault, bucket: datetime, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The rates' statistics of one hour's sealed readings by device (``_BED_HOURS``' parameters), and the number of
    readings whose block did not open (logged here). Opened in one call and grouped by device with numpy, not a
    loop a reading: an hour of a large home is hundreds of thousands of them."""
    rows = conn.cursor(binary=True).execute(_SEALED_READINGS, params).fetchall()
    if not rows:
        return {"rate_devices": [], "hr_counts": [], "rr_counts": [], "sealed": []}, 0
    # three passes, not zip(*rows), whose iterator a row set the collector going over every row: 0.2-0.4 s of an
    # hour of 1000 devices (360,000 readings), against 0.03 s
    device_col, micros_col, blobs = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    opened = vault.open_vitals(micros_col, device_col, blobs)
    devices = np.asarray(device_col, dtype=np.int64)
    unopened = np.flatnonzero(~opened.ok)
    if unopened.size:
        _log_unopened(bucket, devices[unopened], np.asarray(micros_col, dtype=np.int64)[unopened])
    order = np.argsort(devices, kind="stable")
    ids, starts = np.unique(devices[order], return_index=True)
    hr, rr = opened.hr[order], opened.rr[order]  # NaN: no such rate, or a block that did not open
    hr_counts = np.add.reduceat((~np.isnan(hr)).astype(np.int64), starts)
    rr_counts = np.add.reduceat((~np.isnan(rr)).astype(np.int64), starts)
    stats = zip(
        np.fmin.reduceat(hr, starts).tolist(),
        np.fmax.reduceat(hr, starts).tolist(),
        np.add.reduceat(np.nan_to_num(hr, nan=0.0), starts).tolist(),
        np.fmin.reduceat(rr, starts).tolist(),
        np.fmax.reduceat(rr, starts).tolist(),
        np.add.reduceat(np.nan_to_num(rr, nan=0.0), starts).tolist(),
        strict=True,
    )
    sealed: list[bytes | None] = []
    for device, hr_count, rr_count, summary in zip(ids.tolist(), hr_counts, rr_counts, stats, strict=True):
        if hr_count == 0 and rr_count == 0:  # every block of the device's hour failed to open: nothing to hide
            sealed.append(None)
        else:
            row = summary_row(device, bucket)
            sealed.append(vault.seal_vitals_summary(VitalsSummary(*summary), column=BED_HOURLY_VITALS, row=row))
    rates = {"rate_devices": ids.tolist(), "hr_counts": hr_counts.tolist(), "rr_counts": rr_counts.tolist()}
    return {**rates, "sealed": sealed}, int(unopened.size)


_NAMED = 10  # readings named in the log line of an hour's unopened ones; the rest are counted


def _log_unopened(bucket: datetime, devices: np.ndarray[Any, Any], micros: np.ndarray[Any, Any]) -> None:
    named = ", ".join(
        f"device {device} at {(PG_EPOCH + timedelta(microseconds=m)).isoformat()}"
        for device, m in zip(devices[:_NAMED].tolist(), micros[:_NAMED].tolist(), strict=True)
    )
    more = f" and {devices.size - _NAMED} more" if devices.size > _NAMED else ""
    log.error(
        "roll-up of %s: %d bed reading(s) whose sealed rates do not open to their row (a damaged or moved block, or"
        " another key) left out of the rates: %s%s",
        bucket.isoformat(), devices.size, named, more,
    )  # fmt: skip


def _days(conn: Conn, vault: Vault, days: list[date], timezone: str) -> int:
    """Recompute ``days`` from their hours; the number of hourly summaries left out."""
    params: dict[str, Any] = {"days": days, "tz": timezone}
    conn.execute("DELETE FROM bed_daily WHERE day = ANY(%(days)s::date[])", params)
    conn.execute("DELETE FROM device_daily WHERE day = ANY(%(days)s::date[])", params)
    rates, unopened = _day_rates(conn, vault, params)
    conn.execute(_BED_DAYS, params | rates)
    conn.execute(_DEVICE_DAYS, params)
    return unopened


@dataclass(slots=True)
class _Day:
    """A device's day of rates, combined hour by hour."""

    hr_count: int = 0
    rr_count: int = 0
    hr_min: float = math.nan
    hr_max: float = math.nan
    hr_sum: float = 0.0
    rr_min: float = math.nan
    rr_max: float = math.nan
    rr_sum: float = 0.0

    def add(self, hr_count: int, rr_count: int, hour: VitalsSummary) -> None:
        self.hr_count += hr_count
        self.rr_count += rr_count
        self.hr_min, self.hr_max = _fmin(self.hr_min, hour.hr_min), _fmax(self.hr_max, hour.hr_max)
        self.rr_min, self.rr_max = _fmin(self.rr_min, hour.rr_min), _fmax(self.rr_max, hour.rr_max)
        self.hr_sum += hour.hr_sum
        self.rr_sum += hour.rr_sum

    def summary(self) -> VitalsSummary:
        return VitalsSummary(self.hr_min, self.hr_max, self.hr_sum, self.rr_min, self.rr_max, self.rr_sum)


def _fmin(a: float, b: float) -> float:
    """The smaller, NaN meaning none (as numpy's ``fmin``)."""
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _fmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def _day_rates(conn: Conn, vault: Vault, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The rates' statistics of ``days`` by device, from their hours' sealed summaries (``_BED_DAYS``' parameters),
    and the number of hourly summaries that did not open (logged here, and left out: counts and all, so that the
    day's mean is the mean of what it holds)."""
    combined: dict[tuple[date, int], _Day] = defaultdict(_Day)
    unopened = 0
    for day, device, bucket, hr_count, rr_count, blob in conn.execute(_HOURS_OF_DAYS, params):
        hour = _open_hour(vault, device, bucket, blob)
        if hour is None:
            log.error(
                "roll-up of day %s: the sealed rates of device %d's hour %s are missing or do not open (a damaged"
                " or moved summary, or another key): left out of the day",
                day, device, bucket.astimezone(UTC).isoformat(),
            )  # fmt: skip
            unopened += 1
            continue
        combined[(day, device)].add(hr_count, rr_count, hour)
    keys = sorted(combined)
    sealed = [
        vault.seal_vitals_summary(combined[key].summary(), column=BED_DAILY_VITALS, row=summary_row(key[1], key[0]))
        for key in keys
    ]
    rates = {
        "rate_days": [day for day, _ in keys],
        "rate_devices": [device for _, device in keys],
        "hr_counts": [combined[key].hr_count for key in keys],
        "rr_counts": [combined[key].rr_count for key in keys],
    }
    return {**rates, "sealed": sealed}, unopened


def _open_hour(vault: Vault, device: int, bucket: datetime, blob: bytes | None) -> VitalsSummary | None:
    """An hourly row's summary; None when it has none (but counts rates) or it does not open to its row."""
    if blob is None:
        return None
    try:
        return vault.open_vitals_summary(blob, column=BED_HOURLY_VITALS, row=summary_row(device, bucket))
    except DecryptionError:
        return None


def _as_json(result: RollupResult) -> dict[str, Any]:
    return {
        "hours_rolled": result.hours_rolled,
        "late_hours": result.late_hours,
        "days": result.days,
        "pending_rows": result.pending_rows,
        "watermark": result.watermark.isoformat() if result.watermark else None,
        "unopened": result.unopened,
    }
