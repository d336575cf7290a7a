"""Registry writes, validated before they reach the database; keyword-only, connection passed in.

Codes are checked with the contract's code scheme (``eldercare.devices.codes``); personal data is
encrypted with the :class:`~eldercare.platform.crypto.Vault` before it is written.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from eldercare.devices import codes
from eldercare.platform.api.errors import Problem
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.stack import broker_auth
from eldercare.platform.stack.errors import StackError


class BrokerProvisioner(Protocol):
    """Gives a gateway its broker login and ACL, or takes them away at once."""

    def provision(self, *, institution: str, gateway: str, password: str) -> None: ...

    def revoke(self, *, gateway: str) -> None: ...


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    gateway_id: str
    institution_code: str
    username: str
    password: str


async def _one_id(conn: AsyncConn, query: str, params: tuple[object, ...]) -> int:
    row = await (await conn.execute(query.encode(), params)).fetchone()
    assert row is not None
    value: int = row[0]
    return value


async def new_id_number_hash(conn: AsyncConn, *, vault: Vault, institution_id: int, number: str) -> bytes:
    """The look-up hash to store for a new resident's ID number (the current key's), inside the caller's transaction.

    The database refuses a second resident of one ID number in an institution by the hash (the unique key). During a
    data key rotation a resident registered before may still carry the previous key's hash, which the new one does
    not equal: that resident's hash is brought to the current key first (what ``eldercare db rekey`` would do), so
    the insert that follows meets the unique key as always, and is refused the same way. A refused insert rolls the
    change back with it."""
    hashes = vault.lookup_hashes(number)
    if len(hashes) > 1:
        await conn.execute(
            "UPDATE residents SET id_number_hash = %s WHERE institution_id = %s AND id_number_hash = ANY(%s)",
            (hashes[0], institution_id, hashes[1:]),
        )
    return hashes[0]


async def create_institution(
    conn: AsyncConn,
    *,
    code: str,
    name: str,
    kind: str,
    region_code: str,
    address: str = "",
    lon: float | None = None,
    lat: float | None = None,
    star_grade: int | None = None,
    capacity: int | None = None,
) -> int:
    return await _one_id(
        conn,
        "INSERT INTO institutions (code, name, kind, region_code, address, lon, lat, star_grade, capacity)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (codes.validate_uscc(code), name, kind, region_code, address, lon, lat, star_grade, capacity),
    )


async def create_room(conn: AsyncConn, *, institution_id: int, building: str, floor: str, room: str) -> int:
    building_id = await _one_id(
        conn,
        "INSERT INTO buildings (institution_id, name) VALUES (%s, %s)"
        " ON CONFLICT (institution_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (institution_id, building),
    )
    floor_id = await _one_id(
        conn,
        "INSERT INTO floors (building_id, name) VALUES (%s, %s)"
        " ON CONFLICT (building_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (building_id, floor),
    )
    return await _one_id(
        conn,
        "INSERT INTO rooms (floor_id, name) VALUES (%s, %s)"
        " ON CONFLICT (floor_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (floor_id, room),
    )


async def create_bed(
    conn: AsyncConn, *, institution_id: int, room_id: int | None, label: str, kind: str, rng: random.Random
) -> tuple[int, str]:
    code = codes.new_bed_code(rng)
    bed_id = await _one_id(
        conn,
        "INSERT INTO beds (institution_id, room_id, code, label, kind) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (institution_id, room_id, code, label, kind),
    )
    return bed_id, code


async def create_resident(
    conn: AsyncConn,
    *,
    vault: Vault,
    institution_id: int,
    name: str,
    id_number: str,
    capability: str = "self_care",
    fall_risk: str = "low",
    wander_risk: bool = False,
    rng: random.Random,
) -> tuple[int, str]:
    parsed = codes.parse_id_number(id_number)
    person_code = codes.new_person_code(rng)
    resident_id = await _one_id(
        conn,
        "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
        " id_number_masked, birth_date, sex, capability, fall_risk, wander_risk)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            institution_id,
            person_code,
            vault.encrypt(name, column="residents.name"),
            vault.encrypt(parsed.number, column="residents.id_number"),
            await new_id_number_hash(conn, vault=vault, institution_id=institution_id, number=parsed.number),
            parsed.masked,
            parsed.birth_date,
            parsed.sex,
            capability,
            fall_risk,
            wander_risk,
        ),
    )
    return resident_id, person_code


async def admit(conn: AsyncConn, *, resident_id: int, bed_id: int, since: datetime) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange(%s, NULL))",
            (bed_id, resident_id, since),
        )
        await conn.execute("UPDATE residents SET status = 'admitted' WHERE id = %s", (resident_id,))


async def create_device(
    conn: AsyncConn,
    *,
    institution_id: int,
    code: str,
    kind: str,
    vendor: str = "",
    model: str = "",
    heartbeat_s: int = 60,
) -> int:
    return await _one_id(
        conn,
        "INSERT INTO devices (institution_id, code, kind, vendor, model, heartbeat_s)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (institution_id, code, kind, vendor, model, heartbeat_s),
    )


async def bind_device(
    conn: AsyncConn, *, device_id: int, bed_id: int | None, resident_id: int | None, since: datetime
) -> None:
    await conn.execute(
        "INSERT INTO device_bindings (device_id, bed_id, resident_id, during) VALUES (%s, %s, %s, tstzrange(%s, NULL))",
        (device_id, bed_id, resident_id, since),
    )


async def create_gateway(
    conn: AsyncConn, *, institution_id: int, gateway_id: str, name: str, broker: BrokerProvisioner
) -> GatewayCredentials:
    """Register a gateway and issue its broker credentials (the password is shown once, here)."""
    password = secrets.token_urlsafe(24)
    async with conn.transaction():
        row = await (
            await conn.execute(
                "INSERT INTO gateways (institution_id, gateway_id, name, issued_at, password_hash)"
                " VALUES (%s, %s, %s, now(), %s) RETURNING (SELECT code FROM institutions WHERE id = %s)",
                (institution_id, gateway_id, name, broker_auth.hash_password(password), institution_id),
            )
        ).fetchone()
        assert row is not None
        institution_code: str = row[0]
        # Provisioned inside the transaction: if the broker cannot be told, the gateway is not registered.
        await provision(broker, institution=institution_code, gateway=gateway_id, password=password)
    return GatewayCredentials(gateway_id, institution_code, gateway_id, password)


async def provision(broker: BrokerProvisioner, *, institution: str, gateway: str, password: str) -> None:
    """The provisioner writes files and waits for the broker to reload: off the event loop. A broker that does
    not take the change is a 503 (the caller's transaction, and the gateway with it, is rolled back)."""
    try:
        await asyncio.to_thread(broker.provision, institution=institution, gateway=gateway, password=password)
    except StackError as exc:
        raise Problem(503, f"the broker did not take the gateway's login; try again: {exc}") from exc


async def revoke(broker: BrokerProvisioner, *, gateway: str) -> None:
    try:
        await asyncio.to_thread(broker.revoke, gateway=gateway)
    except StackError as exc:
        raise Problem(503, f"the broker did not take the revocation; try again: {exc}") from exc
