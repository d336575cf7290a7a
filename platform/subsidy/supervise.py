"""``/api/v1/subsidy/...``: verification runs, totals and reports, the lists of people (liveness, newly
eligible), enrolment, decisions, the anomaly ranking and the civil-affairs registers."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile
from psycopg import sql

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import NotFound, invalid
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal, check_region
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.imports.parse import MAX_BYTES
from eldercare.platform.registry.types import RESPONSES
from eldercare.platform.subsidy import people, registers, reports, verify
from eldercare.platform.subsidy.access import (
    READ,
    SUPERVISE,
    homes_in_scope,
    month_query,
    parse_month,
    require,
    run_region,
)
from eldercare.platform.subsidy.errors import Rejected
from eldercare.platform.subsidy.models import (
    AnomalyOut,
    DecisionIn,
    Enrolment,
    EnrolmentIn,
    Liveness,
    NewlyEligible,
    RegionTotals,
    RunOut,
)
from eldercare.platform.subsidy.params import FILES, ExportLang, Format, Month, Region, file_response

router = APIRouter(tags=["subsidy"], responses=RESPONSES)  # included by router.py, under /api/v1


@router.post("/subsidy/runs", status_code=201)
async def run_verification(month: Month, conn: Conn, principal: CurrentPrincipal, region: Region = None) -> RunOut:
    """Verify every claim line of the month in the region (default: the regulator's own): verdicts, findings for
    supervision, the liveness list and the anomaly ranking. Running again replaces them."""
    require(principal, SUPERVISE, "run subsidy verification")
    area = run_region(principal, region)
    when = month_query(month)
    summary = await verify.run(conn, principal=principal, region=area, month=when)
    return RunOut(month=f"{when:%Y-%m}", **{k: v for k, v in vars(summary).items() if k != "month"})


@router.get("/subsidy/totals")
async def totals(month: Month, conn: Conn, principal: CurrentPrincipal, region: Region = None) -> RegionTotals:
    """Claimed, paid and withheld per home, per district and for the region (a head: their home)."""
    require(principal, READ, "read subsidy totals")
    when = month_query(month)
    homes = await homes_in_scope(conn, principal=principal, region=region)
    area = check_region(principal, region) if principal.role in SUPERVISE else ""
    return await reports.region_totals(conn, homes=homes, month=when, region=area)


@router.get("/subsidy/export", response_class=Response, responses=FILES)
async def export_totals(
    month: Month,
    conn: Conn,
    principal: CurrentPrincipal,
    region: Region = None,
    *,
    format: Format = "csv",  # noqa: A002
    lang: ExportLang = "en",
) -> Response:
    """The totals per home, district and region as CSV or XLSX."""
    report = await totals(month, conn, principal, region)
    return await file_response(
        f"subsidy-{report.region_code or 'home'}-{report.month}", report.month,
        reports.headers(reports.TOTAL_COLUMNS, lang), reports.total_rows(report, lang), format,
    )  # fmt: skip


@router.get("/subsidy/liveness")
async def liveness(
    month: Month, conn: Conn, principal: CurrentPrincipal, region: Region = None, everyone: bool = False
) -> list[Liveness]:
    """无感认证: allowance receivers without liveness evidence in the month (``everyone``: all receivers, with
    their evidence) as of the month's last verification run; someone checks on them instead of a stop."""
    require(principal, READ, "read the liveness list")
    homes = await homes_in_scope(conn, principal=principal, region=region)
    async with atomic(conn):
        return await people.liveness(
            conn, principal=principal, homes=homes, month=month_query(month), everyone=everyone
        )


@router.get("/subsidy/newly-eligible")
async def newly_eligible(
    month: Month, conn: Conn, principal: CurrentPrincipal, region: Region = None
) -> list[NewlyEligible]:
    """政策找人: residents who became eligible for an allowance in the month (turned 80, capability assessed,
    entered the hardship register, arrived), not enrolled or claimed yet; ready to enrol."""
    require(principal, READ, "read the eligibility list")
    homes = await homes_in_scope(conn, principal=principal, region=region)
    async with atomic(conn):
        return await people.newly_eligible(conn, principal=principal, homes=homes, month=month_query(month))


@router.post("/subsidy/enrolments", status_code=201)
async def enrol(body: EnrolmentIn, conn: Conn, principal: CurrentPrincipal) -> Enrolment:
    """免申即享: enrol a resident in an allowance from a month, without an application."""
    require(principal, SUPERVISE, "enrol residents")
    await scope.resolve(conn, principal, Obj.RESIDENT, body.resident_id, Action.READ_RESIDENT)
    try:
        start = parse_month(body.from_month)
    except ValueError as exc:
        raise invalid("body.from_month", str(exc)) from exc
    async with atomic(conn):
        return await people.enrol(
            conn, principal=principal, resident_id=body.resident_id, programme=body.programme, from_month=start,
            reason=body.reason,
        )  # fmt: skip


@router.post("/subsidy/decisions", status_code=204)
async def decide(body: DecisionIn, conn: Conn, principal: CurrentPrincipal) -> None:
    """A person's decision on a line (a manual check): the outcome and what is paid, with a note."""
    require(principal, SUPERVISE, "decide subsidy lines")
    query = sql.SQL(
        "SELECT c.institution_id FROM subsidy_claim_lines l JOIN subsidy_claims c ON c.id = l.claim_id"
        " WHERE l.id = %s AND {scope}"
    ).format(scope=scope.institution_filter(principal, sql.SQL("c.institution_id")))
    row = await (await conn.execute(query, (body.line_id,))).fetchone()
    if row is None:
        raise NotFound("claim line")
    async with atomic(conn):
        await people.decide(conn, principal=principal, body=body, institution_id=int(row[0]))


@router.get("/subsidy/anomalies")
async def anomalies(month: Month, conn: Conn, principal: CurrentPrincipal, region: Region = None) -> list[AnomalyOut]:
    """Homes ranked by how unusual their month was (isolation forest), most unusual first, each score with the
    features that drove it; as of the month's last verification run covering the home."""
    require(principal, READ, "read the anomaly ranking")
    homes = await homes_in_scope(conn, principal=principal, region=region)
    rows = await (
        await conn.execute(
            "SELECT a.institution_id, i.code, i.name, a.run_id, a.score, a.rank, a.ranked, a.features, a.drivers"
            " FROM subsidy_anomalies a JOIN institutions i ON i.id = a.institution_id"
            " WHERE a.month = %s AND a.institution_id = ANY(%s) ORDER BY a.score DESC NULLS LAST, i.code",
            (month_query(month), homes),
        )
    ).fetchall()
    return [
        AnomalyOut(institution_id=r[0], institution_code=r[1], institution_name=r[2], run_id=r[3], score=r[4],
                   rank=r[5], ranked=r[6], features=r[7], drivers=r[8])
        for r in rows
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Civil-affairs registers


async def _register(
    kind: registers.Register,
    *,
    file: UploadFile,
    conn: AsyncConn,
    principal: Principal,
    vault: VaultDep,
    region: str | None,
) -> registers.ImportReport:
    require(principal, SUPERVISE, f"import the {kind} register")
    area = run_region(principal, region)
    data = await file.read(MAX_BYTES + 1)
    try:
        # parsing and hashing every ID number is CPU work on a hostile file: off the event loop
        entries = await asyncio.to_thread(registers.check, kind, data, filename=file.filename or "", vault=vault)
    except Rejected as exc:
        raise exc.problem() from exc
    async with atomic(conn):
        return await registers.store(
            conn, principal=principal, register=kind, region=area, filename=file.filename or "", entries=entries
        )


UploadFileField = Annotated[UploadFile, File(description="CSV (UTF-8 or GB18030) or XLSX; header row first")]


@router.post("/subsidy/death-register", status_code=201)
async def import_deaths(
    file: UploadFileField, conn: Conn, principal: CurrentPrincipal, vault: VaultDep, region: Region = None
) -> registers.ImportReport:
    """Deaths from the civil-affairs and funeral data (殡葬数据比对): ``id_number, died_on, source``. ID numbers
    are kept only as their keyed hash. All rows or none (422 with ``rows[N].column``)."""
    return await _register("deaths", file=file, conn=conn, principal=principal, vault=vault, region=region)


@router.post("/subsidy/hardship-register", status_code=201)
async def import_hardship(
    file: UploadFileField, conn: Conn, principal: CurrentPrincipal, vault: VaultDep, region: Region = None
) -> registers.ImportReport:
    """Elders on the hardship register (低保, 特困, 低收入): ``id_number, category, valid_from, valid_to``."""
    return await _register("hardship", file=file, conn=conn, principal=principal, vault=vault, region=region)
