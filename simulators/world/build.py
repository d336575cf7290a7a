"""Register a planned world through the platform's own API, as its people would.

The admin registers each institution and its head; the head (logged in as such) imports the home's beds,
residents and devices from CSV files (``/imports``), admits the residents, records their contacts, binds the
devices, has the gateway's credentials issued, creates the staff and their roster, flags the elders who live alone
(with the day they were put on the visit list) and has a carer record their visits, and creates and links the
family users. Home-care beds (no room) are registered one by one. Nothing goes to the database directly.
Institutions are built a few at a time; inside one, requests go in plan order.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpx

from eldercare.simulators.errors import SimError
from eldercare.simulators.world.api import Api
from eldercare.simulators.world.model import (
    FORMAT,
    DevicePlan,
    InstitutionPlan,
    Issued,
    IssuedInstitution,
    PersonPlan,
    World,
    WorldPlan,
)

VENDOR_NAMES = {"acme": "ACME Care", "lianke": "联科 Lianke"}
T = TypeVar("T")
Progress = Callable[[str], None]


def _password() -> str:
    return secrets.token_urlsafe(12)


def _csv(header: list[str], rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


async def _each(items: Iterable[T], work: Callable[[T], Awaitable[None]], *, limit: int = 4) -> None:
    """``work`` for every item, at most ``limit`` at a time; the first failure stops the rest."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except* SimError as errors:
        raise errors.exceptions[0] from None


async def build(
    plan: WorldPlan,
    *,
    base: str,
    admin_username: str,
    admin_password: str,
    concurrency: int = 3,
    progress: Progress | None = None,
) -> World:
    """Register ``plan``; the world with what the platform issued."""
    issued: dict[str, IssuedInstitution] = {}
    async with httpx.AsyncClient(timeout=120) as http:
        admin = await Api.login(http, base, admin_username, admin_password)

        async def one(inst: InstitutionPlan) -> None:
            issued[inst.key] = await _institution(http, admin, inst)
            if progress is not None:
                progress(
                    f"registered {inst.key} {inst.name} ({inst.code}, {inst.county}): {len(inst.beds)} beds,"
                    f" {len(inst.persons)} residents, {len(inst.devices)} devices, {len(inst.staff)} staff"
                )

        await _each(plan.institutions, one, limit=concurrency)
    ordered = {inst.key: issued[inst.key] for inst in plan.institutions}
    return World(format=FORMAT, plan=plan, issued=Issued(api=base, institutions=ordered))


async def _institution(http: httpx.AsyncClient, admin: Api, inst: InstitutionPlan) -> IssuedInstitution:
    created = await admin.call(
        "POST",
        "/api/v1/institutions",
        json={
            "code": inst.code,
            "name": inst.name,
            "kind": inst.kind,
            "region_code": inst.region_code,
            "address": inst.address,
            "lon": inst.lon,
            "lat": inst.lat,
            "star_grade": inst.star_grade,
            "capacity": len(inst.beds),
            "price_min": inst.price_min,
            "price_max": inst.price_max,
            "services": inst.services,
            "contact_name": inst.contact_name,
            "contact_phone": inst.contact_phone,
        },
    )
    institution_id = int(created["id"])
    users: dict[str, tuple[int, str]] = {}
    head = inst.staff[0]
    password = _password()
    user = await admin.call(
        "POST",
        "/api/v1/users",
        json={
            "username": head.username,
            "password": password,
            "role": "head",
            "institution_id": institution_id,
            "display_name": head.display_name,
        },
    )
    users[head.username] = (int(user["id"]), password)
    api = await Api.login(http, admin.base, head.username, password)
    beds = await _beds(api, inst, institution_id)
    persons = await _residents(api, inst, institution_id, beds)
    devices = await _devices(api, inst, institution_id, beds, persons)
    credentials = await api.call(
        "POST",
        f"/api/v1/institutions/{institution_id}/gateways",
        json={"gateway_id": inst.gateway_id, "name": "服务中心网关" if inst.households else "1号楼网关"},
    )
    users.update(await _staff(api, inst, institution_id))
    await _living_alone(http, api, inst, persons, users)
    users.update(await _families(api, inst, persons))
    return IssuedInstitution(
        id=institution_id,
        gateway_password=str(credentials["password"]),
        beds=beds,
        persons=persons,
        devices=devices,
        users=users,
    )


async def _beds(api: Api, inst: InstitutionPlan, institution_id: int) -> dict[str, tuple[int, str]]:
    in_rooms = [b for b in inst.beds if b.room]
    if in_rooms:
        data = _csv(
            ["building", "floor", "room", "label", "kind"],
            ([b.building, b.floor, b.room, b.label, b.kind] for b in in_rooms),
        )
        await api.call(
            "POST",
            f"/api/v1/institutions/{institution_id}/imports/beds",
            files={"file": ("beds.csv", data, "text/csv")},
        )
    for bed in (b for b in inst.beds if not b.room):
        await api.call(
            "POST",
            f"/api/v1/institutions/{institution_id}/beds",
            json={"room_id": None, "label": bed.label, "kind": bed.kind},
        )
    listed = await api.pages(f"/api/v1/institutions/{institution_id}/beds")
    by_place = {(r["building"] or "", r["floor"] or "", r["room"] or "", r["label"]): r for r in listed}
    out: dict[str, tuple[int, str]] = {}
    for bed in inst.beds:
        row = by_place.get((bed.building, bed.floor, bed.room, bed.label))
        if row is None:
            raise SimError(f"{inst.key}: bed {bed.label} is not listed after the import")
        out[bed.key] = (int(row["id"]), str(row["code"]))
    return out


