"""Admissions, transfers and discharges (who was in which bed when), and deaths (hospital stays: ``hospital.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, Problem, invalid
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry import health_text
from eldercare.platform.registry.db import atomic, ends_after_start, not_in_future
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.types import RESPONSES, Id, Name, Note, PathId, When, mask_text

router = APIRouter(prefix="/api/v1", tags=["stays"], responses=RESPONSES)


class Move(BaseModel):
    bed_id: Id
    at: When | None = Field(default=None, description="when; default now")


class Leave(BaseModel):
    at: When | None = Field(default=None, description="when; default now")
    note: Note = Field(default="", description="health data: stored encrypted, never copied into the audit log")


class Assignment(BaseModel):
    bed_id: int
    bed_code: str
    bed_label: str
    resident_id: int
    person_code: str
    start: datetime
    end: datetime | None
    end_reason: str | None


class BedStay(Assignment):
    """A bed stay as the resident's record shows it: with the note given when it ended."""

    note: str = Field(
        description="the discharge note: health data, in clear for the home and the family, *** for regulators"
    )


class DeathSource(StrEnum):
    INSTITUTION = "institution"
    HOSPITAL = "hospital"
    FUNERAL_DATA = "funeral_data"
    FAMILY = "family"


class DeathIn(BaseModel):
    died_at: When
    place: Annotated[Name, Field(max_length=200)] | None = None
    source: DeathSource


def conflict(field: str, reason: str) -> Problem:
    return Problem(409, reason, [FieldError(field=field, reason=reason)])


async def resident_status(conn: AsyncConn, resident_id: int) -> str:
    row = await (
        await conn.execute("SELECT status::text FROM residents WHERE id = %s FOR UPDATE", (resident_id,))
    ).fetchone()
    assert row is not None
    status: str = row[0]
    return status


async def _usable_bed(conn: AsyncConn, *, bed_id: int, institution_id: int) -> None:
    row = await (
        await conn.execute(
            "SELECT retired_at IS NULL FROM beds WHERE id = %s AND institution_id = %s", (bed_id, institution_id)
        )
    ).fetchone()
    if row is None:
        raise Problem(
            422, "no such bed in the resident's institution", [FieldError(field="body.bed_id", reason="unknown bed")]
        )
    if not row[0]:
        raise conflict("body.bed_id", "the bed is retired")


# Birth dates (from the ID number) are dates in China.
_LOCAL = ZoneInfo("Asia/Shanghai")


async def plausible(conn: AsyncConn, *, resident_id: int, when: datetime, field: str) -> None:
    """422 on ``field`` unless ``when`` has happened (give or take :data:`~.db.LEEWAY`) and is not before the
    resident's birth date."""
    not_in_future(field, when)
    row = await (await conn.execute("SELECT birth_date FROM residents WHERE id = %s", (resident_id,))).fetchone()
    if row is not None and when.astimezone(_LOCAL).date() < row[0]:
        raise invalid(field, f"before the resident was born ({row[0].isoformat()})")


async def _close_stay(
    conn: AsyncConn,
    *,
    resident_id: int,
    at: datetime | None,
    reason: str,
    field: str = "body.at",
    note_enc: bytes | None = None,
) -> int | None:
    """End the resident's open bed assignment at ``at``, with the (encrypted) note given; the bed it was in, or None.
    409 on ``field`` if ``at`` is before the assignment began."""
    began = await (
        await conn.execute(
            "SELECT lower(during) FROM bed_assignments WHERE resident_id = %s AND upper_inf(during) FOR UPDATE",
            (resident_id,),
        )
    ).fetchone()
    ends_after_start(field, "stay in a bed", at, began[0] if began else None)
    row = await (
        await conn.execute(
            "UPDATE bed_assignments SET during = tstzrange(lower(during),"
            " coalesce(%s, greatest(lower(during), now()))), end_reason = %s, end_note_enc = %s"
            " WHERE resident_id = %s AND upper_inf(during) RETURNING bed_id",
            (at, reason, note_enc, resident_id),
        )
    ).fetchone()
    return None if row is None else int(row[0])


