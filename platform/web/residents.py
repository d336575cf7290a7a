"""What the resident's page and the family page read about one resident: their state now in plain terms,
their alarms with how each was handled, and (for a family user) which residents are theirs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel

from eldercare.platform.alarms import service as alarm_service
from eldercare.platform.alarms.models import Alarm
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.web.board import BoardAlarm, board

State = Literal["in_bed", "out_of_bed", "unknown", "in_hospital", "no_bed", "discharged", "deceased"]


class ResidentStatus(BaseModel):
    resident_id: int
    person_code: str
    institution_id: int
    state: State
    bed_id: int | None
    bed_label: str | None
    room: str | None
    floor: str | None
    building: str | None
    out_since: datetime | None
    out_minutes: int | None
    out_longer_than_window: bool
    last_reading_at: datetime | None  # the latest reading of the bed sensor: when the bed last "saw" anything
    has_bed_sensor: bool
    device_offline: bool
    open_alarms: list[BoardAlarm]


_RESIDENT = """
SELECT r.id, r.person_code, r.institution_id, r.status::text AS status, ba.bed_id,
       EXISTS (SELECT 1 FROM hospital_stays h WHERE h.resident_id = r.id AND h.during @> now()) AS in_hospital
FROM residents r LEFT JOIN bed_assignments ba ON ba.resident_id = r.id AND ba.during @> now()
WHERE r.id = %s
"""


async def status(conn: AsyncConn, *, resident_id: int) -> ResidentStatus:
    """The resident's state now; the caller has checked scope."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_RESIDENT, (resident_id,))
        row = await cur.fetchone()
    assert row is not None  # resolved by the caller
    bed = None
    if row["bed_id"] is not None:
        found = await board(conn, institution_id=row["institution_id"], floor_id=None, bed_id=row["bed_id"])
        bed = found.beds[0] if found.beds else None
    state: State
    if row["status"] in ("discharged", "deceased"):
        state = row["status"]
    elif row["in_hospital"]:
        state = "in_hospital"
    elif bed is None:
        state = "no_bed"
    else:
        state = bed.presence
    return ResidentStatus(
        resident_id=row["id"],
        person_code=row["person_code"],
        institution_id=row["institution_id"],
        state=state,
        bed_id=bed.bed_id if bed else None,
        bed_label=bed.label if bed else None,
        room=bed.room if bed else None,
        floor=bed.floor if bed else None,
        building=bed.building if bed else None,
        out_since=bed.out_since if bed and state == "out_of_bed" else None,
        out_minutes=bed.out_minutes if bed and state == "out_of_bed" else None,
        out_longer_than_window=bool(bed and state == "out_of_bed" and bed.out_longer_than_window),
        last_reading_at=bed.reading_at if bed else None,
        has_bed_sensor=bool(bed and any(d.kind == "bed_sensor" for d in bed.devices)),
        device_offline=bool(bed and bed.device_offline),
        open_alarms=bed.alarms if bed else [],
    )


_ALARMS = sql.SQL(
    "{select} WHERE a.resident_id = %(r)s AND (%(before)s::bigint IS NULL OR a.id < %(before)s)"
    " ORDER BY a.id DESC LIMIT %(limit)s"
).format(select=alarm_service.SELECT)


async def alarms(
    conn: AsyncConn, *, principal: Principal, vault: Vault, resident_id: int, limit: int, before: int | None
) -> list[Alarm]:
    """The resident's alarms, newest first (``before``: an alarm id, for the next page), as the alarms API shows them
    to ``principal`` (``alarms/service.py``); the caller has checked scope."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ALARMS, {"r": resident_id, "limit": limit, "before": before})
        rows = await cur.fetchall()
    return [alarm_service.shown(row, vault=vault, principal=principal) for row in rows]


class MyResident(BaseModel):
    id: int
    person_code: str
    name: str
    relation: str
    institution_id: int
    institution_name: str
    institution_phone: str


async def linked_residents(conn: AsyncConn, *, principal: Principal, vault: Vault) -> list[MyResident]:
    """The residents linked to the caller (a family user); nobody for other roles. The read is audited."""
    query = sql.SQL(
        "SELECT r.id, r.person_code, r.name_enc, f.relation, r.institution_id, i.name AS institution_name,"
        " i.contact_phone AS institution_phone FROM family_links f JOIN residents r ON r.id = f.resident_id"
        " JOIN institutions i ON i.id = r.institution_id WHERE f.user_id = %s AND {} ORDER BY r.id"
    ).format(scope.resident_filter(principal, sql.SQL("r.institution_id"), sql.SQL("r.id")))
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, (principal.user_id,))
            rows: list[dict[str, Any]] = await cur.fetchall()
        found = [
            MyResident(
                **{k: v for k, v in row.items() if k != "name_enc"},
                name=vault.decrypt(bytes(row["name_enc"]), column="residents.name"),
            )
            for row in rows
        ]
        for institution_id in sorted({r.institution_id for r in found}):
            await audit.record(
                conn,
                principal=principal,
                action="read_personal",
                object_type="resident",
                object_id=None,
                institution_id=institution_id,
                detail={"ids": [r.id for r in found if r.institution_id == institution_id], "fields": ["name"]},
            )
    return found
