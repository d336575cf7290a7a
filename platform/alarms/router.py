"""``/api/v1/alarms``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from eldercare.platform.alarms import service
from eldercare.platform.alarms.models import Alarm, AlarmChange, State
from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES
from eldercare.platform.registry.deps import VaultDep

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"], responses=RESPONSES)


@router.get("")
async def list_alarms(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    open_only: Annotated[bool, Query(alias="open", description="only raised, acknowledged or attending")] = False,
    since: Annotated[datetime | None, Query(description="raised at or after (ISO 8601 with zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Alarm]:
    """Alarms in the caller's scope, emergencies first, newest first within a priority. Alarms are health data:
    the read is audited (one entry naming the alarms and residents shown); regulators see the detail and the
    outcome masked."""
    async with conn.transaction():
        found = await service.list_alarms(
            conn, principal=principal, vault=vault, open_only=open_only, since=since, limit=limit
        )
        await service.audit_read(conn, principal=principal, alarm_ids=[a.id for a in found], shown_as="list")
    return found


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: int, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """One alarm. The read is audited."""
    async with conn.transaction():
        found = await service.get_alarm(conn, principal=principal, vault=vault, alarm_id=alarm_id)
        await service.audit_read(conn, principal=principal, alarm_ids=[found.id], shown_as="alarm")
    return found


@router.get("/{alarm_id}/history")
async def alarm_history(alarm_id: int, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> list[AlarmChange]:
    """Every change of one alarm: for the home's staff who made it and their note; for regulators the same with the
    notes masked; for a family each change of state and when, made by ``staff``, ``system`` or ``device``, without
    notes. The read is audited."""
    async with conn.transaction():
        changes = await service.history(conn, principal=principal, vault=vault, alarm_id=alarm_id)
        await service.audit_read(conn, principal=principal, alarm_ids=[alarm_id], shown_as="history")
    return changes


class Action(BaseModel):
    note: str = Field(default="", max_length=2000)


class Closing(BaseModel):
    outcome: str = Field(min_length=1, max_length=200, description="real fall, false alarm, accidental press, ...")
    note: str = Field(default="", max_length=2000)


@router.post("/{alarm_id}/acknowledge")
async def acknowledge(alarm_id: int, body: Action, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Silences the sound; the alarm stays open."""
    return await service.transition(
        conn, principal=principal, vault=vault, alarm_id=alarm_id, to=State.ACKNOWLEDGED, outcome=None, note=body.note
    )


@router.post("/{alarm_id}/attend")
async def attend(alarm_id: int, body: Action, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Someone is at the bedside."""
    return await service.transition(
        conn, principal=principal, vault=vault, alarm_id=alarm_id, to=State.ATTENDING, outcome=None, note=body.note
    )


@router.post("/{alarm_id}/resolve")
async def resolve(alarm_id: int, body: Closing, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    return await service.transition(
        conn,
        principal=principal,
        vault=vault,
        alarm_id=alarm_id,
        to=State.RESOLVED,
        outcome=body.outcome,
        note=body.note,
    )


@router.post("/{alarm_id}/cancel")
async def cancel(alarm_id: int, body: Closing, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Staff cancel an alarm with a reason (a button alarm is otherwise cancelled only at the bedside)."""
    return await service.transition(
        conn,
        principal=principal,
        vault=vault,
        alarm_id=alarm_id,
        to=State.CANCELLED,
        outcome=body.outcome,
        note=body.note,
    )
