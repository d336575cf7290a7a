"""Generate a country of homes for the map benchmark: real county codes, positions around real counties.

There is no boundary data. Each home is placed around a representative point of its county
(bench/data/county_centres.csv) with a Gaussian spread whose width is a third of the distance to the
nearest other county's point (2-40 km): tight in dense city districts, wide in large rural counties.
Counties get homes in proportion to a log-normal weight, doubled for city districts (区).

Mix and sizes, after China's figures (about 40,000 homes with 5 million beds, 300,000 community
facilities with far fewer): 40 % residential homes (beds log-normal, median 60, 10-800), 50 % community
centres (median 8, 0-60), 10 % home-care providers (no beds in rooms). Two beds a room, twelve rooms a
floor; 55 % of beds nursing type; 2 % retired. Occupancy per home ~ Beta(5, 4) (mean 56 %), each occupied
bed with a current stay and its resident; 30 % of beds also have an ended stay. Bed sensors on 30 % of the
residential homes' beds, each with one reading in the last 15 minutes.

Rows are written with COPY into temporary tables and moved into place in dependency order (the tables'
ids are GENERATED ALWAYS; the loader assigns them and resets the sequences).
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from eldercare.devices import codes

HERE = Path(__file__).resolve().parent
NextId = Callable[[str], int]
KM_PER_DEG = 111.32
KINDS = (("residential_home", 0.40), ("community_centre", 0.50), ("home_care_provider", 0.10))
SERVICES = {
    "residential_home": [("medical_care", 0.5), ("dementia_care", 0.25), ("rehabilitation", 0.4),
                         ("palliative_care", 0.1), ("respite_care", 0.2)],
    "community_centre": [("day_care", 0.8), ("meal_assistance", 0.7), ("respite_care", 0.2), ("rehabilitation", 0.15)],
    "home_care_provider": [("home_visits", 0.95), ("meal_assistance", 0.4), ("medical_care", 0.2)],
}  # fmt: skip

# table -> columns, in load order (parents first)
TABLES: dict[str, tuple[str, ...]] = {
    "institutions": ("id", "code", "name", "kind", "region_code", "address", "lon", "lat", "star_grade", "capacity",
                     "price_min", "price_max", "services", "contact_phone"),
    "buildings": ("id", "institution_id", "name"),
    "floors": ("id", "building_id", "name", "level"),
    "rooms": ("id", "floor_id", "name"),
    "beds": ("id", "institution_id", "room_id", "code", "label", "kind", "retired_at"),
    "residents": ("id", "institution_id", "person_code", "name_enc", "id_number_enc", "id_number_hash",
                  "id_number_masked", "birth_date", "sex", "status"),
    "bed_assignments": ("id", "bed_id", "resident_id", "during"),
    "devices": ("id", "institution_id", "code", "kind"),
    "device_bindings": ("id", "device_id", "bed_id", "during"),
    "bed_readings": ("time", "device_id", "presence"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class County:
    code: str
    name: str
    lon: float
    lat: float
    spread_km: float


@dataclass
class Counts:
    homes: int = 0
    beds: int = 0
    stays_now: int = 0
    stays_past: int = 0
    sensors: int = 0
    by_table: dict[str, int] = field(default_factory=dict)


def counties(conn: psycopg.Connection[Any]) -> list[County]:
    names = dict(conn.execute("SELECT code, name FROM regions WHERE level = 3").fetchall())
    with (HERE / "data" / "county_centres.csv").open(encoding="utf-8", newline="") as f:
        points = [(r["code"], float(r["lon"]), float(r["lat"])) for r in csv.DictReader(f) if r["code"] in names]
    found = []
    for code, lon, lat in points:
        nearest = min(
            math.hypot((lon - o_lon) * math.cos(math.radians(lat)), lat - o_lat)
            for o_code, o_lon, o_lat in points
            if o_code != code
        )
        spread = min(40.0, max(2.0, nearest * KM_PER_DEG / 3))
        found.append(County(code, str(names[code]), lon, lat, spread))
    return found


def _pick(rng: random.Random, weighted: Iterable[tuple[str, float]]) -> str:
    items = list(weighted)
    return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]


def _base36(n: int, width: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(width, "0")


class _Loader:
    """One connection per table, each COPYing into a temporary table while the rows are generated."""

    def __init__(self, url: str) -> None:
        self.conns: dict[str, psycopg.Connection[Any]] = {}
        self.copies: dict[str, Any] = {}
        self._ctx: list[Any] = []
        for table, columns in TABLES.items():
            conn = psycopg.connect(url)
            conn.execute(f"CREATE TEMP TABLE load_{table} AS SELECT {', '.join(columns)} FROM {table} LIMIT 0")
            cm = conn.cursor().copy(f"COPY load_{table} ({', '.join(columns)}) FROM STDIN")
            self.copies[table] = cm.__enter__()
            self._ctx.append(cm)
            self.conns[table] = conn
        self.rows = dict.fromkeys(TABLES, 0)

    def put(self, table: str, row: tuple[Any, ...]) -> None:
        self.copies[table].write_row(row)
        self.rows[table] += 1

    def finish(self) -> None:
        for cm in self._ctx:
            cm.__exit__(None, None, None)
        for table, columns in TABLES.items():
            conn = self.conns[table]
            cols = ", ".join(columns)
            overriding = "" if table == "bed_readings" else " OVERRIDING SYSTEM VALUE"
            conn.execute(f"INSERT INTO {table} ({cols}){overriding} SELECT {cols} FROM load_{table}")
            if table != "bed_readings":
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            conn.commit()
            conn.close()


def generate(url: str, *, homes: int, seed: int = 10) -> Counts:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        places = counties(conn)
        ids: dict[str, int] = {}
        for t in TABLES:
            if t != "bed_readings":
                row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()
                ids[t] = int(row[0]) if row else 0

    def next_id(table: str) -> int:
        ids[table] += 1
        return ids[table]

    weights = [rng.lognormvariate(0, 0.8) * (2.0 if c.name.endswith("区") else 1.0) for c in places]
    chosen = rng.choices(places, weights=weights, k=homes)
    load = _Loader(url)
    counts = Counts()
    seen_codes: set[str] = set()
    for n, county in enumerate(chosen, start=1):
        kind = _pick(rng, KINDS)
        code = codes.generate_uscc(rng, region6=county.code)
        while code in seen_codes:
            code = codes.generate_uscc(rng, region6=county.code)
        seen_codes.add(code)
        dx, dy = rng.gauss(0, county.spread_km), rng.gauss(0, county.spread_km)
        lat = min(53.5, max(18.2, county.lat + dy / KM_PER_DEG))
        lon = min(135.0, max(73.6, county.lon + dx / (KM_PER_DEG * math.cos(math.radians(lat)))))
        if kind == "residential_home":
            beds = int(min(800, max(10, rng.lognormvariate(math.log(60), 0.7))))
            grade: int | None = _pick_grade(rng)
            low = rng.choice([1500, 2000, 2500, 3000, 3500, 4000, 5000])
            price: tuple[float | None, float | None] = (low, low * rng.choice([1.5, 2, 2.5, 3]))
            label = "养老院"
        elif kind == "community_centre":
            beds = int(min(60, max(0, rng.lognormvariate(math.log(8), 0.6))))
            grade = rng.choice([None, 1, 2, 3])
            low = rng.choice([600, 800, 1000, 1200])
            price = (low, low * 2)
            label = "社区养老服务中心"
        else:
            beds, grade, price, label = 0, None, (None, None), "居家养老服务站"
        services = "{" + ",".join(s for s, p in SERVICES[kind] if rng.random() < p) + "}"
        iid = next_id("institutions")
        load.put(
            "institutions",
            (iid, code, f"{county.name}第{n}{label}", kind, county.code, f"{county.name}{rng.randint(1, 999)}号",
             round(lon, 6), round(lat, 6), grade, beds, price[0], price[1], services,
             f"0{rng.randint(10, 999)}-{rng.randint(1000000, 9999999)}"),
        )  # fmt: skip
        counts.homes += 1
        _beds(load, rng, next_id, iid=iid, kind=kind, beds=beds, now=now, counts=counts)
        if n % 5000 == 0:
            print(f"  generated {n} homes, {counts.beds} beds", flush=True)
    started = time.perf_counter()
    load.finish()
    print(f"  moved into place in {time.perf_counter() - started:.0f} s", flush=True)
    counts.by_table = load.rows
    return counts


def _pick_grade(rng: random.Random) -> int | None:
    return rng.choices([None, 0, 1, 2, 3, 4, 5], weights=[20, 5, 15, 25, 20, 10, 5])[0]


def _beds(
    load: _Loader, rng: random.Random, next_id: NextId, *, iid: int, kind: str, beds: int, now: datetime, counts: Counts
) -> None:
    if beds == 0:
        return
    occupancy = rng.betavariate(5, 4)
    sensors = kind == "residential_home" and rng.random() < 0.5  # half the homes, on 60 % of their beds
    room_id = floor_id = building_id = 0
    for b in range(beds):
        if b % 150 == 0:
            building_id = next_id("buildings")
            load.put("buildings", (building_id, iid, f"{b // 150 + 1}号楼"))
        if b % 24 == 0:
            floor_id = next_id("floors")
            level = (b % 150) // 24 + 1
            load.put("floors", (floor_id, building_id, f"{level}层", level))
        if b % 2 == 0:
            room_id = next_id("rooms")
            load.put("rooms", (room_id, floor_id, f"{(b % 150) // 24 + 1}{(b % 24) // 2 + 1:02d}"))
        bed_id = next_id("beds")
        retired = now - timedelta(days=rng.randint(1, 300)) if rng.random() < 0.02 else None
        bed_kind = "nursing" if rng.random() < 0.55 else "ordinary"
        load.put("beds", (bed_id, iid, room_id, "B" + _base36(bed_id, 10), f"{b + 1}", bed_kind, retired))
        counts.beds += 1
        occupied = retired is None and rng.random() < occupancy
        if rng.random() < 0.3:  # an earlier stay, ended
            end = now - timedelta(days=rng.randint(200, 400))
            _stay(
                load, rng, next_id, iid=iid, bed_id=bed_id, lower=end - timedelta(days=rng.randint(30, 900)), upper=end
            )
            counts.stays_past += 1
        if occupied:
            _stay(
                load, rng, next_id, iid=iid, bed_id=bed_id, lower=now - timedelta(days=rng.randint(1, 180)), upper=None
            )
            counts.stays_now += 1
        if sensors and rng.random() < 0.6:
            device_id = next_id("devices")
            load.put("devices", (device_id, iid, f"BS-{bed_id}", "bed_sensor"))
            binding = next_id("device_bindings")
            load.put("device_bindings", (binding, device_id, bed_id, f"[{(now - timedelta(days=400)).isoformat()},)"))
            presence = rng.random() < (0.85 if occupied else 0.03)
            load.put("bed_readings", (now - timedelta(seconds=rng.randint(1, 600)), device_id, presence))
            counts.sensors += 1


def _stay(
    load: _Loader,
    rng: random.Random,
    next_id: NextId,
    *,
    iid: int,
    bed_id: int,
    lower: datetime,
    upper: datetime | None,
) -> None:
    rid = next_id("residents")
    digest = hashlib.sha256(rid.to_bytes(8, "big")).digest()
    birth = date(1925, 1, 1) + timedelta(days=rng.randint(0, 12000))
    # Personal-data columns hold fixed bytes: generated residents carry no names or ID numbers at all.
    load.put(
        "residents",
        (rid, iid, "P" + _base36(rid, 10), b"\x00" * 28, b"\x00" * 28, digest, f"000000********{rid % 10000:04d}",
         birth, rng.choice(["male", "female"]), "admitted" if upper is None else "discharged"),
    )  # fmt: skip
    aid = next_id("bed_assignments")
    load.put("bed_assignments", (aid, bed_id, rid, f"[{lower.isoformat()},{upper.isoformat() if upper else ''})"))
