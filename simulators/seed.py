"""A small nursing home, registered through the registry's services, for the demo and the tests.

The simulators' full world (``eldercare simulate world``) creates regions of homes through the API;
this is the one-home seed the foundation needs.
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
from eldercare.platform.registry.service import BrokerProvisioner, GatewayCredentials

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "秀英桂英玉兰建国淑珍志强凤英文华德明春梅国华金花"


@dataclass(frozen=True, slots=True)
class SeededDevice:
    code: str
    kind: str
    bed_code: str | None
    person_code: str | None


@dataclass(frozen=True, slots=True)
class SeededHome:
    institution_id: int
    institution_code: str
    name: str
    gateway: GatewayCredentials
    devices: list[SeededDevice] = field(default_factory=list)
    staff_username: str = ""
    staff_password: str = ""


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(2))


async def seed_home(
    conn: AsyncConn,
    *,
    vault: Vault,
    broker: BrokerProvisioner,
    rng: random.Random,
    region6: str = "420502",
    rooms: int = 2,
    beds_per_room: int = 2,
    staff_password: str,
) -> SeededHome:
    """One home: rooms of beds, a resident per bed with a bed sensor and a button, a gateway, a nurse."""
    code = codes.generate_uscc(rng, region6=region6)
    name = f"演示养老院 {code[-6:]}"
    institution_id = await registry.create_institution(
        conn,
        code=code,
        name=name,
        kind="residential_home",
        region_code=region6,
        address="湖北省宜昌市西陵区",
        lon=111.29 + rng.random() / 50,
        lat=30.70 + rng.random() / 50,
        star_grade=rng.randint(1, 5),
        capacity=rooms * beds_per_room,
    )
    since = datetime.now(UTC) - timedelta(days=30)
    suffix = code[-6:]
    devices: list[SeededDevice] = []
    for r in range(rooms):
        room_id = await registry.create_room(
            conn, institution_id=institution_id, building="1号楼", floor="1层", room=f"10{r + 1}"
        )
        for b in range(beds_per_room):
            bed_id, bed_code = await registry.create_bed(
                conn,
                institution_id=institution_id,
                room_id=room_id,
                label=f"10{r + 1}-{b + 1}",
                kind="nursing" if (r + b) % 3 else "ordinary",
                rng=rng,
            )
            age = rng.randint(62, 98)
            today = datetime.now(UTC).date()
            birth = date(today.year - age, 1, 1) + timedelta(days=rng.randint(0, 364))
            id_number = codes.generate_id_number(
                rng, region6=region6, birth_date=birth, sex=rng.choice(["male", "female"])
            )
            resident_id, person_code = await registry.create_resident(
                conn,
                vault=vault,
                institution_id=institution_id,
                name=_name(rng),
                id_number=id_number,
                fall_risk=rng.choice(["low", "medium", "high"]),
                rng=rng,
            )
            await registry.admit(conn, resident_id=resident_id, bed_id=bed_id, since=since)
            for kind, prefix in (("bed_sensor", "BS"), ("button", "BT")):
                device_code = f"{prefix}-{suffix}-{r + 1}{b + 1}"
                device_id = await registry.create_device(
                    conn,
                    institution_id=institution_id,
                    code=device_code,
                    kind=kind,
                    heartbeat_s=60 if kind == "bed_sensor" else 300,
                )
                await registry.bind_device(conn, device_id=device_id, bed_id=bed_id, resident_id=None, since=since)
                devices.append(SeededDevice(device_code, kind, bed_code, person_code))
    gateway = await registry.create_gateway(
        conn, institution_id=institution_id, gateway_id=f"GW-{suffix}", name="1号楼网关", broker=broker
    )
    staff_username = f"nurse-{suffix.lower()}"
    await create_user(
        conn,
        username=staff_username,
        password=staff_password,
        role=Role.STAFF,
        institution_id=institution_id,
        display_name="值班护士",
    )
    return SeededHome(institution_id, code, name, gateway, devices, staff_username, staff_password)
