"""A home's data for ``bench/rekey.py``, written in bulk and sealed with one data key, as the services seal it.

Sizes (defaults, ``--beds 300 --hours 10``): three homes of 100 beds, ~90 % occupied (264 residents with their names,
ID numbers and ID number hashes, two contacts each, 10 % with a wristband); a bed sensor on every bed with a reading
every 5 s over the last ``hours`` (85 % in bed with both rates sealed, the rest out of bed with none: 2.16 M
readings, 1.84 M sealed); a fix every 30 s of every wristband over the same hours; the roll-ups of ``rollup_days``
(30) hours and 365 days per bed; 60 alarms a bed (closed, their detail and outcome sealed) with two changes each
carrying a note; SOS events and inbox rows with a position; hospital stays, deaths, discharges' notes, visits' notes,
parked payloads, staff's notification channels; subsidy registers naming some residents. Every sealed column of
``rekey.sealed_tables()`` holds values, so the rekey walks each table as it would in a home.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from bench.ticker_world import _devices, _places

from eldercare.devices import codes
from eldercare.platform.crypto import (
    BED_DAILY_VITALS,
    BED_HOURLY_VITALS,
    EVENT_POSITION,
    INBOX_POSITION,
    LOCATION_POSITION,
    PARKED_PAYLOAD,
    Vault,
    VitalsSummary,
)
from eldercare.platform.sealed_vitals import micros_of, summary_row

Conn = psycopg.Connection[Any]
HOME = (30.70, 111.29)
BEDS_A_HOME = 100
READING_EVERY_S = 5  # as bench/alarm_latency.py and bench/ticker_world.py: one reading per bed every 5 s
FIX_EVERY_S = 30
ALARMS_A_BED = 60


@dataclass(frozen=True, slots=True)
class World:
    beds: int
    residents: int
    readings: int  # bed readings stored (sealed or not)


def seed(url: str, vault: Vault, *, beds: int, hours: float, rollup_days: int, rng: random.Random) -> World:
    now = datetime.now(UTC).replace(microsecond=0)
    created = now - timedelta(days=400)
    homes = max(1, beds // BEDS_A_HOME)
    with psycopg.connect(url, autocommit=True) as conn:
        ids = _places(conn, homes, BEDS_A_HOME, created, rng)
        residents = _people(conn, vault, ids, created, rng)
        _devices(conn, ids, created)
        users = _staff(conn, vault, ids)
        conn.execute(
            "INSERT INTO gateways (institution_id, gateway_id, last_seen_at, last_status)"
            " SELECT id, 'gw-' || id, now(), 'heartbeat' FROM unnest(%s::bigint[]) id",
            (ids,),
        )
        sensors = [r[0] for r in conn.execute("SELECT id FROM devices WHERE kind = 'bed_sensor' ORDER BY id")]
        readings = _readings(conn, vault, sensors, now, hours, rng)
        _fixes(conn, vault, now, hours, rng)
        _rollups(conn, vault, sensors, now, rollup_days, rng)
        _alarms(conn, vault, ids, now, rng)
        _health(conn, vault, residents, users, created, now, rng)
        _registers(conn, vault, residents, rng)
        conn.execute("VACUUM ANALYZE")
    return World(len(sensors), len(residents), readings)


def _people(conn: Conn, vault: Vault, ids: list[int], created: datetime, rng: random.Random) -> list[tuple[int, str]]:
    """Residents in 90 % of the beds, their names and ID numbers sealed and hashed; two contacts each."""
    occupied = [
        (bed, home)
        for bed, home in conn.execute("SELECT id, institution_id FROM beds WHERE institution_id = ANY(%s)", (ids,))
        if rng.random() < 0.9
    ]
    numbers: set[str] = set()
    while len(numbers) < len(occupied):
        born = date(1935, 1, 1) + timedelta(days=rng.randrange(20 * 365))
        numbers.add(
            codes.generate_id_number(rng, region6="420502", birth_date=born, sex=rng.choice(["male", "female"]))
        )
    ordered = sorted(numbers)
    with conn.cursor().copy(
        "COPY residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash, id_number_masked,"
        " birth_date, sex, status, wander_risk, fall_risk) FROM STDIN"
    ) as copy:
        for (_, home), number in zip(occupied, ordered, strict=True):
            name = vault.encrypt(f"住户{number[-6:]}", column="residents.name")
            copy.write_row((home, codes.new_person_code(rng), name,
                            vault.encrypt(number, column="residents.id_number"), vault.lookup_hash(number),
                            number[:6] + "********" + number[-4:], date(1940, 1, 1), "female", "admitted",
                            rng.random() < 0.1, "low"))  # fmt: skip
    residents = conn.execute("SELECT id FROM residents WHERE institution_id = ANY(%s) ORDER BY id", (ids,)).fetchall()
    with conn.cursor().copy("COPY bed_assignments (bed_id, resident_id, during) FROM STDIN") as copy:
        for (bed, _), (resident,) in zip(occupied, residents, strict=True):
            copy.write_row((bed, resident, f"[{created.isoformat()},)"))
    with conn.cursor().copy(
        "COPY resident_contacts (resident_id, kind, name_enc, phone_enc, phone_masked, consent_at) FROM STDIN"
    ) as copy:
        for (resident,) in residents:
            for kind in ("emergency", "family"):
                phone = f"138{rng.randrange(10**8):08d}"
                copy.write_row((resident, kind, vault.encrypt("家属", column="resident_contacts.name"),
                                vault.encrypt(phone, column="resident_contacts.phone"), "138****" + phone[-4:],
                                created))  # fmt: skip
    return [(r[0], n) for r, n in zip(residents, ordered, strict=True)]


def _staff(conn: Conn, vault: Vault, ids: list[int]) -> list[int]:
    """20 staff a home, each with two notification channels (a webhook's with its secret)."""
    conn.execute(
        "INSERT INTO users (username, password_hash, role, institution_id)"
        " SELECT 'rk' || h || '-' || n, 'x', 'staff', h FROM unnest(%s::bigint[]) h, generate_series(1, 20) n",
        (ids,),
    )
    users = [r[0] for r in conn.execute("SELECT id FROM users WHERE username LIKE 'rk%' ORDER BY id")]
    with conn.cursor().copy("COPY notification_channels (user_id, kind, address_enc, secret_enc) FROM STDIN") as copy:
        for user in users:
            address = vault.encrypt(f"u{user}@home.example", column="notification_channels.address")
            copy.write_row((user, "email", address, None))
            copy.write_row((user, "webhook_wecom", vault.encrypt("https://hook.example/x",
                            column="notification_channels.address"),
                            vault.encrypt("s3cret", column="notification_channels.secret")))  # fmt: skip
    return users


def _readings(conn: Conn, vault: Vault, sensors: list[int], now: datetime, hours: float, rng: random.Random) -> int:
    steps = int(hours * 3600 // READING_EVERY_S)
    start = now - timedelta(seconds=steps * READING_EVERY_S)
    sealer = vault.vitals_sealer()
    with conn.cursor().copy(
        "COPY bed_readings (time, device_id, presence, movement, vitals_enc) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["timestamptz", "int8", "bool", "float4", "bytea"])
        for k in range(steps):  # in time order, as ingest stores them
            at = start + timedelta(seconds=k * READING_EVERY_S)
            us = micros_of(at)
            for device in sensors:
                if rng.random() < 0.15:
                    copy.write_row((at, device, False, 0.0, None))
                else:
                    hr, rr = round(rng.gauss(72, 6), 1), round(rng.gauss(16, 2), 1)
                    copy.write_row((at, device, True, 0.2, sealer.seal(us, device, hr, rr)))
    return steps * len(sensors)


def _fixes(conn: Conn, vault: Vault, now: datetime, hours: float, rng: random.Random) -> None:
    worn = conn.execute("SELECT id FROM devices WHERE kind = 'wristband' ORDER BY id").fetchall()
    steps = int(hours * 3600 // FIX_EVERY_S)
    start = now - timedelta(seconds=steps * FIX_EVERY_S)
    with conn.cursor().copy("COPY locations (time, device_id, position_enc) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["timestamptz", "int8", "bytea"])
        for k in range(steps):
            at = start + timedelta(seconds=k * FIX_EVERY_S)
            for (device,) in worn:
                lat, lon = HOME[0] + rng.uniform(-0.001, 0.001), HOME[1] + rng.uniform(-0.001, 0.001)
                copy.write_row((at, device, vault.seal_position(lat, lon, column=LOCATION_POSITION)))


def _rollups(conn: Conn, vault: Vault, sensors: list[int], now: datetime, days: int, rng: random.Random) -> None:
    """Each bed's hours over ``days`` days and its days over a year, their statistics sealed to their row."""
    summary = VitalsSummary(58.0, 90.0, 51_000.0, 12.0, 21.0, 11_500.0)
    hour0 = now.replace(minute=0, second=0) - timedelta(days=days)
    with conn.cursor().copy(
        "COPY bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count,"
        " vitals_enc) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["timestamptz", "int8", "int4", "int2", "int2", "int4", "int4", "bytea"])
        for device in sensors:
            for h in range(days * 24):
                bucket = hour0 + timedelta(hours=h)
                blob = vault.seal_vitals_summary(summary, column=BED_HOURLY_VITALS, row=summary_row(device, bucket))
                copy.write_row((bucket, device, 720, 60, rng.randrange(40, 61), 612, 612, blob))
    day0 = now.date() - timedelta(days=365)
    with conn.cursor().copy(
        "COPY bed_daily (day, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count,"
        " vitals_enc) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["date", "int8", "int8", "int4", "int4", "int8", "int8", "bytea"])
        for device in sensors:
            for d in range(365):
                day = day0 + timedelta(days=d)
                blob = vault.seal_vitals_summary(summary, column=BED_DAILY_VITALS, row=summary_row(device, day))
                copy.write_row((day, device, 17_280, 1440, 1000, 14_688, 14_688, blob))


def _alarms(conn: Conn, vault: Vault, ids: list[int], now: datetime, rng: random.Random) -> None:
    """Closed alarms of the past year with their detail and outcome sealed, two changes each with a note; SOS events
    and inbox rows with a position."""
    sensors = conn.execute("SELECT id, institution_id FROM devices WHERE kind = 'bed_sensor' ORDER BY id").fetchall()
    with conn.cursor().copy(
        "COPY alarms (institution_id, kind, priority, state, device_id, occurred_at, raised_at, acknowledged_at,"
        " closed_at, last_event_at, outcome_code, detail_enc, outcome_enc) FROM STDIN"
    ) as copy:
        for device, home in sensors:
            for _ in range(ALARMS_A_BED):
                at = now - timedelta(seconds=rng.randrange(365 * 86_400))
                detail = json.dumps({"delay_s": 60, "presence": False})
                copy.write_row((home, "bed_exit", "urgent", "resolved", device, at, at, at + timedelta(seconds=40),
                                at + timedelta(minutes=5), at, "real_event",
                                vault.encrypt(detail, column="alarms.detail"),
                                vault.encrypt("扶回床上", column="alarms.outcome")))  # fmt: skip
    alarms = conn.execute("SELECT id FROM alarms ORDER BY id").fetchall()
    with conn.cursor().copy("COPY alarm_changes (alarm_id, actor, from_state, to_state, note_enc) FROM STDIN") as copy:
        for (alarm,) in alarms:
            copy.write_row(
                (alarm, "护工", "raised", "acknowledged", vault.encrypt("已到场", column="alarm_changes.note"))
            )
            copy.write_row(
                (alarm, "护工", "attending", "resolved", vault.encrypt("已处理", column="alarm_changes.note"))
            )
    gateways = dict(conn.execute("SELECT institution_id, id FROM gateways").fetchall())
    with conn.cursor().copy("COPY device_events (time, device_id, gateway_pk, kind, position_enc) FROM STDIN") as copy:
        for device, home in sensors:
            for _ in range(5):
                at = now - timedelta(seconds=rng.randrange(30 * 86_400))
                copy.write_row((at, device, gateways[home], "sos",
                                vault.seal_position(*HOME, column=EVENT_POSITION)))  # fmt: skip
    with conn.cursor().copy(
        "COPY alarm_inbox (event_time, device_id, institution_id, kind, position_enc) FROM STDIN"
    ) as copy:
        for device, home in sensors:
            copy.write_row((now, device, home, "sos", vault.seal_position(*HOME, column=INBOX_POSITION)))
    with conn.cursor().copy("COPY parked_messages (kind, topic, reason, payload_enc) FROM STDIN") as copy:
        for n in range(len(sensors) * 3):
            payload = json.dumps({"dev": f"BS-{n}", "hr": 70}).encode()
            copy.write_row(("quarantine", "eldercare/x/up/telemetry", "unknown device",
                            vault.seal_bytes(payload, column=PARKED_PAYLOAD)))  # fmt: skip


def _health(
    conn: Conn,
    vault: Vault,
    residents: list[tuple[int, str]],
    users: list[int],
    created: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    """Hospital stays (a fifth of the residents), deaths (20), an earlier ended stay in a bed with its note (a tenth),
    and ten visits a resident with a note."""
    beds = dict(conn.execute("SELECT resident_id, bed_id FROM bed_assignments").fetchall())
    with conn.cursor().copy(
        "COPY hospital_stays (resident_id, hospital, during, hospital_enc, note_enc) FROM STDIN"
    ) as copy:
        for resident, _ in residents[::5]:
            start = now - timedelta(days=rng.randrange(30, 300))
            copy.write_row((resident, "", f"[{start.isoformat()},{(start + timedelta(days=6)).isoformat()})",
                            vault.encrypt("市一医院", column="hospital_stays.hospital"),
                            vault.encrypt("肺炎", column="hospital_stays.note")))  # fmt: skip
    with conn.cursor().copy("COPY deaths (resident_id, died_at, source, place_enc) FROM STDIN") as copy:
        for resident, _ in residents[-20:]:
            copy.write_row((resident, now, "institution", vault.encrypt("院内", column="deaths.place")))
    with conn.cursor().copy(
        "COPY bed_assignments (bed_id, resident_id, during, end_reason, end_note_enc) FROM STDIN"
    ) as copy:
        earlier = f"[{(created - timedelta(days=90)).isoformat()},{(created - timedelta(days=60)).isoformat()})"
        for resident, _ in residents[::10]:
            copy.write_row((beds[resident], resident, earlier, "transfer",
                            vault.encrypt("转入本院", column="bed_assignments.end_note")))  # fmt: skip
    with conn.cursor().copy(
        "COPY resident_visits (resident_id, visited_at, visited_by, mode, outcome, note_enc) FROM STDIN"
    ) as copy:
        for resident, _ in residents:
            for k in range(10):
                copy.write_row((resident, now - timedelta(days=7 * k + 1), rng.choice(users), "in_person", "well",
                                vault.encrypt("一切正常", column="resident_visits.note")))  # fmt: skip


def _registers(conn: Conn, vault: Vault, residents: list[tuple[int, str]], rng: random.Random) -> None:
    """The subsidy registers: hashes of a twentieth of the residents' numbers (deaths), a tenth (hardship)."""
    imports = [
        conn.execute(
            "INSERT INTO subsidy_register_imports (register, region_code, rows, added)"
            " VALUES (%s, '420502', 0, 0) RETURNING id",
            (register,),
        ).fetchone()
        for register in ("deaths", "hardship")
    ]
    assert imports[0] is not None and imports[1] is not None
    for _, number in rng.sample(residents, len(residents) // 20):
        conn.execute(
            "INSERT INTO death_register (id_number_hash, died_on, source, import_id) VALUES (%s, %s, 'funeral', %s)",
            (vault.lookup_hash(number), date(2025, 1, 2), imports[0][0]),
        )
    for _, number in rng.sample(residents, len(residents) // 10):
        conn.execute(
            "INSERT INTO hardship_register (id_number_hash, category, valid, import_id)"
            " VALUES (%s, 'dibao', '[2025-01-01,2026-12-31]', %s)",
            (vault.lookup_hash(number), imports[1][0]),
        )
