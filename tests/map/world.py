"""A small world of homes for the map tests, registered through the registry's own services.

Each home's beds are set up so that every rule of "free right now" is exercised once, and the expected
counts below follow from that plan (they are what a person would count, bed by bed).

Home A (西陵区, five stars), beds in rooms:
    101-1 nursing, a current stay                    -> taken
    101-2 nursing, a stay that ended 5 days ago      -> free
    102-1 nursing, a stay booked to start in 2 days  -> taken (promised)
    102-2 nursing, no stay, sensor: someone in it now -> taken (in use)
    201-1 ordinary, a current stay                   -> taken
    201-2 ordinary, retired yesterday                -> not counted
    201-3 ordinary, no stay, sensor: bed empty now (someone an hour ago) -> free
    202-1 ordinary, no stay, sensor: someone 30 min ago (stale) -> free
    and a home-care bed (no room)                    -> not counted
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from eldercare.devices import codes
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.platform.registry import service as registry

PASSWORD = "map-password-12"
RESIDENT_NAMES = ["张秀英", "李桂兰", "王建国", "刘淑珍", "陈志强", "杨凤英", "赵文华", "黄德明"]


@dataclass(frozen=True, slots=True)
class Home:
    code: str
    id: int
    name: str
    kind: str
    region: str
    lon: float | None
    lat: float | None
    grade: int | None
    price: tuple[float, float] | None
    services: tuple[str, ...]
    nursing: tuple[int, int]  # (total, free) expected now
    ordinary: tuple[int, int]


@dataclass
class World:
    homes: dict[str, Home] = field(default_factory=dict)  # by letter
    head_of_a: str = ""
    staff_of_b: str = ""
    family_user: str = ""
    resident_names: list[str] = field(default_factory=list)
    id_numbers: list[str] = field(default_factory=list)


class _Seeder:
    def __init__(self, conn: AsyncConn, vault: Vault) -> None:
        self.conn = conn
        self.vault = vault
        self.rng = random.Random(20240610)
        self.now = datetime.now(UTC)
        self.world = World()

    async def home(
        self,
        letter: str,
        *,
        name: str,
        kind: str,
        region: str,
        lonlat: tuple[float, float] | None,
        grade: int | None,
        price: tuple[float, float] | None,
        services: tuple[str, ...],
        phone: str,
        address: str,
        nursing: tuple[int, int],
        ordinary: tuple[int, int],
    ) -> int:
        code = codes.generate_uscc(self.rng, region6=region)
        institution_id = await registry.create_institution(
            self.conn,
            code=code,
            name=name,
            kind=kind,
            region_code=region,
            address=address,
            lon=lonlat[0] if lonlat else None,
            lat=lonlat[1] if lonlat else None,
            star_grade=grade,
            capacity=nursing[0] + ordinary[0],
        )
        await self.conn.execute(
            "UPDATE institutions SET price_min = %s, price_max = %s, services = %s, contact_phone = %s,"
            " contact_name = '院长办公室' WHERE id = %s",
            (price[0] if price else None, price[1] if price else None, list(services), phone, institution_id),
        )
        lon, lat = lonlat if lonlat else (None, None)
        self.world.homes[letter] = Home(
            code,
            institution_id,
            name,
            kind,
            region,
            lon,
            lat,
            grade,
            price,
            services,
            nursing,
            ordinary,
        )
        return institution_id

    async def bed(self, home: int, room: str, label: str, kind: str) -> int:
        room_id = await registry.create_room(
            self.conn, institution_id=home, building="1号楼", floor=room[0] + "层", room=room
        )
        bed_id, _ = await registry.create_bed(
            self.conn, institution_id=home, room_id=room_id, label=label, kind=kind, rng=self.rng
        )
        return bed_id

    async def resident(self, home: int) -> int:
        name = RESIDENT_NAMES[len(self.world.resident_names) % len(RESIDENT_NAMES)]
        birth = date(1938, 1, 1) + timedelta(days=self.rng.randint(0, 3000))
        id_number = codes.generate_id_number(self.rng, region6="420502", birth_date=birth, sex="female")
        resident_id, _ = await registry.create_resident(
            self.conn, vault=self.vault, institution_id=home, name=name, id_number=id_number, rng=self.rng
        )
        self.world.resident_names.append(name)
        self.world.id_numbers.append(id_number)
        return resident_id

    async def stay(self, home: int, bed: int, start: timedelta, end: timedelta | None = None) -> None:
        resident = await self.resident(home)
        await self.conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange(%s, %s))",
            (bed, resident, self.now + start, self.now + end if end is not None else None),
        )

    async def sensor(self, home: int, bed: int, readings: list[tuple[timedelta, bool]]) -> None:
        device = await registry.create_device(
            self.conn, institution_id=home, code=f"BS-{bed}", kind="bed_sensor", heartbeat_s=60
        )
        await registry.bind_device(
            self.conn, device_id=device, bed_id=bed, resident_id=None, since=self.now - timedelta(days=60)
        )
        for ago, presence in readings:
            await self.conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence) VALUES (%s, %s, %s)",
                (self.now - ago, device, presence),
            )


async def build(conn: AsyncConn, vault: Vault) -> World:
    s = _Seeder(conn, vault)
    day = timedelta(days=1)
    a = await s.home(
        "A",
        name="夕阳红养老院",
        kind="residential_home",
        region="420502",
        lonlat=(111.2900, 30.7000),
        grade=5,
        price=(3000, 6000),
        services=("medical_care", "dementia_care"),
        phone="0717-6221234",
        address="湖北省宜昌市西陵区夷陵大道1号",
        nursing=(4, 1),
        ordinary=(3, 2),
    )
    b1 = await s.bed(a, "101", "101-1", "nursing")
    await s.stay(a, b1, -30 * day)
    b2 = await s.bed(a, "101", "101-2", "nursing")
    await s.stay(a, b2, -40 * day, -5 * day)
    b3 = await s.bed(a, "102", "102-1", "nursing")
    await s.stay(a, b3, 2 * day)
    b4 = await s.bed(a, "102", "102-2", "nursing")
    await s.sensor(a, b4, [(timedelta(minutes=1), True), (timedelta(minutes=3), True)])
    b5 = await s.bed(a, "201", "201-1", "ordinary")
    await s.stay(a, b5, -10 * day)
    b6 = await s.bed(a, "201", "201-2", "ordinary")
    await conn.execute("UPDATE beds SET retired_at = now() - interval '1 day' WHERE id = %s", (b6,))
    b7 = await s.bed(a, "201", "201-3", "ordinary")
    await s.sensor(a, b7, [(timedelta(minutes=2), False), (timedelta(minutes=60), True)])
    b8 = await s.bed(a, "202", "202-1", "ordinary")
    await s.sensor(a, b8, [(timedelta(minutes=30), True)])
    _, _ = await registry.create_bed(conn, institution_id=a, room_id=None, label="家庭床位1", kind="nursing", rng=s.rng)

    b = await s.home(
        "B",
        name="伍家岗社区养老服务中心",
        kind="community_centre",
        region="420503",
        lonlat=(111.3500, 30.6600),
        grade=3,
        price=(800, 1500),
        services=("day_care", "meal_assistance"),
        phone="0717-6509876",
        address="湖北省宜昌市伍家岗区桔城路8号",
        nursing=(0, 0),
        ordinary=(2, 2),
    )
    for label in ("101-1", "101-2"):
        await s.bed(b, "101", label, "ordinary")

    c = await s.home(
        "C",
        name="点军区福利院",
        kind="residential_home",
        region="420504",
        lonlat=(111.2600, 30.6900),
        grade=2,
        price=(1500, 2500),
        services=("medical_care",),
        phone="0717-7801111",
        address="湖北省宜昌市点军区江南一路2号",
        nursing=(2, 0),
        ordinary=(0, 0),
    )
    for label in ("101-1", "101-2"):
        await s.stay(c, await s.bed(c, "101", label, "nursing"), -3 * day)

    d = await s.home(
        "D",
        name="武昌区颐养中心",
        kind="residential_home",
        region="420106",
        lonlat=(114.3160, 30.5540),
        grade=4,
        price=(4000, 8000),
        services=("medical_care", "rehabilitation"),
        phone="027-88001234",
        address="湖北省武汉市武昌区中南路9号",
        nursing=(3, 2),
        ordinary=(0, 0),
    )
    await s.stay(d, await s.bed(d, "301", "301-1", "nursing"), -100 * day)
    await s.bed(d, "301", "301-2", "nursing")
    await s.bed(d, "302", "302-1", "nursing")

    e = await s.home(
        "E",
        name="东城区居家养老服务商",
        kind="home_care_provider",
        region="110101",
        lonlat=(116.4180, 39.9280),
        grade=None,
        price=None,
        services=("home_visits", "meal_assistance"),
        phone="010-65001234",
        address="北京市东城区东四北大街3号",
        nursing=(0, 0),
        ordinary=(0, 0),
    )
    await registry.create_bed(conn, institution_id=e, room_id=None, label="家庭床位1", kind="nursing", rng=s.rng)

    f = await s.home(
        "F",
        name="=西陵区无坐标敬老院",  # a name a spreadsheet would run as a formula
        kind="residential_home",
        region="420502",
        lonlat=None,
        grade=1,
        price=(600, 900),
        services=(),
        phone="0717-6000000",
        address="湖北省宜昌市西陵区",
        nursing=(0, 0),
        ordinary=(1, 1),
    )
    await s.bed(f, "101", "101-1", "ordinary")

    s.world.head_of_a = "map-head-a"
    await create_user(conn, username=s.world.head_of_a, password=PASSWORD, role=Role.HEAD, institution_id=a)
    s.world.staff_of_b = "map-staff-b"
    await create_user(conn, username=s.world.staff_of_b, password=PASSWORD, role=Role.STAFF, institution_id=b)
    s.world.family_user = "map-family"
    await create_user(conn, username=s.world.family_user, password=PASSWORD, role=Role.FAMILY)
    return s.world
