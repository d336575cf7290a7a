"""``POST /api/v1/institutions/{id}/imports/{kind}``: residents, beds or devices from a CSV or XLSX file."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from psycopg import Rollback
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, Problem
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.registry import residents
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.imports import service
from eldercare.platform.registry.imports.parse import MAX_BYTES, ImportRejected
from eldercare.platform.registry.types import RESPONSES, PathId

router = APIRouter(prefix="/api/v1", tags=["import"], responses=RESPONSES)


class ImportReport(BaseModel):
    kind: str
    rows: int = Field(description="data rows in the file")
    created: list[str] = Field(description="codes of what was registered (person, bed or device codes)")
    updated: list[str] = Field(description="codes of what was registered already and changed")
    unchanged: int
    dry_run: bool


@router.post("/institutions/{institution_id}/imports/{kind}")
async def import_file(
    *,
    institution_id: PathId,
    kind: service.Kind,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GB18030) or XLSX; header row first")],
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    dry_run: Annotated[bool, Query(description="check and count, write nothing")] = False,
) -> ImportReport:
    """Import every row or none: any bad row answers 422 with each problem as ``rows[N].column``.

    Columns — residents: name, id_number (required), capability, fall_risk, wander_risk, lives_alone,
    heart_rate_min, heart_rate_max, resp_rate_min, resp_rate_max (a resident already registered keeps what the file
    has no column or an empty cell for); beds: building, floor, room, label, kind; devices: code, kind (required),
    vendor, model, heartbeat_s. Re-importing the same file changes nothing. A residential home's residents live in
    it: a row of theirs with lives_alone 是 is a problem of that row.
    """
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.WRITE_REGISTRY)
    at_home = await residents.lives_at_home(conn, institution_id=institution_id)
    data = await file.read(MAX_BYTES + 1)
    try:
        # parsing is CPU work on a hostile file: in a worker thread, so alarms keep flowing meanwhile
        rows = await asyncio.to_thread(service.check, kind, data, filename=file.filename or "", lives_at_home=at_home)
    except ImportRejected as exc:
        raise Problem(
            422,
            f"nothing was imported: {len(exc.errors)} problem(s) in the file",
            [FieldError(field=f"rows[{e.row}].{e.column}", reason=e.reason) for e in exc.errors],
        ) from exc
    report: service.Report | None = None
    async with atomic(conn):
        report = await service.apply(conn, principal, kind=kind, institution_id=institution_id, rows=rows, vault=vault)
        if dry_run:
            raise Rollback
    return ImportReport(
        kind=report.kind,
        rows=report.rows,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        dry_run=dry_run,
    )
