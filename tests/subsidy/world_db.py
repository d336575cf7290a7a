"""Writes a :class:`~tests.subsidy.world.Scenario` into a database: the registry (homes, places, beds, residents
with encrypted personal data, stays, hospital stays, deaths), the devices and their bindings, and the
telemetry roll-ups the bed sensors and wristbands would have produced (``bed_hourly``, ``device_daily``).

The roll-ups are generated in SQL from one row per (bed sensor, night) saying what the sensor saw: someone in
bed, an empty bed, nothing at all (offline) or too little (two hours of data). ``day_hours`` adds the 16
daytime hours of every bed too, so that ``bed_hourly`` has its real size (the benchmark uses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from tests.subsidy.world import TZ, Person, Scenario, local

from eldercare.platform.crypto import Vault
from eldercare.platform.subsidy.rules import month_days

Conn = psycopg.Connection[tuple[Any, ...]]
CREATED = datetime(2024, 1, 1, tzinfo=TZ)


@dataclass
class Written:
    homes: list[int] = field(default_factory=list)  # institution id per home index
    beds: dict[str, int] = field(default_factory=dict)  # bed code -> id
    residents: dict[str, int] = field(default_factory=dict)  # person code -> id
    sensors: dict[str, int] = field(default_factory=dict)  # bed code -> bed sensor id


def _ids(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> list[int]:
    return [int(r[0]) for r in conn.execute(query, params).fetchall()]


def _places(conn: Conn, scenario: Scenario, out: Written) -> None:
    with conn.cursor().copy(
        "COPY institutions (code, name, kind, region_code, created_at, contact_phone) FROM STDIN"
    ) as cp:
        for h in scenario.homes:
            cp.write_row((h.code, h.name, h.kind, h.region, CREATED, "0717-6220000"))
    codes = [h.code for h in scenario.homes]
    found: dict[str, int] = dict(
        conn.execute("SELECT code, id FROM institutions WHERE code = ANY(%s)", (codes,)).fetchall()
    )
    out.homes = [int(found[c]) for c in codes]
    rooms: dict[tuple[int, int], int] = {}
    for i, h in enumerate(scenario.homes):
        if h.kind == "home_care_provider":
            continue
        building = _ids(
            conn, "INSERT INTO buildings (institution_id, name) VALUES (%s, '1号楼') RETURNING id", (out.homes[i],)
        )[0]
        for f in range((len(h.beds) + 19) // 20):
            floor = _ids(conn, "INSERT INTO floors (building_id, name, level) VALUES (%s, %s, %s) RETURNING id",
                         (building, f"{f + 1}层", f + 1))[0]  # fmt: skip
            for r in range(10):
                rooms[(i, f * 10 + r)] = _ids(
                    conn,
                    "INSERT INTO rooms (floor_id, name) VALUES (%s, %s) RETURNING id",
                    (floor, f"{f + 1}{r + 1:02d}"),
                )[0]
    with conn.cursor().copy("COPY beds (institution_id, room_id, code, label, kind, created_at) FROM STDIN") as cp:
        for i, h in enumerate(scenario.homes):
            for b, bed in enumerate(h.beds):
                room = None if bed.home_care else rooms[(i, b // 2)]
                cp.write_row((out.homes[i], room, bed.code, f"{b + 1}", bed.kind, CREATED))
    all_beds = [b.code for h in scenario.homes for b in h.beds]
    out.beds = {c: int(i) for c, i in conn.execute("SELECT code, id FROM beds WHERE code = ANY(%s)", (all_beds,))}


def _status(p: Person) -> str:
    if p.death_recorded:
        return "deceased"
    if p.admitted is None:
        return "registered"
    return "discharged" if p.left is not None else "admitted"


def _people(conn: Conn, scenario: Scenario, vault: Vault, out: Written) -> None:
    with conn.cursor().copy(
        "COPY residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash, id_number_masked,"
        " birth_date, sex, capability, status, created_at) FROM STDIN"
    ) as cp:
        for p in scenario.people:
            cp.write_row((
                out.homes[p.home], p.person_code, vault.encrypt("王秀英", column="residents.name"),
                vault.encrypt(p.id_number, column="residents.id_number"), vault.lookup_hash(p.id_number),
                p.id_number[:6] + "********" + p.id_number[14:], p.birth, p.sex, p.capability, _status(p), p.registered,
            ))  # fmt: skip
    codes = [p.person_code for p in scenario.people]
    out.residents = {
        c: int(i)
        for c, i in conn.execute("SELECT person_code, id FROM residents WHERE person_code = ANY(%s)", (codes,))
    }
    with conn.cursor().copy("COPY bed_assignments (bed_id, resident_id, during, end_reason) FROM STDIN") as cp:
        for p in scenario.people:
            if p.admitted is not None and p.bed is not None:
                bed = scenario.homes[p.home].beds[p.bed].code
                span = f"[{p.admitted.isoformat()},{p.left.isoformat() if p.left else ''})"
                cp.write_row((out.beds[bed], out.residents[p.person_code], span, p.left_reason))
    with conn.cursor().copy("COPY hospital_stays (resident_id, during) FROM STDIN") as cp:  # no text: only dates count
        for p in scenario.people:
            for start, end, recorded in p.hospital:
                if recorded:
                    cp.write_row((out.residents[p.person_code], f"[{start.isoformat()},{end.isoformat()})"))
    with conn.cursor().copy("COPY deaths (resident_id, died_at, source) FROM STDIN") as cp:
        for p in scenario.people:
            if p.death_recorded and p.died is not None:
                cp.write_row((out.residents[p.person_code], p.died, "institution"))


def _devices(conn: Conn, scenario: Scenario, out: Written) -> dict[str, int]:
    """A bed sensor on every bed, a wristband on the residents who wear one; the wristbands' ids by person."""
    with conn.cursor().copy("COPY devices (institution_id, code, kind, heartbeat_s, created_at) FROM STDIN") as cp:
        for i, h in enumerate(scenario.homes):
            for bed in h.beds:
                cp.write_row((out.homes[i], f"BS-{bed.code}", "bed_sensor", 60, CREATED))
        for p in scenario.people:
            if p.wristband:
                cp.write_row((out.homes[p.home], f"WB-{p.person_code}", "wristband", 120, CREATED))
    rows = conn.execute(
        "SELECT code, id FROM devices WHERE institution_id = ANY(%s) AND code ~ '^(BS|WB)-'", (out.homes,)
    ).fetchall()
    ids = {str(c): int(i) for c, i in rows}
    out.sensors = {c[3:]: i for c, i in ids.items() if c.startswith("BS-")}
    with conn.cursor().copy("COPY device_bindings (device_id, bed_id, resident_id, during) FROM STDIN") as cp:
        for code, device in out.sensors.items():
            cp.write_row((device, out.beds[code], None, f"[{CREATED.isoformat()},)"))
        for p in scenario.people:
            if p.wristband:
                cp.write_row(
                    (ids[f"WB-{p.person_code}"], None, out.residents[p.person_code], f"[{CREATED.isoformat()},)")
                )
    return {c[3:]: i for c, i in ids.items() if c.startswith("WB-")}


