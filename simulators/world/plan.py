"""The plan of a world: homes, beds, residents, families, staff and devices, from a seed alone.

Every institution draws from a generator of its own (seeded with the world's seed and its number), so the
plan is a pure function of its options: the same seed and as-of date give the same plan, byte for byte.
Shares and rates used here, and why, are in ``docs/simulators.md``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from eldercare.devices import codes
from eldercare.simulators.errors import SimError
from eldercare.simulators.world import people, visits
from eldercare.simulators.world.equipment import device_plan, devices_of
from eldercare.simulators.world.model import (
    BedPlan,
    DevicePlan,
    HouseholdPlan,
    InstitutionPlan,
    PersonPlan,
    WorldPlan,
)
from eldercare.simulators.world.regions import County, counties
from eldercare.simulators.world.residents import CHINA, at, person_plan, region_of_origin, residents_of
from eldercare.simulators.world.staffing import staff_of

VENDORS = ("acme", "lianke")
HOUSEHOLDS_PER_PROVIDER = 25
_BRANDS = [
    "福寿",
    "康乐",
    "颐养",
    "夕阳红",
    "松鹤",
    "怡和",
    "仁爱",
    "温馨",
    "安康",
    "金秋",
    "惠民",
    "德馨",
    "乐龄",
    "椿萱",
    "瑞康",
    "百福",
    "长青",
    "悦心",
    "祥和",
    "慈航",
]
_PRIVATE_KINDS = ("养老院", "老年公寓", "康养中心", "颐养院", "护理院")
_ROADS = [
    "人民路",
    "解放路",
    "建设路",
    "中山路",
    "和平路",
    "幸福路",
    "滨江路",
    "新华路",
    "长江路",
    "东风路",
    "文化路",
    "青年路",
    "沿江大道",
    "发展大道",
]
_STARS = ((0, 0.25), (1, 0.20), (2, 0.25), (3, 0.18), (4, 0.09), (5, 0.03))
_PRICE_FLOOR = {0: 1200, 1: 1500, 2: 1800, 3: 2500, 4: 3500, 5: 4800}  # yuan a month, lowest offer


@dataclass(frozen=True, slots=True)
class PlanOptions:
    region: str
    institutions: int
    households: int
    seed: int
    as_of: date
    beds_min: int = 30
    beds_max: int = 120
    anchors: Path | None = None

    def check(self) -> None:
        if not 1 <= self.institutions <= 500:
            raise SimError("--institutions must be between 1 and 500")
        if not 0 <= self.households <= 2000:
            raise SimError("--households must be between 0 and 2000")
        if not 1 <= self.beds_min <= self.beds_max <= 1000:
            raise SimError("--beds LO-HI: 1 <= LO <= HI <= 1000")
        if self.as_of > datetime.now(CHINA).date():
            raise SimError("--as-of must not be in the future (ages and admissions refer to it)")


def make_plan(options: PlanOptions) -> WorldPlan:
    options.check()
    places = counties(options.region, anchors=options.anchors)
    taken: set[str] = set()
    names: set[str] = set()
    homes = [_home(options, places, number=i + 1, taken=taken, names=names) for i in range(options.institutions)]
    for p, share in enumerate(_shares(options.households)):
        number = options.institutions + p + 1
        homes.append(
            _provider(options, places, number=number, households=share, taken=taken, names=names, diligent=p % 2 == 0)
        )
    return WorldPlan(
        region=options.region,
        institutions_asked=options.institutions,
        households_asked=options.households,
        seed=options.seed,
        as_of=options.as_of.isoformat(),
        beds_min=options.beds_min,
        beds_max=options.beds_max,
        institutions=homes,
    )


def _shares(households: int) -> list[int]:
    """Households per home-care provider: 25 each, the last one the rest; from 6 to 25 households two providers share
    them, so that a small world has two providers whose visits to elders living alone can be compared."""
    if 6 <= households <= HOUSEHOLDS_PER_PROVIDER:
        return [households - households // 2, households // 2]
    providers = math.ceil(households / HOUSEHOLDS_PER_PROVIDER)
    return [min(HOUSEHOLDS_PER_PROVIDER, households - p * HOUSEHOLDS_PER_PROVIDER) for p in range(providers)]


def _rng(options: PlanOptions, number: int) -> random.Random:
    return random.Random(f"eldercare-world:{options.seed}:{number}")  # noqa: S311 - reproducible test data


def _code(rng: random.Random, county: County, kind: codes.InstitutionKind, taken: set[str]) -> str:
    while True:
        code = codes.generate_uscc(rng, region6=county.code, kind=kind)
        if code not in taken and code[-6:] not in {t[-6:] for t in taken}:
            taken.add(code)
            return code


def _address(rng: random.Random, county: County) -> str:
    town = rng.choice(county.townships) if county.townships else ""
    return f"{county.province}{county.city}{county.name}{town}{rng.choice(_ROADS)}{rng.randint(1, 399)}号"


def _unique(name: str, names: set[str]) -> str:
    out, n = name, 2
    while out in names:
        out, n = f"{name}{n}部", n + 1
    names.add(out)
    return out


def _home(
    options: PlanOptions, places: list[County], *, number: int, taken: set[str], names: set[str]
) -> InstitutionPlan:
    rng = _rng(options, number)
    county = rng.choices(places, weights=[c.weight for c in places])[0]
    kind = rng.choices(list(codes.InstitutionKind), weights=(0.2, 0.5, 0.3))[0]
    code = _code(rng, county, kind, taken)
    if kind is codes.InstitutionKind.PUBLIC:
        name = _unique(f"{county.short}社会福利院", names)
    else:
        name = _unique(f"{county.short}{rng.choice(_BRANDS)}{rng.choice(_PRIVATE_KINDS)}", names)
    key = f"H{number:02d}"
    vendor = VENDORS[(number + options.seed) % 2]  # neighbouring homes bought from different vendors
    star = rng.choices([s for s, _ in _STARS], weights=[w for _, w in _STARS])[0]
    price_min = _PRICE_FLOOR[star] + rng.randint(0, 8) * 100
    services = ["medical_care"] if rng.random() < 0.3 + 0.1 * star else []
    services += [
        s for s, p in (("rehabilitation", 0.4), ("dementia_care", 0.3), ("respite_care", 0.2)) if rng.random() < p
    ]
    services += ["palliative_care"] if rng.random() < 0.1 else []
    lon, lat = county.place(rng)
    since = options.as_of - timedelta(days=rng.randint(70, 400))
    beds = _layout(rng, key, rng.randint(options.beds_min, options.beds_max))
    persons = residents_of(
        rng, options.as_of, options.seed, key=key, county=county, places=places, beds=beds, since=since
    )
    staff = staff_of(rng, code=code, beds=len(beds))
    return InstitutionPlan(
        key=key,
        code=code,
        name=name,
        kind="residential_home",
        region_code=county.code,
        county=county.name,
        address=_address(rng, county),
        lon=lon,
        lat=lat,
        star_grade=star,
        price_min=price_min,
        price_max=int(round(price_min * rng.uniform(1.6, 2.6), -2)),
        services=services,
        contact_name=staff[0].display_name,
        contact_phone=people.landline(rng),
        gateway_id=f"GW-{code[-6:]}",
        devices_since=at(since, 10),
        beds=beds,
        persons=persons,
        devices=devices_of(rng, key=key, code=code, vendor=vendor, beds=beds, persons=persons, since=since),
        staff=staff,
    )


def _layout(rng: random.Random, key: str, count: int) -> list[BedPlan]:
    """Buildings of floors of rooms of 1-3 beds; the first beds (lower floors) are the nursing-type ones."""
    buildings = 1 if count <= 60 else (2 if count <= 150 else 3)
    per_floor = rng.randint(6, 12)
    nursing = round(count * rng.uniform(0.50, 0.75))
    beds: list[BedPlan] = []
    per_building = math.ceil(count / buildings)
    for b in range(1, buildings + 1):
        floor, room, left = 1, 1, min(per_building, count - len(beds))
        while left > 0:
            size = min(left, rng.choices((1, 2, 3), weights=(0.15, 0.6, 0.25))[0])
            room_name = f"{floor}{room:02d}"
            for n in range(1, size + 1):
                beds.append(
                    BedPlan(
                        key=f"{key}/{b}-{room_name}-{n}",
                        building=f"{b}号楼",
                        floor=f"{floor}层",
                        room=room_name,
                        room_key=f"{b}-{room_name}",
                        label=f"{room_name}-{n}",
                        kind="nursing" if len(beds) < nursing else "ordinary",
                    )
                )
            left -= size
            room += 1
            if room > per_floor:
                floor, room = floor + 1, 1
    return beds


def _provider(
    options: PlanOptions,
    places: list[County],
    *,
    number: int,
    households: int,
    taken: set[str],
    names: set[str],
    diligent: bool,
) -> InstitutionPlan:
    """A home-care provider (居家养老服务中心) running 家庭养老床位 in elders' own homes of its county; some of its
    elders live alone, and its staff visit them on time (``diligent``) or miss some visits (``visits.py``)."""
    rng = _rng(options, number)
    county = rng.choices(places, weights=[c.weight for c in places])[0]
    code = _code(rng, county, codes.InstitutionKind.NON_PROFIT, taken)
    key = f"H{number:02d}"
    since = options.as_of - timedelta(days=rng.randint(70, 400))
    beds: list[BedPlan] = []
    homes: list[HouseholdPlan] = []
    persons: list[PersonPlan] = []
    for n in range(1, households + 1):
        town = rng.choice(county.townships) if county.townships else ""
        bed = BedPlan(
            key=f"{key}/F{n:02d}",
            building="",
            floor="",
            room="",
            room_key="",
            label=f"家庭床位-{n:02d}",
            kind="nursing",
        )
        beds.append(bed)
        lon, lat = county.place(rng)
        address = (
            f"{county.province}{county.city}{county.name}{town}{rng.choice(_ROADS)}{rng.randint(1, 399)}号"
            f"{rng.randint(1, 12)}栋{rng.randint(1, 4)}单元{rng.randint(1, 7)}0{rng.randint(1, 4)}室"
        )
        homes.append(HouseholdPlan(key=f"{key}/F{n:02d}", address=address, lon=lon, lat=lat, bed=bed.key))
        persons.append(
            person_plan(
                rng,
                options.as_of,
                key=f"{key}/R{n:03d}",
                region6=region_of_origin(rng, county, places),
                bed=bed,
                since=since,
                family=f"fam-{key.lower()}-{n:03d}-{options.seed}",
            )
        )
    # a generator of its own: the rest of the provider is drawn as it was before elders lived alone
    alone = random.Random(f"eldercare-world:{options.seed}:{number}:visits")  # noqa: S311 - reproducible test data
    persons = visits.living_alone(alone, persons, as_of=options.as_of, diligent=diligent)
    suffix = code[-6:]
    installed = at(since, 10)
    devices: list[DevicePlan] = []
    for n, bed in enumerate(beds, start=1):
        devices.append(
            device_plan("bed_sensor", f"BS-{suffix}-{n:03d}", "lianke", bed=bed.key, person=None, since=installed)
        )
        devices.append(
            device_plan("button", f"BT-{suffix}-{n:03d}", "lianke", bed=bed.key, person=None, since=installed)
        )
        devices.append(
            device_plan("smoke", f"SM-{suffix}-{n:03d}", "lianke", bed=bed.key, person=None, since=installed)
        )
        # No GPS wristband at home: the platform measures wandering from the institution's position, and the
        # registry has no position of a household (see docs/simulators.md).
    staff = staff_of(rng, code=code, beds=0)
    lon, lat = county.place(rng)
    return InstitutionPlan(
        key=key,
        code=code,
        name=_unique(f"{county.short}{rng.choice(_BRANDS)}居家养老服务中心", names),
        kind="home_care_provider",
        region_code=county.code,
        county=county.name,
        address=_address(rng, county),
        lon=lon,
        lat=lat,
        star_grade=0,
        price_min=300 + rng.randint(0, 4) * 100,
        price_max=1500 + rng.randint(0, 5) * 100,
        services=["home_visits", "meal_assistance"],
        contact_name=staff[0].display_name,
        contact_phone=people.landline(rng),
        gateway_id=f"GW-{suffix}",
        devices_since=installed,
        beds=beds,
        persons=persons,
        devices=devices,
        staff=staff,
        households=homes,
    )
