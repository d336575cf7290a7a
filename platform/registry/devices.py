"""Devices and their bindings to beds or residents over time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, StringConstraints, model_validator

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.db import atomic, ends_after_start, not_in_future
from eldercare.platform.registry.types import RESPONSES, DeviceKind, Id, Limit, Offset, PathId, When

router = APIRouter(prefix="/api/v1", tags=["devices"], responses=RESPONSES)

DeviceCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Vendor = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
Heartbeat = Annotated[int, Field(ge=5, le=86_400, description="seconds between heartbeats")]


class DeviceIn(BaseModel):
    code: DeviceCode = Field(description='the "dev" field on the wire; unique in the institution')
    kind: DeviceKind
    vendor: Vendor = ""
    model: Vendor = ""
    heartbeat_s: Heartbeat = 60


class DeviceUpdate(BaseModel):
    vendor: Vendor | None = None
    model: Vendor | None = None
    heartbeat_s: Heartbeat | None = None
    retired: bool | None = None


class Binding(BaseModel):
    id: int
    device_id: int
    bed_id: int | None
    bed_code: str | None
    resident_id: int | None
    person_code: str | None
    start: datetime
    end: datetime | None


class Device(BaseModel):
    id: int
    institution_id: int
    code: str
    kind: DeviceKind
    vendor: str
    model: str
    heartbeat_s: int
    created_at: datetime
    retired_at: datetime | None
    bed_id: int | None = Field(description="the bed it watches now")
    resident_id: int | None = Field(description="the resident who wears it now")


class BindIn(BaseModel):
    bed_id: Id | None = None
    resident_id: Id | None = None
    at: When | None = Field(default=None, description="when; default now")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.bed_id is None and self.resident_id is None:
            raise ValueError("give bed_id, resident_id or both")
        return self


class Unbind(BaseModel):
    at: When | None = None


_SELECT = sql.SQL(
    "SELECT d.id, d.institution_id, d.code, d.kind::text AS kind, d.vendor, d.model, d.heartbeat_s, d.created_at,"
    " d.retired_at, b.bed_id, b.resident_id FROM devices d"
    " LEFT JOIN device_bindings b ON b.device_id = d.id AND b.during @> now()"
)


async def fetch(conn: AsyncConn, device_id: int) -> Device:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL("{} WHERE d.id = %s").format(_SELECT), (device_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("device")
    return Device.model_validate(row)


async def insert(conn: AsyncConn, principal: Principal | None, *, institution_id: int, body: DeviceIn) -> int:
    values = body.model_dump(mode="json")
    row = await (
        await conn.execute(
            "INSERT INTO devices (institution_id, code, kind, vendor, model, heartbeat_s)"
            " VALUES (%(i)s, %(code)s, %(kind)s, %(vendor)s, %(model)s, %(heartbeat_s)s) RETURNING id",
            {"i": institution_id, **values},
        )
    ).fetchone()
    assert row is not None
    await audit.record(
        conn,
        principal=principal,
        action="create",
        object_type="device",
        object_id=row[0],
        institution_id=institution_id,
        detail=values,
    )
    device_id: int = row[0]
    return device_id


@router.get("/institutions/{institution_id}/devices")
async def list_devices(
    *,
    institution_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    kind: DeviceKind | None = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[Device]:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_REGISTRY)
    query = sql.SQL(
        "{} WHERE d.institution_id = %(i)s AND (%(kind)s::device_kind IS NULL OR d.kind = %(kind)s::device_kind)"
        " ORDER BY d.id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(_SELECT)
    params: dict[str, Any] = {"i": institution_id, "kind": kind, "limit": limit, "offset": offset}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return [Device.model_validate(r) for r in await cur.fetchall()]


@router.post("/institutions/{institution_id}/devices", status_code=201)
async def create_device(institution_id: PathId, body: DeviceIn, conn: Conn, principal: CurrentPrincipal) -> Device:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.WRITE_REGISTRY)
    async with atomic(conn):
        device_id = await insert(conn, principal, institution_id=institution_id, body=body)
    return await fetch(conn, device_id)


@router.get("/devices/{device_id}")
async def get_device(device_id: PathId, conn: Conn, principal: CurrentPrincipal) -> Device:
    await scope.resolve(conn, principal, Obj.DEVICE, device_id, Action.READ_REGISTRY)
    return await fetch(conn, device_id)


@router.patch("/devices/{device_id}")
async def update_device(device_id: PathId, body: DeviceUpdate, conn: Conn, principal: CurrentPrincipal) -> Device:
    """Change vendor, model or heartbeat; retiring a device also ends its binding."""
    institution_id = await scope.resolve(conn, principal, Obj.DEVICE, device_id, Action.WRITE_REGISTRY)
    async with atomic(conn):
        await conn.execute(
            "UPDATE devices SET vendor = coalesce(%(vendor)s, vendor), model = coalesce(%(model)s, model),"
            " heartbeat_s = coalesce(%(heartbeat_s)s, heartbeat_s), retired_at = CASE"
            " WHEN %(retired)s::boolean IS NULL THEN retired_at WHEN %(retired)s THEN coalesce(retired_at, now())"
            " ELSE NULL END WHERE id = %(id)s",
            {**body.model_dump(), "id": device_id},
        )
        if body.retired:
            await _end_binding(conn, device_id=device_id, at=None)
        await audit.record(
            conn,
            principal=principal,
            action="update",
            object_type="device",
            object_id=device_id,
            institution_id=institution_id,
            detail=body.model_dump(mode="json", exclude_unset=True),
        )
    return await fetch(conn, device_id)


async def _end_binding(conn: AsyncConn, *, device_id: int, at: datetime | None) -> bool:
    """End the device's current binding at ``at`` (default now); False if it has none. 409 on ``body.at`` if
    ``at`` is before the binding began."""
    row = await (
        await conn.execute(
            "SELECT lower(during) FROM device_bindings WHERE device_id = %s AND upper_inf(during) FOR UPDATE",
            (device_id,),
        )
    ).fetchone()
    if row is None:
        return False
    ends_after_start("body.at", "binding", at, row[0])
    await conn.execute(
        "UPDATE device_bindings SET during = tstzrange(lower(during), coalesce(%s, greatest(lower(during), now())))"
        " WHERE device_id = %s AND upper_inf(during)",
        (at, device_id),
    )
    return True


async def _belongs(conn: AsyncConn, table: str, object_id: int | None, institution_id: int, what: str) -> None:
    """422 on ``body.<what>_id`` unless the bed or resident ``object_id`` (if given) is of the institution."""
    if object_id is None:
        return
    row = await (
        await conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE id = %s AND institution_id = %s").format(sql.Identifier(table)),
            (object_id, institution_id),
        )
    ).fetchone()
    if row is None:
        raise Problem(
            422,
            f"no such {what} in the device's institution",
            [FieldError(field=f"body.{what}_id", reason="unknown")],
        )


@router.post("/devices/{device_id}/bind", status_code=201)
async def bind(device_id: PathId, body: BindIn, conn: Conn, principal: CurrentPrincipal) -> Binding:
    """Bind the device to a bed or a resident from ``at``; a current binding ends at that moment."""
    institution_id = await scope.resolve(conn, principal, Obj.DEVICE, device_id, Action.WRITE_REGISTRY)
    not_in_future("body.at", body.at)
    await _belongs(conn, "beds", body.bed_id, institution_id, "bed")
    await _belongs(conn, "residents", body.resident_id, institution_id, "resident")
    at = body.at or datetime.now(UTC)
    async with atomic(conn):
        retired = await (
            await conn.execute("SELECT retired_at FROM devices WHERE id = %s FOR UPDATE", (device_id,))
        ).fetchone()
        if retired is not None and retired[0] is not None:
            raise Problem(409, "the device is retired", [FieldError(field="path.device_id", reason="retired")])
        await _end_binding(conn, device_id=device_id, at=at)
        row = await (
            await conn.execute(
                "INSERT INTO device_bindings (device_id, bed_id, resident_id, during)"
                " VALUES (%s, %s, %s, tstzrange(%s, NULL)) RETURNING id",
                (device_id, body.bed_id, body.resident_id, at),
            )
        ).fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="bind",
            object_type="device",
            object_id=device_id,
            institution_id=institution_id,
            detail=body.model_dump(mode="json"),
        )
    found = [b for b in await _bindings(conn, device_id) if b.id == row[0]]
    return found[0]


@router.post("/devices/{device_id}/unbind", status_code=204)
async def unbind(device_id: PathId, body: Unbind, conn: Conn, principal: CurrentPrincipal) -> None:
    institution_id = await scope.resolve(conn, principal, Obj.DEVICE, device_id, Action.WRITE_REGISTRY)
    not_in_future("body.at", body.at)
    async with atomic(conn):
        if not await _end_binding(conn, device_id=device_id, at=body.at):
            raise Problem(409, "the device is not bound", [FieldError(field="path.device_id", reason="not bound")])
        await audit.record(
            conn,
            principal=principal,
            action="unbind",
            object_type="device",
            object_id=device_id,
            institution_id=institution_id,
            detail=body.model_dump(mode="json"),
        )


@router.get("/devices/{device_id}/bindings")
async def list_bindings(device_id: PathId, conn: Conn, principal: CurrentPrincipal) -> list[Binding]:
    """What the device watched or who wore it, oldest first."""
    await scope.resolve(conn, principal, Obj.DEVICE, device_id, Action.READ_REGISTRY)
    return await _bindings(conn, device_id)


async def _bindings(conn: AsyncConn, device_id: int) -> list[Binding]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT g.id, g.device_id, g.bed_id, b.code AS bed_code, g.resident_id, r.person_code,"
            " lower(g.during) AS start, upper(g.during) AS end FROM device_bindings g"
            " LEFT JOIN beds b ON b.id = g.bed_id LEFT JOIN residents r ON r.id = g.resident_id"
            " WHERE g.device_id = %s ORDER BY lower(g.during)",
            (device_id,),
        )
        return [Binding.model_validate(r) for r in await cur.fetchall()]
