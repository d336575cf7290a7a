"""The small read endpoints the pages need that no other domain offers: the staff board, a resident's state,
vital signs and alarms, and a family user's own residents. Scope comes from ``auth/scope.py`` as for every
endpoint: :func:`scope.resolve` on the object the path names (404 outside the caller's scope)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from eldercare.platform.alarms.models import Alarm
from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES, NotFound
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.types import Id, PathId
from eldercare.platform.web import residents
from eldercare.platform.web.board import Board, board
from eldercare.platform.web.residents import MyResident, ResidentStatus
from eldercare.platform.web.vitals import Vitals, vitals

router = APIRouter(prefix="/api/v1", tags=["board and resident pages"], responses=RESPONSES)


@router.get("/institutions/{institution_id}/board")
async def get_board(
    institution_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    floor_id: Annotated[Id | None, Query(description="only the beds of this floor")] = None,
) -> Board:
    """Every bed of the home (or of one floor): occupant, in bed or out of bed (since when), devices and
    whether any is offline, open alarms. No names: the page takes them from the residents endpoint."""
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_REGISTRY)
    if floor_id is not None:
        owner = await scope.resolve(conn, principal, Obj.FLOOR, floor_id, Action.READ_REGISTRY)
        if owner != institution_id:
            raise NotFound("floor")
    return await board(conn, institution_id=institution_id, floor_id=floor_id)


@router.get("/residents/{resident_id}/status")
async def get_status(resident_id: PathId, conn: Conn, principal: CurrentPrincipal) -> ResidentStatus:
    """The resident's state now: in bed, out of bed (since when), in hospital, discharged; their bed sensor's
    latest reading; open alarms."""
    await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    return await residents.status(conn, resident_id=resident_id)


@router.get("/residents/{resident_id}/vitals")
async def get_vitals(
    resident_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    hours: Annotated[int, Query(ge=1, le=168, description="the last this many hours")] = 6,
) -> Vitals:
    """Heart and breathing rate from the resident's bed sensors: the readings for an hour or less, averages
    over buckets (with minimum and maximum) for longer. The rates are sealed at rest and opened here for the
    chart: the read is audited."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    async with conn.transaction():
        found = await vitals(conn, vault=vault, resident_id=resident_id, end=datetime.now(UTC), hours=hours)
        await audit.read_health(
            conn, principal=principal, object_type="resident", object_id=resident_id, institution_id=institution_id,
            detail={"fields": ["heart_rate", "resp_rate", "presence"], "hours": hours},
        )  # fmt: skip
    return found


@router.get("/residents/{resident_id}/alarms")
async def get_resident_alarms(
    *,
    resident_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[Id | None, Query(description="alarms older than this alarm id (the next page)")] = None,
) -> list[Alarm]:
    """The resident's alarms, newest first, each with when it was acknowledged, attended and closed. Falls,
    vital signs out of range and the like are health data: the read is audited, with the kinds it showed."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    async with conn.transaction():
        found = await residents.alarms(
            conn, principal=principal, vault=vault, resident_id=resident_id, limit=limit, before=before
        )
        await audit.read_health(
            conn, principal=principal, object_type="resident", object_id=resident_id, institution_id=institution_id,
            detail={"fields": ["alarms"], "alarms": len(found), "kinds": sorted({a.kind for a in found})},
        )  # fmt: skip
    return found


@router.get("/me/residents")
async def my_residents(conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> list[MyResident]:
    """The residents linked to the caller (family users); an empty list for other roles. Audited."""
    return await residents.linked_residents(conn, principal=principal, vault=vault)
