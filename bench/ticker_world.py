"""A region for ``bench/ticker_tick.py``, written in bulk: what the alarm ticker's rules read on a quiet night.

Sizes (defaults): 200 homes x 100 beds = 20,000 beds, 90 % occupied (18,000 residents, 5 % of them at risk of
wandering, with a wristband); a bed sensor on every bed, bound to it, with a reading every 5 s over the last
``minutes`` (the heart and breathing rates sealed as ingest seals them, 85 % of readings in bed with both rates,
2 % of beds with a last reading out of range a second after one in range: suspects that raise nothing) and one
every 5 minutes over the 12.5 hours before (the no-presence rule's evidence that the sensor was reporting); a fix
every 30 s over the last 5 minutes per wristband (sealed, inside the home's area); a gateway per home seen 10 s
ago; 120,000 closed alarms of the past 30 days, 400 open ones (raised, acknowledged, attending) and 40 bed-exit
alarms still open with their watch; 100,000 closed bed-exit watches and 50 open ones. Rule overrides: 40 homes
with their own rows (every fifth of them disabling one rule), 400 residents with their own (one in eight
disabling a rule, some re-enabling a rule their home disabled).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from eldercare.devices import codes
from eldercare.platform.crypto import LOCATION_POSITION, Vault
from eldercare.platform.sealed_vitals import micros_of

HOME = (30.70, 111.29)  # Yichang
TICKER_RULES = ("bed_exit_night", "vitals", "wander", "no_presence", "gateway_offline", "escalation")
OVERRIDES: dict[str, list[dict[str, Any]]] = {  # what a home or a resident changes, by rule
    "bed_exit_night": [{"delay_s": 120}, {"emergency_after_s": 300}, {"delay_s": 30, "emergency_after_s": 900}],
    "vitals": [{"sustain_s": 90}, {"min_readings": 5}, {"sustain_s": 180, "min_readings": 4}],
    "wander": [{"radius_m": 300}, {"fresh_s": 600}],
    "no_presence": [{"hours": 8}, {"hours": 24}],
    "gateway_offline": [{"silence_s": 120}],
    "escalation": [{"ack_timeout_s": 120}, {"tiers": 2}, {"attend_timeout_s": 600}],
}


@dataclass(slots=True)
class World:
    homes: int
    beds: int
    residents: int
    readings: int
    fixes: int
    alarms_open: int
    rule_rows: int
    sensors: list[int]
    suspects: set[int]  # sensors whose last reading is out of range (in a window that is not)
    fed_until: datetime  # the last bed reading's time


def seed(url: str, vault: Vault, *, homes: int, beds: int, minutes: int, rng: random.Random) -> World:
    now = datetime.now(UTC)
    created = now - timedelta(days=60)
    with psycopg.connect(url, autocommit=True) as conn:
        homes_ids = _places(conn, homes, beds, created, rng)
        _people(conn, homes_ids, created, rng)
        _devices(conn, homes_ids, created)
        sensors = [r[0] for r in conn.execute("SELECT id FROM devices WHERE kind = 'bed_sensor' ORDER BY id")]
        suspects = {s for s in sensors if rng.random() < 0.02}
        readings = _readings(conn, vault, sensors, suspects, now, minutes, rng)
        fixes = _fixes(conn, vault, now, rng)
        _gateways(conn, homes_ids, now)
        _alarms(conn, homes_ids, now)
        rule_rows = _rules(conn, homes_ids, rng)
        conn.execute("ANALYZE")
        count = conn.execute(
            "SELECT (SELECT count(*) FROM beds), (SELECT count(*) FROM residents),"
            " (SELECT count(*) FROM alarms WHERE state IN ('raised', 'acknowledged', 'attending'))"
        ).fetchone()
    assert count is not None
    return World(homes, count[0], count[1], readings, fixes, count[2], rule_rows, sensors, suspects, now)


def feed(conn: psycopg.Connection[Any], vault: Vault, world: World, rng: random.Random) -> int:
    """What ingest stores while the bench runs: each sensor's readings every 5 s since the last ones, up to now
    (a suspect's newest again out of range); the number of readings."""
    steps = int((datetime.now(UTC) - world.fed_until).total_seconds() // 5)
    if steps <= 0:
        return 0
    times = [world.fed_until + timedelta(seconds=5 * k) for k in range(1, steps + 1)]
    with conn.cursor().copy(
        "COPY bed_readings (time, device_id, presence, vitals_enc) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["timestamptz", "int8", "bool", "bytea"])
        _write_window(copy, vault, world.sensors, world.suspects, times, rng)
    world.fed_until = times[-1]
    return steps * len(world.sensors) + len(world.suspects)


def advance(conn: psycopg.Connection[Any], since: datetime) -> datetime:
    """Move what is live by the time passed since ``since`` (gateways' last sign of life, the open alarms and the open
    bed-exit watches), so that every round sees the same nothing-due region; the new ``since``."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    moved: datetime = row[0]
    shift = moved - since
    with conn.transaction():
        conn.execute("UPDATE gateways SET last_seen_at = last_seen_at + %s", (shift,))
        conn.execute(
            "UPDATE alarms SET occurred_at = occurred_at + %(s)s, raised_at = raised_at + %(s)s,"
            " acknowledged_at = acknowledged_at + %(s)s, attending_at = attending_at + %(s)s,"
            " last_event_at = last_event_at + %(s)s WHERE state IN ('raised', 'acknowledged', 'attending')",
            {"s": shift},
        )
        conn.execute("UPDATE bed_exit_watches SET exited_at = exited_at + %s WHERE returned_at IS NULL", (shift,))
    return moved


def _places(conn: psycopg.Connection[Any], homes: int, beds: int, created: datetime, rng: random.Random) -> list[int]:
    with conn.cursor().copy(
        "COPY institutions (code, name, kind, region_code, lat, lon, created_at) FROM STDIN"
    ) as copy:
        for n in range(homes):
            lat, lon = HOME[0] + rng.uniform(-0.2, 0.2), HOME[1] + rng.uniform(-0.2, 0.2)
            copy.write_row((codes.generate_uscc(rng, region6="420502"), f"压测养老院{n:03d}", "residential_home",
                            "420502", lat, lon, created))  # fmt: skip
    ids = [r[0] for r in conn.execute("SELECT id FROM institutions ORDER BY id").fetchall()][-homes:]
    conn.execute("INSERT INTO buildings (institution_id, name) SELECT id, '1号楼' FROM unnest(%s::bigint[]) id", (ids,))
    conn.execute(
        "INSERT INTO floors (building_id, name, level)"
        " SELECT id, '1层', 1 FROM buildings WHERE institution_id = ANY(%s)",
        (ids,),
    )
    conn.execute(
        "INSERT INTO rooms (floor_id, name) SELECT f.id, r::text"
        " FROM floors f JOIN buildings b ON b.id = f.building_id, generate_series(1, %s) r"
        " WHERE b.institution_id = ANY(%s)",
        (beds // 2, ids),
    )
    conn.execute(
        "INSERT INTO beds (institution_id, room_id, code, label, kind, created_at)"
        " SELECT b.institution_id, r.id, 'B' || lpad((r.id * 2 + n)::text, 10, '0'), r.name || '-' || n, 'nursing', %s"
        " FROM rooms r"
        " JOIN floors f ON f.id = r.floor_id JOIN buildings b ON b.id = f.building_id, generate_series(1, 2) n"
        " WHERE b.institution_id = ANY(%s)",
        (created, ids),
    )
    return ids


def _people(conn: psycopg.Connection[Any], ids: list[int], created: datetime, rng: random.Random) -> None:
    occupied = [
        (bed, home)
        for bed, home in conn.execute("SELECT id, institution_id FROM beds WHERE institution_id = ANY(%s)", (ids,))
        if rng.random() < 0.9
    ]
    with conn.cursor().copy(
        "COPY residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash, id_number_masked,"
        " birth_date, sex, status, wander_risk, fall_risk) FROM STDIN"
    ) as copy:
        for _, home in occupied:
            copy.write_row((home, codes.new_person_code(rng), os.urandom(40), os.urandom(40), os.urandom(32),
                            "420502********1234", date(1940, 1, 1), "female", "admitted", rng.random() < 0.05,
                            "high" if rng.random() < 0.3 else "low"))  # fmt: skip
    residents = conn.execute("SELECT id FROM residents WHERE institution_id = ANY(%s) ORDER BY id", (ids,)).fetchall()
    with conn.cursor().copy("COPY bed_assignments (bed_id, resident_id, during) FROM STDIN") as copy:
        for (bed, _), (resident,) in zip(occupied, residents, strict=True):
            copy.write_row((bed, resident, f"[{created.isoformat()},)"))


def _devices(conn: psycopg.Connection[Any], ids: list[int], created: datetime) -> None:
    conn.execute(
        "INSERT INTO devices (institution_id, code, kind, created_at)"
        " SELECT institution_id, 'BS-' || id, 'bed_sensor', %s FROM beds WHERE institution_id = ANY(%s)",
        (created, ids),
    )
    conn.execute(
        "INSERT INTO device_bindings (device_id, bed_id, during) SELECT d.id, b.id, tstzrange(%s, NULL)"
        " FROM devices d JOIN beds b ON d.code = 'BS-' || b.id WHERE d.institution_id = ANY(%s)",
        (created, ids),
    )
    conn.execute(
        "INSERT INTO devices (institution_id, code, kind, created_at)"
        " SELECT institution_id, 'WB-' || id, 'wristband', %s FROM residents"
        " WHERE wander_risk AND institution_id = ANY(%s)",
        (created, ids),
    )
    conn.execute(
        "INSERT INTO device_bindings (device_id, resident_id, during) SELECT d.id, r.id, tstzrange(%s, NULL)"
        " FROM devices d JOIN residents r ON d.code = 'WB-' || r.id WHERE d.institution_id = ANY(%s)",
        (created, ids),
    )


def _readings(
    conn: psycopg.Connection[Any],
    vault: Vault,
    sensors: list[int],
    suspects: set[int],
    now: datetime,
    minutes: int,
    rng: random.Random,
) -> int:
    times = [now - timedelta(seconds=5 * k) for k in range(minutes * 12)][::-1]
    # before the window, one reading every 5 minutes back to 12.5 h ago, without rates: the no-presence rule's
    # evidence that the sensor was reporting when its window began, and enough rows that the planner probes the
    # index (the real table holds a reading every 5 s: 345 M rows a day for 20,000 beds)
    old = [times[0] - timedelta(minutes=5 * k) for k in range(1, 151)]
    with conn.cursor().copy(
        "COPY bed_readings (time, device_id, presence, vitals_enc) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["timestamptz", "int8", "bool", "bytea"])
        _write_window(copy, vault, sensors, suspects, times, rng)
        for device in sensors:
            for at in old:
                copy.write_row((at, device, True, None))
    return len(sensors) * (len(times) + len(old)) + len(suspects)


def _write_window(
    copy: psycopg.Copy, vault: Vault, sensors: list[int], suspects: set[int], times: list[datetime], rng: random.Random
) -> None:
    """Readings of every sensor at ``times`` (oldest first): 85 % in bed with both rates in range, the rest out of
    bed without; a suspect's newest in bed and out of range, a second after one in range (its window is judged and
    raises nothing, however many suspect readings the bench's feeds have added)."""
    sealer = vault.vitals_sealer()
    micros = [micros_of(t) for t in times]
    newest = len(times) - 1
    for device in sensors:
        for k, (at, us) in enumerate(zip(times, micros, strict=True)):
            if device in suspects and k == newest:
                before = at - timedelta(seconds=1)
                copy.write_row((before, device, True, sealer.seal(micros_of(before), device, 72.0, 16.0)))
                copy.write_row((at, device, True, sealer.seal(us, device, 140.0, 16.0)))
            elif rng.random() < 0.15:
                copy.write_row((at, device, False, None))
            else:
                copy.write_row((at, device, True, sealer.seal(us, device, rng.gauss(72, 6), rng.gauss(16, 2))))


def _fixes(conn: psycopg.Connection[Any], vault: Vault, now: datetime, rng: random.Random) -> int:
    worn = conn.execute(
        "SELECT d.id, i.lat, i.lon FROM devices d JOIN institutions i ON i.id = d.institution_id"
        " WHERE d.kind = 'wristband' ORDER BY d.id"
    ).fetchall()
    n = 0
    with conn.cursor().copy("COPY locations (time, device_id, position_enc) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["timestamptz", "int8", "bytea"])
        for device, lat, lon in worn:
            for k in range(10):
                fix = (lat + rng.uniform(-0.0004, 0.0004), lon + rng.uniform(-0.0004, 0.0004))  # within ~50 m
                copy.write_row(
                    (now - timedelta(seconds=30 * k), device, vault.seal_position(*fix, column=LOCATION_POSITION))
                )
                n += 1
    return n


def _gateways(conn: psycopg.Connection[Any], ids: list[int], now: datetime) -> None:
    conn.execute(
        "INSERT INTO gateways (institution_id, gateway_id, last_seen_at, last_status)"
        " SELECT id, 'gw-' || id, %s, 'heartbeat' FROM unnest(%s::bigint[]) id",
        (now - timedelta(seconds=10), ids),
    )


def _alarms(conn: psycopg.Connection[Any], ids: list[int], now: datetime) -> None:
    """Closed alarms of 30 days; open ones of the last minutes (not due yet for the default timeouts), some
    with a bed exit watch; closed and open watches."""
    conn.execute(
        "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at, acknowledged_at,"
        " attending_at, closed_at, last_event_at, resident_id, escalation_level)"
        " SELECT h, 'button', 'emergency', 'resolved', t, t, t + interval '30 s', t + interval '90 s',"
        "        t + interval '5 min', t, NULL, 1"
        " FROM unnest(%s::bigint[]) h, generate_series(1, 600) n,"
        " LATERAL (SELECT %s::timestamptz - random() * interval '30 days' + n * interval '0' AS t) r",
        (ids, now),
    )
    conn.execute(
        "INSERT INTO alarms (institution_id, kind, priority, state, device_id, bed_id, resident_id, occurred_at,"
        " raised_at, acknowledged_at, attending_at, last_event_at)"
        " SELECT d.institution_id, 'button', 'emergency', s.state::alarm_state, d.id, db.bed_id, ba.resident_id,"
        "        %(t)s, %(t)s, CASE WHEN s.state <> 'raised' THEN %(t)s END,"
        "        CASE WHEN s.state = 'attending' THEN %(t)s END, %(t)s"
        " FROM (SELECT * FROM devices WHERE kind = 'bed_sensor' ORDER BY id LIMIT 400) d"
        " JOIN device_bindings db ON db.device_id = d.id"
        " LEFT JOIN bed_assignments ba ON ba.bed_id = db.bed_id,"
        " LATERAL (SELECT (ARRAY['raised', 'acknowledged', 'attending'])[1 + d.id %% 3] AS state) s",
        {"t": now - timedelta(seconds=5)},
    )
    exits = conn.execute(
        "WITH placed AS (SELECT d.id AS device_id, d.institution_id, db.bed_id, ba.resident_id,"
        "   row_number() OVER (ORDER BY d.id DESC) AS n FROM devices d"
        "   JOIN device_bindings db ON db.device_id = d.id JOIN bed_assignments ba ON ba.bed_id = db.bed_id"
        "   WHERE d.kind = 'bed_sensor')"
        " SELECT device_id, institution_id, bed_id, resident_id, n FROM placed WHERE n <= 1090 ORDER BY n"
    ).fetchall()
    for device, home, bed, resident, n in exits[:40]:  # out of bed, raised, not back
        alarm = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " raised_at, last_event_at) VALUES (%s, 'bed_exit', 'urgent', %s, %s, %s, %s, %s, %s) RETURNING id",
            (home, device, bed, resident, now - timedelta(seconds=90 + n), now - timedelta(seconds=5), now),
        ).fetchone()
        assert alarm is not None
        conn.execute(
            "INSERT INTO bed_exit_watches (device_id, resident_id, exited_at, alarm_id) VALUES (%s, %s, %s, %s)",
            (device, resident, now - timedelta(seconds=90 + n), alarm[0]),
        )
    with conn.cursor().copy(
        "COPY bed_exit_watches (device_id, resident_id, exited_at, returned_at) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int8", "timestamptz", "timestamptz"])
        for device, _, _, resident, n in exits[40:90]:  # just out of bed
            copy.write_row((device, resident, now - timedelta(seconds=n % 20), None))
        for k in range(100_000):  # back long ago
            device, _, _, resident, _ = exits[k % len(exits)]
            at = now - timedelta(minutes=10 + k % 40_000)
            copy.write_row((device, resident, at, at + timedelta(seconds=40)))


def _rules(conn: psycopg.Connection[Any], ids: list[int], rng: random.Random) -> int:
    """Rows at every level, disabling and enabling in every order: homes that disable a rule, residents who
    disable one their home enables, and residents who enable one their home disables."""
    rows: list[tuple[int, int | None, str, bool, str]] = []
    disabled: dict[int, str] = {}
    for n, home in enumerate(rng.sample(ids, 40)):
        for rule in rng.sample(TICKER_RULES, 3):
            enabled = not (n % 5 == 0 and rule != "gateway_offline")
            if not enabled:
                disabled[home] = rule
            rows.append((home, None, rule, enabled, json.dumps(rng.choice(OVERRIDES[rule]))))
    everyone = conn.execute(
        "SELECT id, institution_id FROM residents WHERE institution_id = ANY(%s) ORDER BY id", (ids,)
    )
    residents = rng.sample(everyone.fetchall(), 400)
    for n, (resident, home) in enumerate(residents):
        rule = disabled.get(home) or rng.choice([r for r in TICKER_RULES if r != "gateway_offline"])
        enabled = home in disabled or n % 8 != 0
        rows.append((home, resident, rule, enabled, json.dumps(rng.choice(OVERRIDES[rule]))))
    with conn.cursor().copy("COPY alarm_rules (institution_id, resident_id, rule, enabled, params) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)
