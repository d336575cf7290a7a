"""Buildings, floors, rooms and beds (一床一码: the platform issues each bed its code)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from eldercare.devices import codes
from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.types import RESPONSES, BedKind, Id, Label, Limit, Name, Offset, PathId

router = APIRouter(prefix="/api/v1", tags=["places and beds"], responses=RESPONSES)
_codes = random.SystemRandom()


class PlaceIn(BaseModel):
    name: Annotated[Name, Field(max_length=64)]


class FloorIn(PlaceIn):
    level: Annotated[int, Field(ge=-10, le=200)] = 1


class Place(BaseModel):
    id: int
    parent_id: int
    name: str


class Floor(Place):
    level: int


async def _insert_place(
    conn: AsyncConn,
    principal: Principal,
    *,
    table: str,
    parent: str,
    parent_id: int,
    institution_id: int,
    values: dict[str, Any],
) -> int:
    columns = [parent, *values]
    async with atomic(conn):
        row = await (
            await conn.execute(
                sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
                ),
                {parent: parent_id, **values},
            )
        ).fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="create",
            object_type=table.rstrip("s"),
            object_id=row[0],
            institution_id=institution_id,
            detail=values,
        )
    new_id: int = row[0]
    return new_id


async def _children(conn: AsyncConn, query: str, parent_id: int, limit: int, offset: int) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode() + b" ORDER BY name LIMIT %s OFFSET %s", (parent_id, limit, offset))
        return await cur.fetchall()


@router.get("/institutions/{institution_id}/buildings")
async def list_buildings(
    institution_id: PathId, conn: Conn, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[Place]:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_REGISTRY)
    rows = await _children(
        conn,
        "SELECT id, institution_id AS parent_id, name FROM buildings WHERE institution_id = %s",
        institution_id,
        limit,
        offset,
    )
    return [Place.model_validate(r) for r in rows]


@router.post("/institutions/{institution_id}/buildings", status_code=201)
async def create_building(institution_id: PathId, body: PlaceIn, conn: Conn, principal: CurrentPrincipal) -> Place:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.WRITE_REGISTRY)
    new_id = await _insert_place(
        conn,
        principal,
        table="buildings",
        parent="institution_id",
        parent_id=institution_id,
        institution_id=institution_id,
        values=body.model_dump(),
    )
    return Place(id=new_id, parent_id=institution_id, name=body.name)


@router.get("/buildings/{building_id}/floors")
async def list_floors(
    building_id: PathId, conn: Conn, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[Floor]:
    await scope.resolve(conn, principal, Obj.BUILDING, building_id, Action.READ_REGISTRY)
    rows = await _children(
        conn,
        "SELECT id, building_id AS parent_id, name, level FROM floors WHERE building_id = %s",
        building_id,
        limit,
        offset,
    )
    return [Floor.model_validate(r) for r in rows]


@router.post("/buildings/{building_id}/floors", status_code=201)
async def create_floor(building_id: PathId, body: FloorIn, conn: Conn, principal: CurrentPrincipal) -> Floor:
    institution_id = await scope.resolve(conn, principal, Obj.BUILDING, building_id, Action.WRITE_REGISTRY)
    new_id = await _insert_place(
        conn,
        principal,
        table="floors",
        parent="building_id",
        parent_id=building_id,
        institution_id=institution_id,
        values=body.model_dump(),
    )
    return Floor(id=new_id, parent_id=building_id, name=body.name, level=body.level)


@router.get("/floors/{floor_id}/rooms")
async def list_rooms(
    floor_id: PathId, conn: Conn, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[Place]:
    await scope.resolve(conn, principal, Obj.FLOOR, floor_id, Action.READ_REGISTRY)
    rows = await _children(
        conn, "SELECT id, floor_id AS parent_id, name FROM rooms WHERE floor_id = %s", floor_id, limit, offset
    )
    return [Place.model_validate(r) for r in rows]


@router.post("/floors/{floor_id}/rooms", status_code=201)
async def create_room(floor_id: PathId, body: PlaceIn, conn: Conn, principal: CurrentPrincipal) -> Place:
    institution_id = await scope.resolve(conn, principal, Obj.FLOOR, floor_id, Action.WRITE_REGISTRY)
    new_id = await _insert_place(
        conn,
        principal,
        table="rooms",
        parent="floor_id",
        parent_id=floor_id,
        institution_id=institution_id,
        values=body.model_dump(),
    )
    return Place(id=new_id, parent_id=floor_id, name=body.name)


# --- beds ------------------------------------------------------------------------------------------


class BedIn(BaseModel):
    room_id: Id | None = Field(default=None, description="none for a home-care bed in an elder's own home")
    label: Label = ""
    kind: BedKind


class BedUpdate(BaseModel):
    label: Label | None = None
    kind: BedKind | None = None
    retired: bool | None = Field(default=None, description="true retires the bed (it must be empty)")


class Bed(BaseModel):
    id: int
    code: str = Field(description="一床一码: B, 9 characters and a check character")
    institution_id: int
    room_id: int | None
    building: str | None
    floor: str | None
    room: str | None
    label: str
    kind: BedKind
    occupied: bool
    created_at: datetime
    retired_at: datetime | None


BED_SELECT = sql.SQL(
    "SELECT b.id, b.code, b.institution_id, b.room_id, bu.name AS building, f.name AS floor, r.name AS room,"
    " b.label, b.kind::text AS kind, b.created_at, b.retired_at,"
    " EXISTS (SELECT 1 FROM bed_assignments a WHERE a.bed_id = b.id AND a.during @> now()) AS occupied"
    " FROM beds b LEFT JOIN rooms r ON r.id = b.room_id LEFT JOIN floors f ON f.id = r.floor_id"
    " LEFT JOIN buildings bu ON bu.id = f.building_id"
)


async def fetch_bed(conn: AsyncConn, bed_id: int) -> Bed:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL("{} WHERE b.id = %s").format(BED_SELECT), (bed_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("bed")
    return Bed.model_validate(row)


async def check_room(conn: AsyncConn, *, room_id: int | None, institution_id: int) -> None:
    if room_id is None:
        return
    row = await (
        await conn.execute(
            "SELECT 1 FROM rooms r JOIN floors f ON f.id = r.floor_id JOIN buildings b ON b.id = f.building_id"
            " WHERE r.id = %s AND b.institution_id = %s",
            (room_id, institution_id),
        )
    ).fetchone()
    if row is None:
        raise Problem(422, "no such room in the institution", [FieldError(field="body.room_id", reason="unknown room")])


async def insert_bed(
    conn: AsyncConn, principal: Principal | None, *, institution_id: int, room_id: int | None, label: str, kind: str
) -> int:
    """Issue a bed code and register the bed (inside the caller's transaction)."""
    code = codes.new_bed_code(_codes)
    row = await (
        await conn.execute(
            "INSERT INTO beds (institution_id, room_id, code, label, kind) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (institution_id, room_id, code, label, kind),
        )
    ).fetchone()
    assert row is not None
    await audit.record(
        conn,
        principal=principal,
        action="create",
        object_type="bed",
        object_id=row[0],
        institution_id=institution_id,
        detail={"code": code, "label": label, "kind": kind, "room_id": room_id},
    )
    bed_id: int = row[0]
    return bed_id


@router.get("/institutions/{institution_id}/beds")
async def list_beds(
    *,
    institution_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    room_id: Annotated[Id | None, Query()] = None,
    kind: BedKind | None = None,
    include_retired: bool = False,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[Bed]:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_REGISTRY)
    query = sql.SQL(
        "{} WHERE b.institution_id = %(i)s AND (%(room)s::bigint IS NULL OR b.room_id = %(room)s)"
        " AND (%(kind)s::bed_kind IS NULL OR b.kind = %(kind)s::bed_kind)"
        " AND (%(retired)s OR b.retired_at IS NULL) ORDER BY b.id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(BED_SELECT)
    params = {
        "i": institution_id,
        "room": room_id,
        "kind": kind,
        "retired": include_retired,
        "limit": limit,
        "offset": offset,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return [Bed.model_validate(r) for r in await cur.fetchall()]


@router.post("/institutions/{institution_id}/beds", status_code=201)
async def create_bed(institution_id: PathId, body: BedIn, conn: Conn, principal: CurrentPrincipal) -> Bed:
    """Register a bed; the platform issues its code."""
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.WRITE_REGISTRY)
    await check_room(conn, room_id=body.room_id, institution_id=institution_id)
    async with atomic(conn):
        bed_id = await insert_bed(
            conn,
            principal,
            institution_id=institution_id,
            room_id=body.room_id,
            label=body.label,
            kind=body.kind.value,
        )
    return await fetch_bed(conn, bed_id)


@router.get("/beds/{bed_id}")
async def get_bed(bed_id: PathId, conn: Conn, principal: CurrentPrincipal) -> Bed:
    await scope.resolve(conn, principal, Obj.BED, bed_id, Action.READ_REGISTRY)
    return await fetch_bed(conn, bed_id)


@router.patch("/beds/{bed_id}")
async def update_bed(bed_id: PathId, body: BedUpdate, conn: Conn, principal: CurrentPrincipal) -> Bed:
    institution_id = await scope.resolve(conn, principal, Obj.BED, bed_id, Action.WRITE_REGISTRY)
    current = await fetch_bed(conn, bed_id)
    async with atomic(conn):
        if body.retired and current.occupied:
            raise Problem(409, "the bed is occupied", [FieldError(field="body.retired", reason="discharge first")])
        await conn.execute(
            "UPDATE beds SET label = coalesce(%s, label), kind = coalesce(%s::bed_kind, kind),"
            " retired_at = CASE WHEN %s::boolean IS NULL THEN retired_at WHEN %s THEN coalesce(retired_at, now())"
            " ELSE NULL END WHERE id = %s",
            (body.label, body.kind, body.retired, body.retired, bed_id),
        )
        await audit.record(
            conn,
            principal=principal,
            action="update",
            object_type="bed",
            object_id=bed_id,
            institution_id=institution_id,
            detail=body.model_dump(mode="json", exclude_unset=True),
        )
    return await fetch_bed(conn, bed_id)
