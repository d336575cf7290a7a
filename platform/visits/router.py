"""``/api/v1/residents/{resident_id}/visits`` and ``/api/v1/visits/due``; one router for ``create_app`` to include.
The regulators' coverage is ``/api/v1/supervision/visits`` (``supervision/router.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.types import RESPONSES, Limit, PathId
from eldercare.platform.visits import service
from eldercare.platform.visits.models import Due, Visit, VisitIn

router = APIRouter(prefix="/api/v1", tags=["visits"], responses=RESPONSES)


@router.post("/residents/{resident_id}/visits", status_code=201)
async def record_visit(
    resident_id: PathId, body: VisitIn, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> Visit:
    """The home's staff record a visit (or a call) to a resident; the note is stored encrypted."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    async with atomic(conn):
        return await service.record(
            conn, principal=principal, vault=vault, resident_id=resident_id, institution_id=institution_id, body=body
        )


@router.get("/residents/{resident_id}/visits")
async def list_visits(
    resident_id: PathId, conn: Conn, principal: CurrentPrincipal, vault: VaultDep, limit: Limit = 100
) -> list[Visit]:
    """A resident's visits, newest first: in full for the home's staff; the note masked for regulators; without the
    visitor's name and the note for the family. The read is audited."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    async with atomic(conn):
        return await service.list_visits(
            conn, principal=principal, vault=vault, resident_id=resident_id, institution_id=institution_id, limit=limit
        )


@router.get("/visits/due")
async def visits_due(
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    within_days: Annotated[int, Query(ge=0, le=366, description="due within this many days, or overdue")] = 7,
    limit: Limit = 200,
) -> list[Due]:
    """The caller's homes' residents living alone whose next visit is due soon or overdue, most overdue first."""
    scope.require(principal, Action.WRITE_RESIDENT)  # the home's staff: who makes the visits
    async with atomic(conn):
        return await service.due_list(conn, principal=principal, vault=vault, within_days=within_days, limit=limit)
