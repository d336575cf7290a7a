"""``/api/v1/alarms``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from eldercare.platform.alarms import service
from eldercare.platform.alarms.models import Alarm, AlarmChange, OutcomeCode, State
from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
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
    outcome_code: OutcomeCode | None = Field(
        default=None,
        description="how it ended, as a code every reader (regulators too) sees and the figures count: real_event,"
        " false_alarm, accidental_press, device_issue or other. Optional: left out, the outcome text is taken as the"
        ' code when it is one (``{"outcome": "false_alarm"}``), else the code stays null (not known)',
    )
    note: str = Field(default="", max_length=2000)


# How an answer is named in the audit log's ``as`` (beside ``alarm``, ``list`` and ``history``).
_SHOWN_AS = {
    State.ACKNOWLEDGED: "acknowledge",
    State.ATTENDING: "attend",
    State.RESOLVED: "resolve",
    State.CANCELLED: "cancel",
}


async def _answered(
    conn: AsyncConn,
    *,
    principal: Principal,
    vault: Vault,
    alarm_id: int,
    to: State,
    note: str,
    closing: Closing | None = None,
) -> Alarm:
    """Move the alarm on and answer it as it is now. The answer is a read of the alarm like ``GET /alarms/{id}``
    (its detail, outcome and resident), audited the same way in the same transaction: one entry per answer, ``as``
    the action; a move refused (403, 404, 409, 422) showed nothing and is not logged."""
    async with conn.transaction():
        found = await service.transition(
            conn,
            principal=principal,
            vault=vault,
            alarm_id=alarm_id,
            to=to,
            outcome=closing.outcome if closing else None,
            outcome_code=closing.outcome_code if closing else None,
            note=note,
        )
        await service.audit_read(conn, principal=principal, alarm_ids=[found.id], shown_as=_SHOWN_AS[to])
    return found


@router.post("/{alarm_id}/acknowledge")
async def acknowledge(alarm_id: int, body: Action, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Silences the sound; the alarm stays open. The answer is audited as a read."""
    return await _answered(
        conn, principal=principal, vault=vault, alarm_id=alarm_id, to=State.ACKNOWLEDGED, note=body.note
    )


@router.post("/{alarm_id}/attend")
async def attend(alarm_id: int, body: Action, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Someone is at the bedside. The answer is audited as a read."""
    return await _answered(
        conn, principal=principal, vault=vault, alarm_id=alarm_id, to=State.ATTENDING, note=body.note
    )


@router.post("/{alarm_id}/resolve")
async def resolve(alarm_id: int, body: Closing, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Closes the alarm with an outcome (text, sealed) and its code (in clear). The answer is audited as a read."""
    return await _answered(
        conn, principal=principal, vault=vault, alarm_id=alarm_id, to=State.RESOLVED, note=body.note, closing=body
    )


@router.post("/{alarm_id}/cancel")
async def cancel(alarm_id: int, body: Closing, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Alarm:
    """Staff cancel an alarm with a reason and its code (a button alarm is otherwise cancelled only at the bedside).
    The answer is audited as a read."""
    return await _answered(
        conn, principal=principal, vault=vault, alarm_id=alarm_id, to=State.CANCELLED, note=body.note, closing=body
    )