def here(p: Person, at: datetime) -> bool:
    """Is the person physically in their bed at ``at`` (the paper may say otherwise)?"""
    if p.away_from is not None and at >= p.away_from:
        return False
    if p.died is not None and at >= p.died:
        return False
    return not any(start <= at < end for start, end, _ in p.hospital)


def night_states(scenario: Scenario) -> dict[tuple[str, int], tuple[str, bool]]:
    """(bed code, day of month) -> (what the bed sensor saw, with vital signs?) for every bed and night."""
    states: dict[tuple[str, int], tuple[str, bool]] = {}
    month = scenario.month
    _, _, days = month_days(month)
    on_paper: dict[str, list[Person]] = {}
    for p in scenario.people:
        if p.admitted is not None and p.bed is not None:
            on_paper.setdefault(scenario.homes[p.home].beds[p.bed].code, []).append(p)
    for h in scenario.homes:
        for bed in h.beds:
            for d in range(1, days + 1):
                mid = local(month + timedelta(days=d), 2)
                who = [
                    q
                    for q in on_paper.get(bed.code, [])
                    if q.admitted and q.admitted <= mid < (q.left or mid + timedelta(1))
                ]
                occupant = who[0] if who else None
                if occupant is not None and d in occupant.offline_nights:
                    state = "offline" if d % 2 else "offline_partial"
                elif occupant is not None and here(occupant, mid) and d not in occupant.absent_nights:
                    state = "present"
                else:
                    state = "absent"
                states[(bed.code, d)] = (state, occupant.vitals if occupant is not None else False)
    return states


