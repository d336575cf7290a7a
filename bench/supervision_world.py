"""A region for the supervision benchmarks, written in bulk: H homes of B beds each in 4205 (Yichang), D days
of daily roll-ups (devices and beds), alarms with response times, night rounds, contacts, and the last hour
of raw readings so the one-press inspection has "now" to look at.

Sizes (defaults): 200 homes x 100 beds = 20,000 beds, 40,000 devices (a bed sensor and a button per bed),
1.2 M device-days, 600 k bed-days, 20 alarms per home per day = 120,000 alarms, 1.2 M raw bed readings.
"""

from __future__ import annotations

import os
import random
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from eldercare.devices import codes

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ("420502", "420503", "420504", "420505", "420506")


def seed(url: str, *, homes: int, beds: int, days: int, end: date, rng: random.Random) -> list[int]:
    """Ids of the homes made. ``end`` is the last local day of roll-ups (the period is [end - days + 1, end])."""
    start = end - timedelta(days=days - 1)
    created = datetime(start.year, start.month, start.day, tzinfo=TZ) - timedelta(days=10)
    with psycopg.connect(url, autocommit=True) as conn:
        ids = []
        with conn.cursor().copy("COPY institutions (code, name, kind, region_code, created_at) FROM STDIN") as copy:
            for n in range(homes):
                region = DISTRICTS[n % len(DISTRICTS)]
                copy.write_row((codes.generate_uscc(rng, region6=region), f"压测养老院{n:03d}", "residential_home",
                                region, created))  # fmt: skip
        ids = [r[0] for r in conn.execute("SELECT id FROM institutions ORDER BY id").fetchall()][-homes:]
        _places(conn, ids, beds, created)
        _people(conn, ids, rng, created)
        _devices(conn, ids, created)
        _rollups(conn, start, end)
        _alarms(conn, ids, start, days)
        _rounds(conn, ids, start, days)
        _now(conn, ids[0])
        conn.execute("ANALYZE")
    return ids