async def _residents(
    api: Api, inst: InstitutionPlan, institution_id: int, beds: dict[str, tuple[int, str]]
) -> dict[str, tuple[int, str]]:
    if not inst.persons:
        return {}
    columns = ["name", "id_number", "capability", "fall_risk", "wander_risk", "heart_rate_min", "resp_rate_min"]
    rows = (
        [
            p.name,
            p.id_number,
            p.capability,
            p.fall_risk,
            "true" if p.wander_risk else "false",
            f"{p.heart_rate_min:g}",
            f"{p.resp_rate_min:g}",
        ]
        for p in inst.persons
    )
    data = _csv(columns, rows)
    report = await api.call(
        "POST",
        f"/api/v1/institutions/{institution_id}/imports/residents",
        files={"file": ("residents.csv", data, "text/csv")},
    )
    codes = list(report["created"])
    if len(codes) != len(inst.persons):
        raise SimError(
            f"{inst.key}: {len(inst.persons)} residents imported, {len(codes)} created (registered already?)"
        )
    listed = {
        r["person_code"]: int(r["id"]) for r in await api.pages(f"/api/v1/institutions/{institution_id}/residents")
    }
    persons = {p.key: (listed[code], code) for p, code in zip(inst.persons, codes, strict=True)}

    async def settle(person: PersonPlan) -> None:
        resident_id = persons[person.key][0]
        if person.bed is not None:
            await api.call(
                "POST",
                f"/api/v1/residents/{resident_id}/admit",
                json={"bed_id": beds[person.bed][0], "at": person.admitted_at},
            )
        for contact in person.contacts:
            await api.call(
                "POST",
                f"/api/v1/residents/{resident_id}/contacts",
                json={
                    "kind": contact.kind,
                    "name": contact.name,
                    "phone": contact.phone,
                    "relation": contact.relation,
                    "priority": contact.priority,
                    "consent": True,
                    "consent_at": person.admitted_at,
                },
            )

    await _each(inst.persons, settle)
    return persons


async def _devices(
    api: Api,
    inst: InstitutionPlan,
    institution_id: int,
    beds: dict[str, tuple[int, str]],
    persons: dict[str, tuple[int, str]],
) -> dict[str, int]:
    data = _csv(
        ["code", "kind", "vendor", "model", "heartbeat_s"],
        ([d.code, d.kind, VENDOR_NAMES[d.vendor], d.model, str(d.heartbeat_s)] for d in inst.devices),
    )
    await api.call(
        "POST",
        f"/api/v1/institutions/{institution_id}/imports/devices",
        files={"file": ("devices.csv", data, "text/csv")},
    )
    listed = {r["code"]: int(r["id"]) for r in await api.pages(f"/api/v1/institutions/{institution_id}/devices")}

    async def bind(device: DevicePlan) -> None:
        body: dict[str, Any] = {"at": device.bound_at}
        if device.bed is not None:
            body["bed_id"] = beds[device.bed][0]
        if device.person is not None:
            body["resident_id"] = persons[device.person][0]
        await api.call("POST", f"/api/v1/devices/{listed[device.code]}/bind", json=body)

    await _each(inst.devices, bind)
    return {d.code: listed[d.code] for d in inst.devices}


async def _staff(api: Api, inst: InstitutionPlan, institution_id: int) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for member in inst.staff:
        if member.role != "head":
            password = _password()
            user = await api.call(
                "POST",
                "/api/v1/users",
                json={
                    "username": member.username,
                    "password": password,
                    "role": member.role,
                    "institution_id": institution_id,
                    "display_name": member.display_name,
                },
            )
            out[member.username] = (int(user["id"]), password)
        for shift in member.shifts:
            await api.call(
                "POST",
                "/api/v1/rosters",
                json={
                    "institution_code": inst.code,
                    "username": member.username,
                    "tier": shift.tier,
                    "name": shift.name,
                    "starts": shift.starts,
                    "ends": shift.ends,
                    "weekdays": shift.weekdays,
                },
            )
    return out


async def _living_alone(
    http: httpx.AsyncClient,
    head: Api,
    inst: InstitutionPlan,
    persons: dict[str, tuple[int, str]],
    users: dict[str, tuple[int, str]],
) -> None:
    """The elders who live alone flagged (by the head, with the day they were put on the list) and their visits
    recorded, oldest first, by the home's first carer: as the home would enter its paper records on joining."""
    alone = [p for p in inst.persons if p.lives_alone_since is not None]
    if not alone:
        return
    carer = next((s.username for s in inst.staff if s.role != "head"), inst.staff[0].username)
    visitor = await Api.login(http, head.base, carer, users[carer][1])

    async def one(person: PersonPlan) -> None:
        resident_id = persons[person.key][0]
        body = {"lives_alone": True, "lives_alone_since": person.lives_alone_since}
        await head.call("PATCH", f"/api/v1/residents/{resident_id}", json=body)
        for visit in person.visits:
            await visitor.call(
                "POST",
                f"/api/v1/residents/{resident_id}/visits",
                json={"visited_at": visit.visited_at, "mode": visit.mode, "outcome": visit.outcome, "note": visit.note},
            )

    await _each(alone, one)


async def _families(api: Api, inst: InstitutionPlan, persons: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for person in inst.persons:
        family = person.family_user
        if family is None:
            continue
        password = _password()
        user = await api.call(
            "POST",
            "/api/v1/users",
            json={
                "username": family.username,
                "password": password,
                "role": "family",
                "display_name": family.display_name,
            },
        )
        await api.call(
            "POST",
            f"/api/v1/users/{user['id']}/family-links",
            json={"resident_id": persons[person.key][0], "relation": family.relation, "consent": True},
        )
        out[family.username] = (int(user["id"]), password)
    return out