async def _record(
    *,
    conn: AsyncConn,
    principal: Principal,
    action: str,
    resident_id: int,
    institution_id: int,
    detail: dict[str, object],
) -> None:
    await audit.record(
        conn,
        principal=principal,
        action=action,
        object_type="resident",
        object_id=resident_id,
        institution_id=institution_id,
        detail=detail,
    )


@router.post("/residents/{resident_id}/admit", status_code=204)
async def admit(resident_id: PathId, body: Move, conn: Conn, principal: CurrentPrincipal) -> None:
    """Give a registered (or discharged) resident a bed."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    async with atomic(conn):
        if body.at is not None:
            await plausible(conn, resident_id=resident_id, when=body.at, field="body.at")
        status = await resident_status(conn, resident_id)
        if status not in ("registered", "discharged"):
            raise conflict("path.resident_id", f"a resident who is {status} cannot be admitted")
        await _usable_bed(conn, bed_id=body.bed_id, institution_id=institution_id)
        await conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange(coalesce(%s, now()),"
            " NULL))",
            (body.bed_id, resident_id, body.at),
        )
        await conn.execute("UPDATE residents SET status = 'admitted' WHERE id = %s", (resident_id,))
        await _record(
            conn=conn,
            principal=principal,
            action="admit",
            resident_id=resident_id,
            institution_id=institution_id,
            detail=body.model_dump(mode="json"),
        )


@router.post("/residents/{resident_id}/transfer", status_code=204)
async def transfer(resident_id: PathId, body: Move, conn: Conn, principal: CurrentPrincipal) -> None:
    """Move an admitted resident to another bed of the home at one instant."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    not_in_future("body.at", body.at)
    async with atomic(conn):
        if await resident_status(conn, resident_id) != "admitted":
            raise conflict("path.resident_id", "only an admitted resident can be transferred")
        await _usable_bed(conn, bed_id=body.bed_id, institution_id=institution_id)
        at = body.at or datetime.now(UTC)
        old = await _close_stay(conn, resident_id=resident_id, at=at, reason="transfer")
        if old == body.bed_id:
            raise conflict("body.bed_id", "the resident is in this bed already")
        await conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange(%s, NULL))",
            (body.bed_id, resident_id, at),
        )
        await _record(
            conn=conn,
            principal=principal,
            action="transfer",
            resident_id=resident_id,
            institution_id=institution_id,
            detail={**body.model_dump(mode="json"), "from_bed_id": old},
        )


