"""What the one-press risk inspection reads about a home, now: one query per finding, each indexed."""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg.rows import dict_row

from eldercare.platform.auth.service import AsyncConn

LOW_BATTERY = 20.0  # percent
OFFLINE_HEARTBEATS = 3  # a device silent for three heartbeats (and at least 5 minutes) is offline
OVERDUE_ACK_S = 300  # raised and not acknowledged for 5 minutes
OVERDUE_OPEN_S = 1800  # acknowledged or attended but not resolved after 30 minutes
GATEWAY_SILENCE_S = 120
BED_WATCHERS = ("bed_sensor", "fall_radar")

# Every device in service with its place now, last message, battery and open fault alarms.
DEVICES = """
SELECT d.id, d.code, d.kind::text AS kind, d.heartbeat_s, bnd.bed_id, bnd.resident_id, bed.label AS bed,
       seen.at AS last_seen,
       extract(epoch FROM now() - seen.at)::float8 AS silent_s,
       bat.value::float8 AS battery,
       EXISTS (SELECT 1 FROM alarms a WHERE a.device_id = d.id AND a.state IN ('raised', 'acknowledged', 'attending')
               AND a.kind = 'device_offline') AS offline_alarm,
       EXISTS (SELECT 1 FROM alarms a WHERE a.device_id = d.id AND a.state IN ('raised', 'acknowledged', 'attending')
               AND a.kind IN ('device_sensor_error', 'device_tamper')) AS faulty
FROM devices d
LEFT JOIN device_bindings bnd ON bnd.device_id = d.id AND bnd.during @> now()
LEFT JOIN beds bed ON bed.id = bnd.bed_id
LEFT JOIN LATERAL (
    SELECT value FROM device_readings r WHERE r.device_id = d.id AND r.metric = 'battery' ORDER BY r.time DESC LIMIT 1
) bat ON true
CROSS JOIN LATERAL (
    SELECT greatest(
        (SELECT max(time) FROM bed_readings x WHERE x.device_id = d.id),
        (SELECT max(m.t) FROM unnest(ARRAY['battery', 'smoke', 'gas', 'water']) AS k(metric)
             CROSS JOIN LATERAL (SELECT max(time) AS t FROM device_readings x
                                 WHERE x.device_id = d.id AND x.metric = k.metric) m),
        (SELECT max(time) FROM locations x WHERE x.device_id = d.id),
        (SELECT max(time) FROM accel_chunks x WHERE x.device_id = d.id),
        (SELECT max(time) FROM device_events x WHERE x.device_id = d.id),
        (SELECT max(bucket) + interval '1 hour' FROM device_hourly x WHERE x.device_id = d.id)
    ) AS at
) seen
WHERE d.institution_id = %(home)s AND d.retired_at IS NULL
ORDER BY d.code
"""

# Residents in a bed now, with what the risks need (no names: the report may leave the building).
RESIDENTS = """
SELECT r.id, r.person_code, r.capability::text AS capability, r.fall_risk::text AS fall_risk, r.wander_risk,
       bed.id AS bed_id, bed.label AS bed,
       EXISTS (SELECT 1 FROM resident_contacts c WHERE c.resident_id = r.id AND c.kind = 'emergency'
               AND c.removed_at IS NULL) AS has_emergency_contact,
       EXISTS (SELECT 1 FROM hospital_stays h WHERE h.resident_id = r.id AND h.during @> now()) AS in_hospital
FROM bed_assignments ba
JOIN beds bed ON bed.id = ba.bed_id
JOIN residents r ON r.id = ba.resident_id
WHERE bed.institution_id = %(home)s AND ba.during @> now()
ORDER BY bed.label, r.person_code
"""

ALARMS = """
SELECT a.id, a.kind, a.priority::text AS priority, a.state::text AS state, a.raised_at, bed.label AS bed,
       extract(epoch FROM now() - a.raised_at)::float8 AS age_s,
       (a.state = 'raised' AND now() - a.raised_at > make_interval(secs => %(ack)s))
       OR now() - a.raised_at > make_interval(secs => %(open)s) AS overdue
FROM alarms a LEFT JOIN beds bed ON bed.id = a.bed_id
WHERE a.institution_id = %(home)s AND a.state IN ('raised', 'acknowledged', 'attending') AND a.held_by IS NULL
ORDER BY a.raised_at
"""

RECENT = """
SELECT a.kind, count(*)::int AS n FROM alarms a
WHERE a.institution_id = %(home)s AND a.raised_at > now() - interval '24 hours' AND a.held_by IS NULL
  AND a.state <> 'cancelled'
GROUP BY a.kind
"""

GATEWAYS = """
SELECT g.gateway_id, g.name, g.last_seen_at, g.last_status,
       g.last_seen_at IS NULL OR g.last_status IN ('death', 'goodbye')
       OR now() - g.last_seen_at > make_interval(secs => %(silence)s) AS offline
FROM gateways g WHERE g.institution_id = %(home)s AND g.revoked_at IS NULL ORDER BY g.gateway_id
"""

HOME = "SELECT id, code, name, region_code FROM institutions WHERE id = %(home)s"

# The home's alarms for people raised on local days [since, until] closed with an outcome code, and the false alarms
# among them, as the supervision figures count them (migration 0015); the row for all the homes asked is the home.
OUTCOMES = """
SELECT f.coded, f.false_alarms
FROM supervision_false_alarms(ARRAY[%(home)s]::bigint[], %(since)s, %(until)s) f
WHERE f.institution_id = 0
"""


async def read(conn: AsyncConn, *, institution_id: int, since: date, until: date) -> dict[str, list[dict[str, Any]]]:
    """What the inspection needs now; the alarms' outcomes over local days [since, until]."""
    params = {
        "home": institution_id,
        "since": since,
        "until": until,
        "ack": OVERDUE_ACK_S,
        "open": OVERDUE_OPEN_S,
        "silence": GATEWAY_SILENCE_S,
    }
    found: dict[str, list[dict[str, Any]]] = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        for name, query in (
            ("home", HOME),
            ("devices", DEVICES),
            ("residents", RESIDENTS),
            ("alarms", ALARMS),
            ("recent", RECENT),
            ("gateways", GATEWAYS),
            ("outcomes", OUTCOMES),
        ):
            await cur.execute(query, params)
            found[name] = await cur.fetchall()
    return found


def offline(device: dict[str, Any]) -> bool:
    """Silent for three heartbeats (at least 5 minutes), never heard, or reported offline by its gateway."""
    silent = device["silent_s"]
    limit = max(OFFLINE_HEARTBEATS * device["heartbeat_s"], 300)
    return bool(device["offline_alarm"]) or silent is None or silent > limit


def working(device: dict[str, Any]) -> bool:
    return not offline(device) and not device["faulty"]
