"""``GET .../bed-labels.pdf`` and ``.../resident-cards.pdf``: sheets to print and stick on beds and cards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from psycopg.rows import dict_row

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.labels import pdf
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.types import MAX_ID, RESPONSES, PathId

router = APIRouter(prefix="/api/v1", tags=["labels"], responses=RESPONSES)
_PDF: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        "description": "an A4 PDF",
    }
}


@router.get("/floors/{floor_id}/bed-labels.pdf", response_class=Response, responses=_PDF)
async def bed_labels(floor_id: PathId, conn: Conn, principal: CurrentPrincipal) -> Response:
    """A sheet of QR labels of the floor's beds in use: bed code (with its check character) and place."""
    await scope.resolve(conn, principal, Obj.FLOOR, floor_id, Action.WRITE_REGISTRY)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT b.code, b.label, r.name AS room, f.name AS floor, bu.name AS building, i.name AS home"
            " FROM floors f JOIN buildings bu ON bu.id = f.building_id JOIN institutions i ON i.id = bu.institution_id"
            " LEFT JOIN rooms r ON r.floor_id = f.id LEFT JOIN beds b ON b.room_id = r.id AND b.retired_at IS NULL"
            " WHERE f.id = %s ORDER BY r.name, b.label, b.code",
            (floor_id,),
        )
        rows = await cur.fetchall()
    title = f"{rows[0]['home']} {rows[0]['building']} {rows[0]['floor']}" if rows else "floor"
    labels = [
        pdf.Label(row["code"], [f"{row['building']} {row['floor']}", f"{row['room']} 床 {row['label']}"])
        for row in rows
        if row["code"] is not None
    ]
    return Response(pdf.bed_labels(labels, title=title), media_type="application/pdf")


@router.get("/institutions/{institution_id}/resident-cards.pdf", response_class=Response, responses=_PDF)
async def resident_cards(
    institution_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    resident_id: Annotated[list[Annotated[int, Query(ge=1, le=MAX_ID)]] | None, Query(max_length=200)] = None,
) -> Response:
    """Cards with the QR of each resident's person code, name and bed (default: every admitted resident).

    Printing names is a read of personal data: it is audited.
    """
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.WRITE_REGISTRY)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT r.id, r.person_code, r.name_enc, b.label AS bed, i.name AS home FROM residents r"
            " JOIN institutions i ON i.id = r.institution_id"
            " LEFT JOIN bed_assignments a ON a.resident_id = r.id AND a.during @> now()"
            " LEFT JOIN beds b ON b.id = a.bed_id WHERE r.institution_id = %(i)s"
            " AND (%(ids)s::bigint[] IS NULL AND r.status = 'admitted' OR r.id = ANY(%(ids)s::bigint[]))"
            " ORDER BY b.label NULLS LAST, r.id",
            {"i": institution_id, "ids": resident_id},
        )
        rows = await cur.fetchall()
        labels = [
            pdf.Label(
                row["person_code"],
                [
                    vault.decrypt(bytes(row["name_enc"]), column="residents.name"),
                    f"床位 {row['bed'] or '—'}",
                    row["home"],
                ],
            )
            for row in rows
        ]
        await audit.record(
            conn,
            principal=principal,
            action="read_personal",
            object_type="resident",
            object_id=None,
            institution_id=institution_id,
            detail={"ids": [row["id"] for row in rows], "purpose": "resident cards"},
        )
    return Response(pdf.resident_cards(labels, title="住户卡 resident cards"), media_type="application/pdf")