@router.post("/residents/{resident_id}/discharge", status_code=204)
async def discharge(resident_id: PathId, body: Leave, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> None:
    """The resident leaves the home: the bed is freed and devices worn by the resident are unbound. The note is
    health data: kept encrypted on the stay that ended (shown with the resident's beds), and the audit log says only
    whether one was given."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    not_in_future("body.at", body.at)
    note_enc = vault.encrypt_text(body.note, column=health_text.END_NOTE)
    async with atomic(conn):
        if await resident_status(conn, resident_id) != "admitted":
            raise conflict("path.resident_id", "only an admitted resident can be discharged")
        await _close_stay(conn, resident_id=resident_id, at=body.at, reason="discharge", note_enc=note_enc)
        await _unbind_worn(conn, resident_id=resident_id, at=body.at)
        await conn.execute("UPDATE residents SET status = 'discharged' WHERE id = %s", (resident_id,))
        await _record(
            conn=conn,
            principal=principal,
            action="discharge",
            resident_id=resident_id,
            institution_id=institution_id,
            detail={**body.model_dump(mode="json", exclude={"note"}), "note_given": bool(body.note)},
        )


async def _unbind_worn(conn: AsyncConn, *, resident_id: int, at: datetime | None, field: str = "body.at") -> None:
    """End the bindings of devices the resident wears at ``at``; 409 on ``field`` if one began after it."""
    began = await (
        await conn.execute(
            "SELECT max(lower(during)) FROM device_bindings WHERE resident_id = %s AND upper_inf(during)",
            (resident_id,),
        )
    ).fetchone()
    ends_after_start(field, "binding of a device the resident wears", at, began[0] if began else None)
    await conn.execute(
        "UPDATE device_bindings SET during = tstzrange(lower(during), coalesce(%s, greatest(lower(during), now())))"
        " WHERE resident_id = %s AND upper_inf(during)",
        (at, resident_id),
    )


@router.get("/residents/{resident_id}/beds")
async def resident_beds(resident_id: PathId, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> list[BedStay]:
    """Every bed the resident had, oldest first, with the note given at a discharge: in clear for the home and the
    family, *** for regulators. A read that shows a note is a read of health data: audited."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    clear = scope.sees_names(principal)
    async with atomic(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _ASSIGNMENTS.format(sql.SQL(", a.end_note_enc"), sql.Identifier("a", "resident_id")), (resident_id,)
        )
        stays = []
        for row in await cur.fetchall():
            note = vault.decrypt_text(row.pop("end_note_enc"), column=health_text.END_NOTE)
            stays.append(BedStay.model_validate({**row, "note": note if clear else mask_text(note)}))
        if any(s.note for s in stays):
            await audit.read_health(
                conn, principal=principal, object_type="resident", object_id=resident_id,
                institution_id=institution_id,
                detail={"fields": ["discharge_note"], "count": sum(1 for s in stays if s.note), "clear": clear},
            )  # fmt: skip
    return stays


@router.get("/beds/{bed_id}/history")
async def bed_history(bed_id: PathId, conn: Conn, principal: CurrentPrincipal) -> list[Assignment]:
    """Who was in the bed when (by person code), oldest first."""
    await scope.resolve(conn, principal, Obj.BED, bed_id, Action.READ_REGISTRY)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ASSIGNMENTS.format(sql.SQL(""), sql.Identifier("a", "bed_id")), (bed_id,))
        return [Assignment.model_validate(r) for r in await cur.fetchall()]


# {} extra columns, {} the column to filter on
_ASSIGNMENTS = sql.SQL(
    "SELECT a.bed_id, b.code AS bed_code, b.label AS bed_label, a.resident_id, r.person_code,"
    " lower(a.during) AS start, upper(a.during) AS end, a.end_reason{} FROM bed_assignments a"
    " JOIN beds b ON b.id = a.bed_id JOIN residents r ON r.id = a.resident_id"
    " WHERE {} = %s ORDER BY lower(a.during)"
)


@router.post("/residents/{resident_id}/death", status_code=204)
async def record_death(
    resident_id: PathId, body: DeathIn, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> None:
    """Record a death: the bed is freed, worn devices unbound, an open hospital stay ended. The place is health
    data: stored encrypted, and the audit log says only whether one was given."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    async with atomic(conn):
        if await resident_status(conn, resident_id) == "deceased":
            raise conflict("path.resident_id", "a death is already recorded for this resident")
        await plausible(conn, resident_id=resident_id, when=body.died_at, field="body.died_at")
        await conn.execute(
            "INSERT INTO deaths (resident_id, died_at, place_enc, source, recorded_by) VALUES (%s, %s, %s, %s, %s)",
            (
                resident_id,
                body.died_at,
                vault.encrypt_text(body.place, column=health_text.PLACE),
                body.source.value,
                principal.user_id,
            ),
        )
        await _close_stay(conn, resident_id=resident_id, at=body.died_at, reason="death", field="body.died_at")
        await _unbind_worn(conn, resident_id=resident_id, at=body.died_at, field="body.died_at")
        await conn.execute(
            "UPDATE hospital_stays SET during = tstzrange(lower(during), greatest(lower(during), %s))"
            " WHERE resident_id = %s AND upper_inf(during)",
            (body.died_at, resident_id),
        )
        await conn.execute("UPDATE residents SET status = 'deceased' WHERE id = %s", (resident_id,))
        await _record(
            conn=conn,
            principal=principal,
            action="death",
            resident_id=resident_id,
            institution_id=institution_id,
            detail={**body.model_dump(mode="json", exclude={"place"}), "place_given": bool(body.place)},
        )
