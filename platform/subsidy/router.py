"""``/api/v1/subsidy/...`` and ``/api/v1/institutions/{id}/subsidy/...``: one router for ``create_app``
(this module: the programmes and the claims; ``supervise.py``: verification, totals, lists and registers).

Homes (heads) submit and read their claims; regulators (their region) and admins run verification, import the
civil-affairs registers, set the amounts, decide manual checks and read every list; heads read their own
home's verdicts, totals and lists. Scope comes from ``platform/auth/scope.py``; see ``access.py``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile
from psycopg import sql

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, Problem, invalid
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal, Role, check_region
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.imports.parse import MAX_BYTES
from eldercare.platform.registry.types import RESPONSES, PathId
from eldercare.platform.subsidy import claims, programmes, reports, supervise
from eldercare.platform.subsidy.access import (
    READ,
    SUBMIT,
    SUPERVISE,
    month_query,
    parse_month,
    require,
)
from eldercare.platform.subsidy.errors import Rejected
from eldercare.platform.subsidy.models import (
    ClaimIn,
    ClaimReceipt,
    ClaimsReceipt,
    ClaimView,
)
from eldercare.platform.subsidy.params import FILES, ExportLang, Format, Month, Region, file_response

router = APIRouter(prefix="/api/v1", tags=["subsidy"], responses=RESPONSES)

_CHINA = timezone(timedelta(hours=8))


async def _home(conn: AsyncConn, principal: Principal, institution_id: int, roles: frozenset[Role], what: str) -> str:
    """Check the role and the scope; the home's institution code."""
    require(principal, roles, what)
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_INSTITUTION)
    row = await (await conn.execute("SELECT code FROM institutions WHERE id = %s", (institution_id,))).fetchone()
    assert row is not None
    return str(row[0])


# ---------------------------------------------------------------------------------------------------------
# Programmes


@router.get("/subsidy/programmes")
async def list_programmes(
    conn: Conn, principal: CurrentPrincipal, region: Region = None, month: Month | None = None
) -> list[programmes.Programme]:
    """The programmes, their amounts per region and version, and which version is in force for the month."""
    area = check_region(principal, region) if principal.role is Role.REGULATOR else region
    if area is None and principal.institution_id is not None:
        row = await (
            await conn.execute("SELECT region_code FROM institutions WHERE id = %s", (principal.institution_id,))
        ).fetchone()
        area = str(row[0]) if row else ""
    when = month_query(month) if month else datetime.now(_CHINA).date().replace(day=1)
    return await programmes.list_programmes(conn, region=area or "", month=when)


@router.post("/subsidy/schedules", status_code=201)
async def add_schedule(body: programmes.ScheduleIn, conn: Conn, principal: CurrentPrincipal) -> programmes.Schedule:
    """New amounts for a programme in a region from a month on. Past months keep the amounts they had: a
    version may take effect only after the last month verified in its region (409 otherwise)."""
    require(principal, SUPERVISE, "set subsidy amounts")
    check_region(principal, body.region_code, field="body.region_code")
    try:
        effective = parse_month(body.effective_from)
    except ValueError as exc:
        raise invalid("body.effective_from", str(exc)) from exc
    async with atomic(conn):
        return await programmes.add_schedule(conn, principal=principal, body=body, effective_from=effective)


# ---------------------------------------------------------------------------------------------------------
# Claims


def _receipt(institution_id: int, stored: claims.Stored) -> ClaimReceipt:
    return ClaimReceipt(claim_id=stored.claim_id, institution_id=institution_id, month=f"{stored.month:%Y-%m}",
                        lines=stored.lines, replaced_claim_id=stored.replaced)  # fmt: skip


@router.post("/institutions/{institution_id}/subsidy/claims", status_code=201)
async def submit_claim(institution_id: PathId, body: ClaimIn, conn: Conn, principal: CurrentPrincipal) -> ClaimReceipt:
    """A month's claim as JSON. Any bad line answers 422 with each problem as ``lines[i].field``; nothing
    is stored then. A new claim for the month replaces the previous one."""
    code = await _home(conn, principal, institution_id, SUBMIT, "submit subsidy claims")
    try:
        month = parse_month(body.month)
    except ValueError as exc:
        raise invalid("body.month", str(exc)) from exc
    raw = [
        claims.RawLine(
            f"lines[{i}]",
            i + 1,
            {
                "person_code": line.person_code or "",
                "bed_code": line.bed_code or "",
                "claim_id": line.ref or "",
                "programme": line.programme,
                "days": "" if line.days is None else str(line.days),
                "amount": "" if line.amount is None else str(line.amount),
            },
        )
        for i, line in enumerate(body.lines)
    ]
    try:
        checked = claims.check(raw, month=month, units=await claims.programme_units(conn), home_code=code)
    except Rejected as exc:
        raise exc.problem() from exc
    async with atomic(conn):
        stored = await claims.store(
            conn, principal=principal, institution_id=institution_id, month=month, lines=checked, source="api"
        )
    return _receipt(institution_id, stored)


