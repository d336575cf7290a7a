"""A small supervision world with figures that can be worked out by hand (see the comments), written
straight into a database of its own: four homes in three regions, users of every role, October 2026."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from eldercare.devices import codes
from eldercare.platform.auth.service import hash_password
from eldercare.platform.crypto import Vault

TZ = ZoneInfo("Asia/Shanghai")
START, END = date(2026, 10, 1), date(2026, 10, 30)  # 30 local days, long over
PASSWORD = "user-password-12"
CREATED = datetime(2026, 9, 1, tzinfo=TZ)
ADMITTED = datetime(2026, 9, 15, tzinfo=TZ)

Conn = psycopg.Connection[tuple[Any, ...]]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def days() -> list[date]:
    return [START + timedelta(days=n) for n in range((END - START).days + 1)]


@dataclass
class Home:
    id: int
    code: str
    region: str
    floors: list[int] = field(default_factory=list)
    beds: list[int] = field(default_factory=list)
    residents: list[int] = field(default_factory=list)
    devices: dict[str, int] = field(default_factory=dict)  # code -> id
    alarms: dict[str, int] = field(default_factory=dict)  # name -> id


@dataclass
class World:
    a: Home  # 420502: the home whose figures the tests work out by hand
    b: Home  # 420502: few nursing beds, everything else in order
    c: Home  # 420503: two empty nursing beds, no devices
    d: Home  # 420102 (Wuhan): outside the Yichang regulators' region
    users: dict[str, int]  # username -> id


class Seeder:
    def __init__(self, conn: Conn, vault: Vault, rng: random.Random) -> None:
        self.conn, self.vault, self.rng = conn, vault, rng

    def one(self, query: str, params: tuple[Any, ...]) -> int:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])

    def home(self, region: str, name: str) -> Home:
        code = codes.generate_uscc(self.rng, region6=region)
        home_id = self.one(
            "INSERT INTO institutions (code, name, kind, region_code, created_at) VALUES (%s, %s, 'residential_home',"
            " %s, %s) RETURNING id",
            (code, name, region, CREATED),
        )
        return Home(home_id, code, region)

    def floor(self, home: Home, name: str) -> int:
        building = self.one(
            "INSERT INTO buildings (institution_id, name) VALUES (%s, '1号楼')"
            " ON CONFLICT (institution_id, name) DO UPDATE SET name = excluded.name RETURNING id",
            (home.id,),
        )
        floor = self.one("INSERT INTO floors (building_id, name) VALUES (%s, %s) RETURNING id", (building, name))
        home.floors.append(floor)
        return floor

    def beds(self, home: Home, floor: int, room: str, kinds: list[str]) -> list[int]:
        room_id = self.one("INSERT INTO rooms (floor_id, name) VALUES (%s, %s) RETURNING id", (floor, room))
        made = []
        for n, kind in enumerate(kinds, start=1):
            bed = self.one(
                "INSERT INTO beds (institution_id, room_id, code, label, kind, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (home.id, room_id, codes.new_bed_code(self.rng), f"{room}-{n}", kind, CREATED),
            )
            made.append(bed)
        home.beds.extend(made)
        return made

    def resident(self, home: Home, bed: int, **risk: Any) -> int:
        birth = date(1936, 5, 1)
        id_number = codes.generate_id_number(self.rng, region6=home.region, birth_date=birth, sex="female")
        resident = self.one(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, status, capability, fall_risk, wander_risk)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'female', 'admitted', %s, %s, %s) RETURNING id",
            (
                home.id,
                codes.new_person_code(self.rng),
                self.vault.encrypt("王秀英", column="residents.name"),
                self.vault.encrypt(id_number, column="residents.id_number"),
                self.vault.lookup_hash(id_number),
                id_number[:6] + "********" + id_number[-4:],
                birth,
                risk.get("capability", "self_care"),
                risk.get("fall_risk", "low"),
                risk.get("wander_risk", False),
            ),
        )
        self.conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange(%s, NULL))",
            (bed, resident, ADMITTED),
        )
        home.residents.append(resident)
        return resident

    def contact(self, resident: int, *, removed: datetime | None = None) -> None:
        self.conn.execute(
            "INSERT INTO resident_contacts (resident_id, kind, name_enc, phone_enc, phone_masked, consent_at,"
            " created_at, removed_at) VALUES (%s, 'emergency', %s, %s, '138****0000', %s, %s, %s)",
            (
                resident,
                self.vault.encrypt("李建国", column="resident_contacts.name"),
                self.vault.encrypt("13800000000", column="resident_contacts.phone"),
                ADMITTED,
                ADMITTED,
                removed,
            ),
        )

    def device(self, home: Home, code: str, kind: str, *, heartbeat: int, bed: int | None = None,
               resident: int | None = None) -> int:  # fmt: skip
        device = self.one(
            "INSERT INTO devices (institution_id, code, kind, heartbeat_s, created_at) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id",
            (home.id, code, kind, heartbeat, CREATED),
        )
        if bed is not None or resident is not None:
            self.conn.execute(
                "INSERT INTO device_bindings (device_id, bed_id, resident_id, during) VALUES (%s, %s, %s,"
                " tstzrange(%s, NULL))",
                (device, bed, resident, CREATED),
            )
        home.devices[code] = device
        return device

    def daily(self, device: int, day: date, *, active: int, observed: int | None = None, occupied: int = 0) -> None:
        self.conn.execute(
            "INSERT INTO device_daily (day, device_id, messages, active_minutes) VALUES (%s, %s, %s, %s)",
            (day, device, active, active),
        )
        if observed is not None:
            self.conn.execute(
                "INSERT INTO bed_daily (day, device_id, samples, observed_minutes, occupied_minutes, hr_count,"
                " rr_count) VALUES (%s, %s, %s, %s, %s, 0, 0)",
                (day, device, observed, observed, occupied),
            )

    def alarm(self, home: Home, name: str, kind: str, priority: str, raised: datetime, *, ack: float | None = None,
              attend: float | None = None, closed: str | None = None, held_by: int | None = None,
              bed: int | None = None) -> int:  # fmt: skip
        def after(seconds: float | None) -> datetime | None:
            return None if seconds is None else raised + timedelta(seconds=seconds)

        state = closed or ("attending" if attend is not None else "acknowledged" if ack is not None else "raised")
        alarm = self.one(
            "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at, acknowledged_at,"
            " attending_at, closed_at, last_event_at, held_by, bed_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s) RETURNING id",
            (home.id, kind, priority, state, raised, raised, after(ack), after(attend),
             after(900) if closed else None, raised, held_by, bed),
        )  # fmt: skip
        home.alarms[name] = alarm
        return alarm

    def round(self, home: Home, floor: int | None, at: datetime, user: int) -> None:
        self.conn.execute(
            "INSERT INTO night_rounds (institution_id, floor_id, user_id, done_at) VALUES (%s, %s, %s, %s)",
            (home.id, floor, user, at),
        )

    def user(self, username: str, role: str, *, home: Home | None = None, region: str | None = None,
             active: bool = True) -> int:  # fmt: skip
        return self.one(
            "INSERT INTO users (username, password_hash, role, institution_id, region_code, active)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (username, hash_password(PASSWORD), role, home.id if home else None, region, active),
        )


def build(url: str, vault: Vault) -> World:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        s = Seeder(conn, vault, random.Random(20261011))
        a, b = s.home("420502", "西陵福寿院"), s.home("420502", "西陵康乐院")
        c, d = s.home("420503", "伍家岗颐养院"), s.home("420102", "江岸敬老院")
        users = {
            "sup-admin": s.user("sup-admin", "admin"),
            "sup-city": s.user("sup-city", "regulator", region="4205"),
            "sup-xiling": s.user("sup-xiling", "regulator", region="420502"),
            "sup-wuhan": s.user("sup-wuhan", "regulator", region="4201"),
            "sup-insp1": s.user("sup-insp1", "regulator", region="420502"),
            "sup-insp2": s.user("sup-insp2", "regulator", region="420503"),
            "sup-insp3": s.user("sup-insp3", "regulator", region="4205"),
            "sup-retired": s.user("sup-retired", "regulator", region="4205", active=False),
            "sup-head-a": s.user("sup-head-a", "head", home=a),
            "sup-nurse-a": s.user("sup-nurse-a", "staff", home=a),
            "sup-head-d": s.user("sup-head-d", "head", home=d),
            "sup-nurse-b": s.user("sup-nurse-b", "staff", home=b),
            "sup-family": s.user("sup-family", "family"),
        }
        nurse = users["sup-nurse-a"]

        # Home A: floors F1 (beds 0-4) and F2 (beds 5-9); 7 nursing beds of 10.
        f1, f2 = s.floor(a, "1层"), s.floor(a, "2层")
        s.beds(a, f1, "101", ["nursing", "nursing", "ordinary"])
        s.beds(a, f1, "102", ["nursing", "ordinary"])
        s.beds(a, f2, "201", ["nursing", "nursing", "nursing", "nursing", "ordinary"])
        # 8 residents in beds 0-7 all month (occupancy 8/10); beds 8 and 9 empty.
        risks: list[dict[str, Any]] = [
            {"capability": "disabled"}, {"fall_risk": "high"}, {"wander_risk": True}, {}, {}, {}, {}, {},
        ]  # fmt: skip
        for n in range(8):
            s.resident(a, a.beds[n], **risks[n])
        for n in range(6):
            s.contact(a.residents[n])
        s.contact(a.residents[6], removed=local(date(2026, 10, 10), 9))  # removed: none at the end
        # resident 7 never had one: 2 residents without an emergency contact at the end
        for n in range(10):
            s.device(a, f"BS-A{n}", "bed_sensor", heartbeat=60, bed=a.beds[n])
        s.device(a, "BT-A0", "button", heartbeat=300, bed=a.beds[0])
        s.device(a, "BT-A1", "button", heartbeat=300, bed=a.beds[1])
        for day in days():
            for n in range(9):  # bed sensors 0-8 online all day, 1200 of 1440 minutes occupied for beds 0-7
                s.daily(a.devices[f"BS-A{n}"], day, active=1440, observed=1440, occupied=1200 if n < 8 else 0)
            s.daily(a.devices["BS-A9"], day, active=720, observed=720)  # half the day
            # a button reports every 300 s: 288 minutes a day; 300 counts as 288; button 1 silent all month
            s.daily(a.devices["BT-A0"], day, active=300 if day == START else 288)
        # Alarms in October (local times); the response times are worked out in the tests.
        s.alarm(a, "button", "button", "emergency", local(date(2026, 10, 3), 10), ack=30, attend=120, closed="resolved")
        s.alarm(a, "fall", "fall", "emergency", local(date(2026, 10, 5), 3), ack=50, attend=200, closed="resolved")
        s.alarm(a, "exit", "bed_exit", "urgent", local(date(2026, 10, 7), 2), ack=400, attend=600, closed="resolved")
        s.alarm(a, "press", "button", "emergency", local(date(2026, 10, 9), 8), ack=10, attend=100, closed="cancelled")
        offline = s.alarm(a, "offline", "device_offline", "technical", local(date(2026, 10, 11), 4), closed="resolved")
        s.alarm(a, "held", "device_offline", "technical", local(date(2026, 10, 11), 4), held_by=offline)
        s.alarm(a, "sos", "sos", "emergency", local(date(2026, 10, 30), 10))  # never answered, still open
        s.alarm(a, "september", "fall", "emergency", local(date(2026, 9, 20), 10), ack=900, closed="resolved")
        # Night rounds: F1 every night at 23:00; F2 on nights 1-15 at 02:00 the next morning; the whole home on
        # night 20 at 22:00; a daytime round that does not count. Covered: 30 + 15 + 1 of 60 floor-nights.
        for n, day in enumerate(days(), start=1):
            s.round(a, f1, local(day, 23), nurse)
            if n <= 15:
                s.round(a, f2, local(day + timedelta(days=1), 2), nurse)
        s.round(a, None, local(date(2026, 10, 20), 22), nurse)
        s.round(a, f1, local(date(2026, 10, 12), 14), nurse)

        # Home B: 2 nursing beds of 5, all occupied, all with contacts, sensors online, rounds every night.
        fb = s.floor(b, "1层")
        s.beds(b, fb, "101", ["nursing", "nursing", "ordinary", "ordinary", "ordinary"])
        for n in range(5):
            s.contact(s.resident(b, b.beds[n]))
            s.device(b, f"BS-B{n}", "bed_sensor", heartbeat=60, bed=b.beds[n])
            for day in days():
                s.daily(b.devices[f"BS-B{n}"], day, active=1440, observed=1440, occupied=1300)
        for day in days():
            s.round(b, None, local(day, 23, 30), users["sup-nurse-b"])

        # Home C: two empty nursing beds, nothing else. Home D: two beds and an alarm, in Wuhan.
        s.beds(c, s.floor(c, "1层"), "101", ["nursing", "nursing"])
        s.beds(d, s.floor(d, "1层"), "101", ["ordinary", "ordinary"])
        s.alarm(d, "button", "button", "emergency", local(date(2026, 10, 4), 10), ack=5, attend=60, closed="resolved")
        return World(a, b, c, d, users)
