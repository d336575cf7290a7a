"""The staff board's data: every bed of a home (or of one floor) with its state right now.

Each part is one indexed query: the beds with their occupant (``bed_assignments``), the devices watching
each bed with the latest reading of its bed sensor and when it was last heard from, and the open alarms.
No names: the page takes them from the residents endpoint, whose reads are audited.

A device is offline when its gateway reported it offline (an open ``device_offline`` alarm), when it was
never heard from, or when it has been silent for three heartbeats and at least five minutes (the same rule
as the one-press risk inspection, ``supervision/risk_data.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from psycopg.rows import dict_row
from pydantic import BaseModel

from eldercare.platform.auth.service import AsyncConn

OFFLINE_HEARTBEATS = 3
OFFLINE_MIN_S = 300
PRESENCE_WINDOW = "2 days"  # a bed sensor's latest reading older than this counts as none
OUT_WINDOW_H = 12  # how far back the last reading in bed is looked for
OPEN = ("raised", "acknowledged", "attending")

Presence = Literal["in_bed", "out_of_bed", "unknown"]


class BoardDevice(BaseModel):
    code: str
    kind: str
    last_seen: datetime | None
    offline: bool
    faults: list[str]


class BoardAlarm(BaseModel):
    id: int
    kind: str
    priority: str
    state: str
    raised_at: datetime


class BoardBed(BaseModel):
    bed_id: int
    bed_code: str
    label: str
    kind: str
    building: str | None
    floor_id: int | None
    floor: str | None
    room: str | None
    resident_id: int | None
    person_code: str | None
    fall_risk: str | None
    in_hospital: bool
    presence: Presence
    reading_at: datetime | None
    out_since: datetime | None
    out_minutes: int | None
    out_longer_than_window: bool
    devices: list[BoardDevice]
    device_offline: bool
    alarms: list[BoardAlarm]


class BoardFloor(BaseModel):
    id: int
    name: str
    building: str
    level: int
    beds: int


class Board(BaseModel):
    institution_id: int
    institution_code: str
    institution_name: str
    generated_at: datetime
    out_window_hours: int = OUT_WINDOW_H
    gateway_offline: bool
    floors: list[BoardFloor]
    beds: list[BoardBed]


_BEDS = """
SELECT b.id AS bed_id, b.code AS bed_code, b.label, b.kind::text AS kind, bl.name AS building,
       f.id AS floor_id, f.name AS floor, rm.name AS room, r.id AS resident_id, r.person_code,
       r.fall_risk::text AS fall_risk,
       EXISTS (SELECT 1 FROM hospital_stays h WHERE h.resident_id = r.id AND h.during @> now()) AS in_hospital
FROM beds b
LEFT JOIN rooms rm ON rm.id = b.room_id
LEFT JOIN floors f ON f.id = rm.floor_id
LEFT JOIN buildings bl ON bl.id = f.building_id
LEFT JOIN bed_assignments ba ON ba.bed_id = b.id AND ba.during @> now()
LEFT JOIN residents r ON r.id = ba.resident_id
WHERE b.institution_id = %(i)s AND b.retired_at IS NULL AND (%(floor)s::bigint IS NULL OR f.id = %(floor)s)
  AND (%(bed)s::bigint IS NULL OR b.id = %(bed)s)
ORDER BY bl.name NULLS LAST, f.level NULLS LAST, f.name, rm.name, b.label, b.id
"""

# Devices watching the beds now (bound to the bed, or worn by its occupant), each with the latest reading of
# a bed sensor, the last reading in bed when that one shows nobody, and when it was last heard from.
_DEVICES = """
SELECT coalesce(bnd.bed_id, occ.bed_id) AS bed_id, d.code, d.kind::text AS kind, d.heartbeat_s,
       last.time AS reading_at, last.presence, back.time AS back_at, seen.at AS last_seen,
       coalesce(faults.kinds, '{}') AS faults,
       'device_offline' = ANY(coalesce(faults.kinds, '{}')) OR seen.at IS NULL
           OR now() - seen.at > make_interval(secs => greatest(%(beats)s * d.heartbeat_s, %(min_silent)s))
           AS offline