def _places(conn: psycopg.Connection[Any], ids: list[int], beds: int, created: datetime) -> None:
    conn.execute("INSERT INTO buildings (institution_id, name) SELECT id, '1号楼' FROM unnest(%s::bigint[]) id", (ids,))
    conn.execute(
        "INSERT INTO floors (building_id, name, level) SELECT b.id, f || '层', f FROM buildings b,"
        " generate_series(1, 4) f WHERE b.institution_id = ANY(%s)",
        (ids,),
    )
    rooms_per_floor = max(1, beds // 4 // 5)
    conn.execute(
        "INSERT INTO rooms (floor_id, name) SELECT f.id, (f.level * 100 + r)::text FROM floors f"
        " JOIN buildings b ON b.id = f.building_id, generate_series(1, %s) r WHERE b.institution_id = ANY(%s)",
        (rooms_per_floor, ids),
    )
    rng = random.Random(7)
    rooms = conn.execute(
        "SELECT b.institution_id, r.id, r.name FROM rooms r JOIN floors f ON f.id = r.floor_id"
        " JOIN buildings b ON b.id = f.building_id WHERE b.institution_id = ANY(%s) ORDER BY r.id",
        (ids,),
    ).fetchall()
    with conn.cursor().copy("COPY beds (institution_id, room_id, code, label, kind, created_at) FROM STDIN") as copy:
        for home, room, name in rooms:
            for n in range(5):
                kind = "nursing" if rng.random() < 0.62 else "ordinary"
                copy.write_row((home, room, codes.new_bed_code(rng), f"{name}-{n + 1}", kind, created))


def _people(conn: psycopg.Connection[Any], ids: list[int], rng: random.Random, created: datetime) -> None:
    beds = conn.execute("SELECT id, institution_id FROM beds WHERE institution_id = ANY(%s) ORDER BY id", (ids,))
    occupied = [(bed, home) for bed, home in beds.fetchall() if rng.random() < 0.9]
    with conn.cursor().copy(
        "COPY residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash, id_number_masked,"
        " birth_date, sex, status) FROM STDIN"
    ) as copy:
        for _, home in occupied:
            copy.write_row((home, codes.new_person_code(rng), os.urandom(40), os.urandom(40), os.urandom(32),
                            "420502********1234", date(1940, 1, 1), "female", "admitted"))  # fmt: skip
    residents = conn.execute("SELECT id FROM residents WHERE institution_id = ANY(%s) ORDER BY id", (ids,)).fetchall()
    with conn.cursor().copy("COPY bed_assignments (bed_id, resident_id, during) FROM STDIN") as copy:
        for (bed, _), (resident,) in zip(occupied, residents, strict=True):
            copy.write_row((bed, resident, f"[{created.isoformat()},)"))
    conn.execute(
        "INSERT INTO resident_contacts (resident_id, kind, name_enc, phone_enc, phone_masked, consent_at)"
        " SELECT id, 'emergency', '\\x00', '\\x00', '138****0000', now() FROM residents"
        " WHERE institution_id = ANY(%s) AND random() < 0.95",
        (ids,),
    )


def _devices(conn: psycopg.Connection[Any], ids: list[int], created: datetime) -> None:
    for kind, prefix, heartbeat in (("bed_sensor", "BS", 60), ("button", "BT", 300)):
        conn.execute(
            "INSERT INTO devices (institution_id, code, kind, heartbeat_s, created_at)"
            " SELECT institution_id, %s || '-' || id, %s, %s, %s FROM beds WHERE institution_id = ANY(%s)",
            (prefix, kind, heartbeat, created, ids),
        )
        conn.execute(
            "INSERT INTO device_bindings (device_id, bed_id, during) SELECT d.id, b.id, tstzrange(%s, NULL)"
            " FROM devices d JOIN beds b ON d.code = %s || '-' || b.id WHERE d.institution_id = ANY(%s)",
            (created, prefix, ids),
        )


def _rollups(conn: psycopg.Connection[Any], start: date, end: date) -> None:
    # A device is online 97% of days fully; the rest part of the day.
    conn.execute(
        "INSERT INTO device_daily (day, device_id, messages, active_minutes)"
        " SELECT d::date, v.id, 1000, CASE WHEN random() < 0.97 THEN v.per_day ELSE (random() * v.per_day)::int END"
        " FROM (SELECT id, least(1440, 86400 / heartbeat_s) AS per_day FROM devices) v,"
        " generate_series(%s::date, %s::date, interval '1 day') d",
        (start, end),
    )
    conn.execute(
        "INSERT INTO bed_daily (day, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count)"
        " SELECT dd.day, dd.device_id, dd.active_minutes, dd.active_minutes, (dd.active_minutes * 0.8)::int, 0, 0"
        " FROM device_daily dd JOIN devices v ON v.id = dd.device_id WHERE v.kind = 'bed_sensor'"
    )


def _alarms(conn: psycopg.Connection[Any], ids: list[int], start: date, days: int) -> None:
    t0 = datetime(start.year, start.month, start.day, tzinfo=TZ)
    conn.execute(
        "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at, acknowledged_at,"
        " attending_at, closed_at, last_event_at)"
        " SELECT h, k.kind, k.priority::alarm_priority, 'resolved', t, t, t + ack, t + ack * 3, t + ack * 6, t"
        " FROM unnest(%s::bigint[]) h, generate_series(1, %s) n,"
        " LATERAL (SELECT %s::timestamptz + random() * %s * interval '1 day' + n * interval '0' AS t,"  # per row
        "                 (random() * random() * 400 + 5 + h * 0) * interval '1 second' AS ack,"
        "                 (n %% 5) AS pick) r,"
        " LATERAL (SELECT (ARRAY['button', 'fall', 'bed_exit', 'device_offline', 'sos'])[r.pick + 1] AS kind,"
        "     (ARRAY['emergency', 'emergency', 'urgent', 'technical', 'emergency'])[r.pick + 1] AS priority) k",
        (ids, 20 * days, t0, days),
    )


def _rounds(conn: psycopg.Connection[Any], ids: list[int], start: date, days: int) -> None:
    conn.execute(
        "INSERT INTO night_rounds (institution_id, floor_id, user_id, done_at)"
        " SELECT b.institution_id, f.id, u.id, (d::date + 1)::timestamp AT TIME ZONE 'Asia/Shanghai'"
        "        - interval '1 hour' + random() * interval '3 hours'"
        " FROM floors f JOIN buildings b ON b.id = f.building_id,"
        " generate_series(%s::date, %s::date + %s - 1, interval '1 day') d,"
        " (SELECT id FROM users ORDER BY id LIMIT 1) u"
        " WHERE b.institution_id = ANY(%s) AND random() < 0.9",
        (start, start, days, ids),
    )


def _now(conn: psycopg.Connection[Any], home: int) -> None:
    """The last hour of raw data: every bed sensor once a minute, the inspected home's every 5 s, batteries."""
    conn.execute(
        "INSERT INTO bed_readings (time, device_id, presence)"  # the pages read presence and time, not rates
        " SELECT now() - s * interval '1 minute', d.id, true FROM devices d, generate_series(1, 60) s"
        " WHERE d.kind = 'bed_sensor' AND d.institution_id <> %s",
        (home,),
    )
    conn.execute(
        "INSERT INTO bed_readings (time, device_id, presence)"
        " SELECT now() - s * interval '5 seconds', d.id, true FROM devices d, generate_series(1, 720) s"
        " WHERE d.kind = 'bed_sensor' AND d.institution_id = %s AND d.id %% 50 <> 0",  # 2% silent
        (home,),
    )
    conn.execute(
        "INSERT INTO device_readings (time, device_id, metric, value)"
        " SELECT now() - s * interval '5 minutes', d.id, 'battery', 5 + mod(d.id, 96)"
        " FROM devices d, generate_series(1, 12) s WHERE d.kind = 'button'"
    )
    conn.execute(
        "INSERT INTO alarms (institution_id, kind, priority, occurred_at, raised_at, last_event_at)"
        " SELECT %s, 'button', 'emergency', now() - n * interval '4 minutes', now() - n * interval '4 minutes', now()"
        " FROM generate_series(1, 5) n",
        (home,),
    )