# The counts of readings with a heart and a breathing rate, in clear as the roll-up job writes them (what the
# evidence reads). The rates' minimum, maximum and sum the job would seal in vitals_enc (migration 0028) are left out:
# no reader of this world opens them, and sealing them a row at a time in Python would slow the making of the
# benchmark's world (millions of hours), which SQL writes here in one statement.
_HOURS = """
INSERT INTO bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count)
SELECT (n.night + make_time(22, 0, 0)) AT TIME ZONE 'Asia/Shanghai' + make_interval(hours => k.k), n.device_id,
       60, 60, o.occ, v.n, v.n
FROM w_nights n
CROSS JOIN generate_series(0, 7) k(k)
CROSS JOIN LATERAL (SELECT CASE n.state WHEN 'present' THEN CASE WHEN k.k = 4 THEN 38 ELSE 60 END ELSE 0 END AS occ) o
CROSS JOIN LATERAL (SELECT CASE WHEN n.vitals THEN o.occ ELSE 0 END AS n) v
WHERE n.state IN ('present', 'absent') OR (n.state = 'offline_partial' AND k.k < 2)
"""

_DAY_HOURS = """
INSERT INTO bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count)
SELECT (n.night + make_time(6, 0, 0)) AT TIME ZONE 'Asia/Shanghai' + make_interval(hours => k.k), n.device_id,
       60, 60, CASE WHEN n.state = 'present' AND k.k BETWEEN 6 AND 8 THEN 50 ELSE 0 END, 0, 0
FROM w_nights n CROSS JOIN generate_series(0, 15) k(k)
WHERE n.state <> 'offline'
"""


def _telemetry(conn: Conn, scenario: Scenario, out: Written, wristbands: dict[str, int], *, day_hours: bool) -> None:
    conn.execute("CREATE TEMP TABLE w_nights (device_id bigint, night date, state text, vitals boolean)")
    with conn.cursor().copy("COPY w_nights (device_id, night, state, vitals) FROM STDIN") as cp:
        for (bed, d), (state, vitals) in night_states(scenario).items():
            cp.write_row((out.sensors[bed], scenario.month + timedelta(days=d - 1), state, vitals))
    conn.execute(_HOURS)
    if day_hours:
        conn.execute(_DAY_HOURS)
    conn.execute("DROP TABLE w_nights")
    with conn.cursor().copy("COPY device_daily (day, device_id, messages, active_minutes) FROM STDIN") as cp:
        for p in scenario.people:
            if not p.wristband:
                continue
            for d in range(31):
                day = scenario.month + timedelta(days=d)
                if day.month != scenario.month.month:
                    break
                noon = local(day, 12)
                home = p.admitted is not None and p.admitted <= noon and (p.left is None or noon < p.left)
                if home and here(p, noon):
                    cp.write_row((day, wristbands[p.person_code], 700, 700))


def write(conn: Conn, scenario: Scenario, vault: Vault, *, day_hours: bool = False) -> Written:
    out = Written()
    with conn.transaction():
        _places(conn, scenario, out)
        _people(conn, scenario, vault, out)
        wristbands = _devices(conn, scenario, out)
        _telemetry(conn, scenario, out, wristbands, day_hours=day_hours)
    conn.execute("ANALYZE")
    return out