FROM device_bindings bnd
JOIN devices d ON d.id = bnd.device_id AND d.retired_at IS NULL
LEFT JOIN bed_assignments occ ON bnd.bed_id IS NULL AND occ.resident_id = bnd.resident_id AND occ.during @> now()
LEFT JOIN LATERAL (
    SELECT x.time, x.presence FROM bed_readings x
    WHERE d.kind = 'bed_sensor' AND x.device_id = d.id AND x.time > now() - %(window)s::interval
    ORDER BY x.time DESC LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT x.time FROM bed_readings x
    WHERE NOT last.presence AND x.device_id = d.id AND x.presence
      AND x.time > now() - make_interval(hours => %(out_hours)s)
    ORDER BY x.time DESC LIMIT 1
) back ON true
CROSS JOIN LATERAL (
    SELECT greatest(
        last.time,
        (SELECT max(x.time) FROM device_readings x WHERE x.device_id = d.id AND x.time > now() - interval '7 days'),
        (SELECT max(x.time) FROM device_events x WHERE x.device_id = d.id AND x.time > now() - interval '7 days'
         AND x.kind <> 'fault'),  -- a fault is the gateway speaking about the device, not the device
        (SELECT max(x.time) FROM locations x WHERE x.device_id = d.id AND x.time > now() - interval '7 days')
    ) AS at
) seen
LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT a.kind ORDER BY a.kind) AS kinds FROM alarms a
    WHERE a.device_id = d.id AND a.state IN ('raised', 'acknowledged', 'attending') AND starts_with(a.kind, 'device_')
) faults ON true
WHERE bnd.during @> now() AND (bnd.bed_id = ANY(%(beds)s) OR bnd.resident_id = ANY(%(residents)s))
ORDER BY d.kind, d.code
"""

_ALARMS = """
SELECT a.id, a.bed_id, a.kind, a.priority::text AS priority, a.state::text AS state, a.raised_at
FROM alarms a
WHERE a.institution_id = %(i)s AND a.state IN ('raised', 'acknowledged', 'attending') AND a.bed_id = ANY(%(beds)s)
ORDER BY a.priority, a.raised_at
"""

_HOME = """
SELECT i.code, i.name,
       EXISTS (SELECT 1 FROM alarms a WHERE a.institution_id = i.id AND a.kind = 'gateway_offline'
               AND a.state IN ('raised', 'acknowledged', 'attending')) AS gateway_offline
FROM institutions i WHERE i.id = %(i)s
"""

_FLOORS = """
SELECT f.id, f.name, bl.name AS building, f.level,
       (SELECT count(*) FROM rooms rm JOIN beds b ON b.room_id = rm.id
        WHERE rm.floor_id = f.id AND b.retired_at IS NULL)::int AS beds
FROM floors f JOIN buildings bl ON bl.id = f.building_id
WHERE bl.institution_id = %(i)s
ORDER BY bl.name, f.level, f.name
"""


def _presence(sensor: dict[str, Any] | None) -> Presence:
    """From the bed sensor's latest reading; unknown when there is none or the sensor is offline (its last
    reading may be hours old: a board must not say "in bed" from it)."""
    if sensor is None or sensor["presence"] is None or sensor["offline"]:
        return "unknown"
    return "in_bed" if sensor["presence"] else "out_of_bed"


def _bed(row: dict[str, Any], devices: list[dict[str, Any]], alarms: list[BoardAlarm], now: datetime) -> BoardBed:
    sensors = [d for d in devices if d["kind"] == "bed_sensor" and d["reading_at"] is not None]
    sensor = max(sensors, key=lambda d: d["reading_at"]) if sensors else None
    presence = _presence(sensor)
    out_since: datetime | None = sensor["back_at"] if sensor is not None and presence == "out_of_bed" else None
    return BoardBed(
        **row,
        presence=presence,
        reading_at=sensor["reading_at"] if sensor is not None else None,
        out_since=out_since,
        out_minutes=int((now - out_since).total_seconds() // 60) if out_since is not None else None,
        out_longer_than_window=presence == "out_of_bed" and out_since is None,
        devices=[
            BoardDevice(
                code=d["code"], kind=d["kind"], last_seen=d["last_seen"], offline=d["offline"], faults=d["faults"]
            )
            for d in devices
        ],
        device_offline=any(d["offline"] for d in devices),
        alarms=alarms,
    )


async def board(conn: AsyncConn, *, institution_id: int, floor_id: int | None, bed_id: int | None = None) -> Board:
    """The beds of a home (of one floor, or one bed), scope already checked by the caller."""
    params: dict[str, Any] = {
        "i": institution_id,
        "floor": floor_id,
        "bed": bed_id,
        "beats": OFFLINE_HEARTBEATS,
        "min_silent": OFFLINE_MIN_S,
        "window": PRESENCE_WINDOW,
        "out_hours": OUT_WINDOW_H,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_HOME, params)
        home = await cur.fetchone()
        assert home is not None  # the caller resolved the institution
        await cur.execute(_FLOORS, params)
        floors = [BoardFloor.model_validate(r) for r in await cur.fetchall()]
        await cur.execute(_BEDS, params)
        beds = await cur.fetchall()
        params["beds"] = [b["bed_id"] for b in beds]
        params["residents"] = [b["resident_id"] for b in beds if b["resident_id"] is not None]
        await cur.execute(_DEVICES, params)
        devices = await cur.fetchall()
        await cur.execute(_ALARMS, params)
        alarms = await cur.fetchall()
        await cur.execute("SELECT now() AS now")
        clock = await cur.fetchone()
    now: datetime = clock["now"] if clock is not None else datetime.now(UTC)
    by_bed: dict[int, list[dict[str, Any]]] = {}
    for device in devices:
        by_bed.setdefault(device["bed_id"], []).append(device)
    alarms_of: dict[int, list[BoardAlarm]] = {}
    for alarm in alarms:
        alarms_of.setdefault(alarm.pop("bed_id"), []).append(BoardAlarm.model_validate(alarm))
    return Board(
        institution_id=institution_id,
        institution_code=home["code"],
        institution_name=home["name"],
        generated_at=now,
        gateway_offline=home["gateway_offline"],
        floors=floors,
        beds=[_bed(b, by_bed.get(b["bed_id"], []), alarms_of.get(b["bed_id"], []), now) for b in beds],
    )
