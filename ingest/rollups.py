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
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from eldercare.ingest import locks
from eldercare.ingest.registry import Conn
from eldercare.ingest.rows import HOUR_MS


# A minute of the hour as a bit of a bigint: distinct minutes are then bit_count(bit_or(...)), which is
# seven times faster than count(DISTINCT ...) (measured: 0.44 against 3.1 µs a row).
def _minute_bit(column: str) -> str:
    return f"(1::bigint << extract(minute FROM {column} AT TIME ZONE 'UTC')::int)"


_DEVICE_FILTER = "(%(devices)s::bigint[] IS NULL OR device_id = ANY(%(devices)s))"
_RANGE = f"time >= %(start)s AND time < %(end)s AND {_DEVICE_FILTER}"

_BED_HOURS = f"""
INSERT INTO bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes,
                        hr_count, hr_min, hr_max, hr_sum, rr_count, rr_min, rr_max, rr_sum)
SELECT time_bucket('1 hour', time), device_id, count(*),
       bit_count(bit_or({_minute_bit("time")})::bit(64)),
       coalesce(bit_count((bit_or({_minute_bit("time")}) FILTER (WHERE presence))::bit(64)), 0),
       count(heart_rate), min(heart_rate), max(heart_rate), sum(heart_rate::float8),
       count(resp_rate), min(resp_rate), max(resp_rate), sum(resp_rate::float8)
FROM bed_readings WHERE {_RANGE}
GROUP BY 1, 2
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

_BED_DAYS = f"""
INSERT INTO bed_daily (day, device_id, samples, observed_minutes, occupied_minutes,
                       hr_count, hr_min, hr_max, hr_sum, rr_count, rr_min, rr_max, rr_sum)
SELECT d.day, h.device_id, sum(h.samples), sum(h.observed_minutes), sum(h.occupied_minutes),
       sum(h.hr_count), min(h.hr_min), max(h.hr_max), sum(h.hr_sum),
       sum(h.rr_count), min(h.rr_min), max(h.rr_max), sum(h.rr_sum)
FROM bed_hourly h {_DAY_JOIN}
GROUP BY 1, 2
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


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


def run(conn: Conn, *, lag_s: float, timezone: str, raw_retention_s: float, max_hours: int = 48) -> RollupResult:
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
        if new_mark > old_mark:
            _hours(conn, old_mark, new_mark, None)
            recomputed.extend(range(old_mark, new_mark))
        late: dict[int, set[int]] = defaultdict(set)
        for hours, devices in pending:
            for hour, device in zip(hours, devices, strict=True):
                if floor_hour <= hour < old_mark:
                    late[hour].add(device)
        for hour, devices in sorted(late.items()):
            _hours(conn, hour, hour + 1, None if 0 in devices else sorted(devices))
        recomputed.extend(late)
        zone = ZoneInfo(timezone)
        days = sorted({hour_start(h).astimezone(zone).date() for h in recomputed})
        if days:
            _days(conn, days, timezone)
        mark_time = hour_start(new_mark)
        result = RollupResult(len(range(old_mark, new_mark)), len(late), len(days), len(pending), mark_time)
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


def rebuild(conn: Conn, *, start: datetime, end: datetime, timezone: str, over_dropped: bool = False) -> Rebuilt:
    """Recompute every hour in [start, end) (widened to whole hours) from raw data, and the local days that
    hold them from their hours, after a backfill that bypassed ingest.

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
        _hours(conn, first, last, None)
        zone = ZoneInfo(timezone)
        days = sorted({hour_start(h).astimezone(zone).date() for h in range(first, last)})
        if days:
            _days(conn, days, timezone)
    return Rebuilt(last - first, len(days), hour_start(first), hour_start(last))


def _first_data(conn: Conn) -> datetime | None:
    row = conn.execute(_FIRST_DATA).fetchone()
    return row[0] if row else None


def _hours(conn: Conn, start_hour: int, end_hour: int, devices: list[int] | None) -> None:
    params: dict[str, Any] = {"start": hour_start(start_hour), "end": hour_start(end_hour), "devices": devices}
    for table in ("bed_hourly", "device_hourly"):
        conn.execute(f"DELETE FROM {table} WHERE bucket >= %(start)s AND bucket < %(end)s AND {_DEVICE_FILTER}", params)  # noqa: S608 - fixed names
    conn.execute(_BED_HOURS, params)
    conn.execute(_DEVICE_HOURS, params)


def _days(conn: Conn, days: list[date], timezone: str) -> None:
    params = {"days": days, "tz": timezone}
    conn.execute("DELETE FROM bed_daily WHERE day = ANY(%(days)s::date[])", params)
    conn.execute("DELETE FROM device_daily WHERE day = ANY(%(days)s::date[])", params)
    conn.execute(_BED_DAYS, params)
    conn.execute(_DEVICE_DAYS, params)


def _as_json(result: RollupResult) -> dict[str, Any]:
    return {
        "hours_rolled": result.hours_rolled,
        "late_hours": result.late_hours,
        "days": result.days,
        "pending_rows": result.pending_rows,
        "watermark": result.watermark.isoformat() if result.watermark else None,
    }
