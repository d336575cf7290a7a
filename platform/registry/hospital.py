"""Stays in hospital: the resident keeps the bed (occupancy and the subsidy checks count the nights). The
hospital and the note are health data: stored encrypted (``health_text.py``), in clear for the home and the
family, masked for regulators, every read audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.registry import health_text
from eldercare.platform.registry.db import atomic, not_in_future
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.stays import Leave, conflict, plausible, resident_status
from eldercare.platform.registry.types import RESPONSES, Name, Note, PathId, When, mask_name, mask_text

router = APIRouter(prefix="/api/v1", tags=["stays"], responses=RESPONSES)


class HospitalStayIn(BaseModel):
    hospital: Name
    start: When
    end: When | None = None
    note: Note = ""


class HospitalStay(BaseModel):
    id: int
    resident_id: int
    hospital: str = Field(description="health data: encrypted at rest; in clear for the home and the family")
    start: datetime
    end: datetime | None
    note: str = Field(description="health data, as the hospital; regulators see the hospital masked, a note as ***")


def _open(row: dict[str, Any], *, vault: Vault, clear: bool) -> HospitalStay:
    hospital = vault.decrypt_text(row.pop("hospital_enc"), column=health_text.HOSPITAL)
    note = vault.decrypt_text(row.pop("note_enc"), column=health_text.NOTE)
    if not clear:
        hospital, note = mask_name(hospital), mask_text(note)
    return HospitalStay.model_validate({**row, "hospital": hospital, "note": note})


@router.get("/residents/{resident_id}/hospital-stays")
async def list_hospital_stays(
    resident_id: PathId, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> list[HospitalStay]:
    """The resident's stays in hospital: in clear for the home and the family, the hospital and note masked for
    regulators. Health data: the read is audited."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    clear = scope.sees_names(principal)
    async with atomic(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, resident_id, hospital_enc, lower(during) AS start, upper(during) AS end, note_enc"
            " FROM hospital_stays WHERE resident_id = %s ORDER BY lower(during)",
            (resident_id,),
        )
        stays = [_open(r, vault=vault, clear=clear) for r in await cur.fetchall()]
        await audit.read_health(
            conn, principal=principal, object_type="resident", object_id=resident_id, institution_id=institution_id,
            detail={"fields": ["hospital_stays"], "count": len(stays), "stays": [s.id for s in stays], "clear": clear},
        )  # fmt: skip
    return stays


@router.post("/residents/{resident_id}/hospital-stays", status_code=201)
async def add_hospital_stay(
    resident_id: PathId, body: HospitalStayIn, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> HospitalStay:
    """A stay in hospital (the bed is kept); an open one has no end yet."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    if body.end is not None and body.end <= body.start:
        raise Problem(
            422, "the stay must end after it starts", [FieldError(field="body.end", reason="not after start")]
        )
    not_in_future("body.end", body.end)
    async with atomic(conn):
        if await resident_status(conn, resident_id) == "deceased":
            raise conflict("resident_id", "the resident is deceased")
        await plausible(conn, resident_id=resident_id, when=body.start, field="body.start")
        row = await (
            await conn.execute(
                "INSERT INTO hospital_stays (resident_id, hospital_enc, during, note_enc)"
                " VALUES (%s, %s, tstzrange(%s, %s), %s) RETURNING id",
                (
                    resident_id,
                    vault.encrypt_text(body.hospital, column=health_text.HOSPITAL),
                    body.start,
                    body.end,
                    vault.encrypt_text(body.note, column=health_text.NOTE),
                ),
            )
        ).fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="create",
            object_type="hospital_stay",
            object_id=row[0],
            institution_id=institution_id,
            detail={"resident_id": resident_id},
        )
    return HospitalStay(id=row[0], resident_id=resident_id, **body.model_dump())


async def _noted(conn: AsyncConn, *, vault: Vault, stay_id: int, note: str) -> bytes | None:
    """The stay's note with ``note`` appended on a line of its own, sealed; None when no note is given (the stay's
    note is kept). Locks the stay's row, so that no other end adds to the same note meanwhile."""
    if not note:
        return None
    row = await (
        await conn.execute("SELECT note_enc FROM hospital_stays WHERE id = %s FOR UPDATE", (stay_id,))
    ).fetchone()
    before = vault.decrypt_text(row[0] if row else None, column=health_text.NOTE)
    return vault.encrypt_text(f"{before}\n{note}" if before else note, column=health_text.NOTE)


@router.post("/hospital-stays/{stay_id}/end")
async def end_hospital_stay(
    stay_id: PathId, body: Leave, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> HospitalStay:
    """The resident came back from hospital. A note given (say, the hospital's discharge advice) is added to the
    stay's note on a line of its own: the note written when the stay began is kept. The answer shows the stay's
    hospital and note: a read of health data, audited as such."""
    institution_id = await scope.resolve(conn, principal, Obj.HOSPITAL_STAY, stay_id, Action.WRITE_RESIDENT)
    not_in_future("body.at", body.at)
    async with atomic(conn):
        note_enc = await _noted(conn, vault=vault, stay_id=stay_id, note=body.note)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "UPDATE hospital_stays SET during = tstzrange(lower(during), coalesce(%s, now())),"
                " note_enc = coalesce(%s::bytea, note_enc)"
                " WHERE id = %s AND upper_inf(during) AND lower(during) < coalesce(%s, now())"
                " RETURNING id, resident_id, hospital_enc, lower(during) AS start, upper(during) AS end, note_enc",
                (body.at, note_enc, stay_id, body.at),
            )
            row = await cur.fetchone()
        if row is None:
            raise conflict("body.at", "the stay has ended already, or would end before it started")
        stay = _open(row, vault=vault, clear=True)  # only the home may end a stay
        await audit.record(
            conn,
            principal=principal,
            action="update",
            object_type="hospital_stay",
            object_id=stay_id,
            institution_id=institution_id,
            detail={"ended": row["end"].isoformat(), "note_given": bool(body.note)},
        )
        await audit.read_health(
            conn, principal=principal, object_type="resident", object_id=stay.resident_id,
            institution_id=institution_id, detail={"fields": ["hospital_stays"], "stays": [stay_id], "clear": True},
        )  # fmt: skip
    return stay