@router.post("/institutions/{institution_id}/subsidy/claims/upload", status_code=201)
async def upload_claim(
    *,
    institution_id: PathId,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GB18030) or XLSX; header row first")],
    conn: Conn,
    principal: CurrentPrincipal,
    month: Month | None = None,
) -> ClaimReceipt:
    """A month's claim as a file with the columns ``person_code, bed_code, programme, days, amount, month``.
    Every line or none: any bad line answers 422 with each problem as ``rows[N].column``."""
    code = await _home(conn, principal, institution_id, SUBMIT, "submit subsidy claims")
    data = await file.read(MAX_BYTES + 1)
    name = file.filename or ""
    try:
        raw = await asyncio.to_thread(claims.file_lines, data, filename=name)  # CPU work: off the event loop
        when = month_query(month) if month else claims.file_month(raw)
        checked = claims.check(raw, month=when, units=await claims.programme_units(conn), home_code=code)
    except Rejected as exc:
        raise exc.problem() from exc
    source = "xlsx" if name.lower().endswith(".xlsx") or data[:2] == b"PK" else "csv"
    async with atomic(conn):
        stored = await claims.store(
            conn, principal=principal, institution_id=institution_id, month=when, lines=checked, source=source,
            filename=name,
        )  # fmt: skip
    return _receipt(institution_id, stored)


@router.post("/subsidy/claims/upload", status_code=201)
async def upload_claims(
    *,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GB18030) or XLSX with an institution_code column")],
    conn: Conn,
    principal: CurrentPrincipal,
    month: Month | None = None,
) -> ClaimsReceipt:
    """A month's claims of several homes in one file (the simulators' claim file, or claims gathered on paper),
    split by ``institution_code``: one claim per home, all or none. Every home must be in the caller's region."""
    require(principal, SUPERVISE, "submit the claims of several homes")
    data = await file.read(MAX_BYTES + 1)
    name = file.filename or ""
    try:
        raw = await asyncio.to_thread(claims.file_lines, data, filename=name)  # CPU work: off the event loop
        when = month_query(month) if month else claims.file_month(raw)
        groups = claims.by_home(raw)
        query = sql.SQL("SELECT code, id FROM institutions WHERE code = ANY(%s) AND {scope}").format(
            scope=scope.institution_filter(principal, sql.SQL("id"))
        )
        homes = {str(c): int(i) for c, i in await (await conn.execute(query, (list(groups),))).fetchall()}
        unknown = [r for code, rows in groups.items() if code not in homes for r in rows]
        if unknown:  # a home outside the caller's scope is not found, as everywhere
            raise Problem(404, "institution not found", [
                FieldError(field=f"{r.where}.institution_code", reason="no such home in your region") for r in unknown
            ])  # fmt: skip
        checked = claims.check_homes(groups, homes=set(homes), month=when, units=await claims.programme_units(conn))
    except Rejected as exc:
        raise exc.problem() from exc
    source = "xlsx" if name.lower().endswith(".xlsx") or data[:2] == b"PK" else "csv"
    receipts = []
    async with atomic(conn):
        for code, good in sorted(checked.items()):
            stored = await claims.store(
                conn, principal=principal, institution_id=homes[code], month=when, lines=good, source=source,
                filename=name,
            )  # fmt: skip
            receipts.append(_receipt(homes[code], stored))
    return ClaimsReceipt(month=f"{when:%Y-%m}", claims=receipts)


@router.get("/institutions/{institution_id}/subsidy/claims")
async def get_claim(
    institution_id: PathId, month: Month, conn: Conn, principal: CurrentPrincipal, evidence: bool = True
) -> ClaimView:
    """The home's claim in force for the month: each line with its verdict, reasons, evidence and decision. The
    read is audited: the reasons and the evidence speak of hospital stays, deaths and capability."""
    await _home(conn, principal, institution_id, READ, "read subsidy claims")
    async with conn.transaction():
        view = await reports.claim_view(
            conn, reader=principal, institution_id=institution_id, month=month_query(month), evidence=evidence
        )
        await _audit_claim_read(conn, principal, view, evidence=evidence)
    return view


async def _audit_claim_read(
    conn: AsyncConn, principal: Principal, view: ClaimView, *, evidence: bool, export: Format | None = None
) -> None:
    if view.claim_id is None:
        return  # no claim: nothing about anyone was read
    people = sorted({line.person_code for line in view.lines if line.person_code})
    fields = ["verdicts", "reasons", *(["evidence"] if evidence else [])]
    how = {"export": export} if export else {"evidence": evidence}
    await audit.read_health(
        conn, principal=principal, object_type="subsidy_claim", object_id=view.claim_id,
        institution_id=view.institution_id,
        detail={"month": view.month, "lines": len(view.lines), "person_codes": people[:1000], "people": len(people),
                "fields": fields, **how},
    )  # fmt: skip


@router.get("/institutions/{institution_id}/subsidy/export", response_class=Response, responses=FILES)
async def export_claim(
    institution_id: PathId,
    month: Month,
    conn: Conn,
    principal: CurrentPrincipal,
    *,
    format: Format = "csv",  # noqa: A002
    lang: ExportLang = "en",
) -> Response:
    """The home's month line by line, as CSV or XLSX."""
    await _home(conn, principal, institution_id, READ, "read subsidy claims")
    when = month_query(month)
    async with conn.transaction():
        view = await reports.claim_view(conn, reader=principal, institution_id=institution_id, month=when)
        await _audit_claim_read(conn, principal, view, evidence=True, export=format)
    rows = reports.line_rows(view, lang)
    name = f"subsidy-{institution_id}-{when:%Y-%m}"
    return await file_response(name, f"{when:%Y-%m}", reports.headers(reports.LINE_COLUMNS, lang), rows, format)


router.include_router(supervise.router)
