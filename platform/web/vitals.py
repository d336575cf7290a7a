"""A resident's recent heart and breathing rate from ``bed_readings``, for the charts of the resident's page.

Telemetry is keyed by device, not by person: the readings that belong to a resident are those of the bed
sensors bound to their bed while they were assigned to it (or bound to them directly), each over that
time only, so a resident who moved beds keeps their own history and not the next occupant's. An hour or
less comes as the readings themselves; a longer range is averaged in ``time_bucket`` buckets of a width
that gives a few hundred points, with each bucket's minimum and maximum.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg.rows import dict_row
from pydantic import BaseModel

from eldercare.platform.auth.service import AsyncConn

RAW_UP_TO_HOURS = 1
TARGET_POINTS = 360
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

_RAW = (
    _SPANS
    + """
SELECT x.time AS t, x.heart_rate::float8 AS hr, x.heart_rate::float8 AS hr_min, x.heart_rate::float8 AS hr_max,
       x.resp_rate::float8 AS rr, x.resp_rate::float8 AS rr_min, x.resp_rate::float8 AS rr_max,
       x.presence::int::float8 AS in_bed
FROM bed_readings x JOIN spans s ON s.device_id = x.device_id AND s.during @> x.time
WHERE x.time >= %(start)s AND x.time < %(end)s
ORDER BY x.time
"""
)

_BUCKETED = (
    _SPANS
    + """
SELECT time_bucket(make_interval(secs => %(width)s), x.time) AS t,
       avg(x.heart_rate)::float8 AS hr, min(x.heart_rate)::float8 AS hr_min, max(x.heart_rate)::float8 AS hr_max,
       avg(x.resp_rate)::float8 AS rr, min(x.resp_rate)::float8 AS rr_min, max(x.resp_rate)::float8 AS rr_max,
       avg(x.presence::int)::float8 AS in_bed
FROM bed_readings x JOIN spans s ON s.device_id = x.device_id AND s.during @> x.time
WHERE x.time >= %(start)s AND x.time < %(end)s
GROUP BY 1 ORDER BY 1
"""
)


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


async def vitals(conn: AsyncConn, *, resident_id: int, end: datetime, hours: int) -> Vitals:
    start = end - timedelta(hours=hours)
    width = bucket_width(hours)
    params = {"r": resident_id, "start": start, "end": end, "width": width}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_RAW if width is None else _BUCKETED, params)
        rows = await cur.fetchall()
    return Vitals(
        resident_id=resident_id,
        start=start,
        end=end,
        bucket_s=width,
        t=[r["t"].timestamp() for r in rows],
        hr=[r["hr"] for r in rows],
        hr_min=[r["hr_min"] for r in rows],
        hr_max=[r["hr_max"] for r in rows],
        rr=[r["rr"] for r in rows],
        rr_min=[r["rr_min"] for r in rows],
        rr_max=[r["rr_max"] for r in rows],
        in_bed=[r["in_bed"] for r in rows],
    )
