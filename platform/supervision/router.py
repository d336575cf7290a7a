"""``/api/v1/supervision/...`` and the public inspection pages; one router for ``create_app`` to include."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Action, Obj, Principal, resolve
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.supervision import attention, credit, inspections, pages, report_pdf, risk, rounds
from eldercare.platform.supervision.access import (
    READ_FIGURES,
    RISK_INSPECTION,
    SUPERVISE,
    check_period,
    homes_in_scope,
    require,
)
from eldercare.platform.supervision.figures import FiguresReport, figures
from eldercare.platform.visits import service as visits
from eldercare.platform.visits.models import CoverageReport

supervision = APIRouter(prefix="/api/v1/supervision", tags=["supervision"], responses=RESPONSES)
public = APIRouter(tags=["public: inspections"], responses={422: RESPONSES[422]})

PathId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Text = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # no control characters but tab and newlines
Start = Annotated[date, Query(alias="from", description="first local day of the period (Asia/Shanghai)")]
End = Annotated[date, Query(alias="to", description="last local day of the period, included")]
Region = Annotated[str | None, Query(description="administrative division code; default: the regulator's own region")]


@supervision.get("/figures")
async def get_figures(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    start: Start,
    end: End,
    region: Region = None,
    institution_id: Annotated[int | None, Query(ge=1)] = None,
) -> FiguresReport:
    """The figures of each home in scope and of all of them together (``region``, institution_id 0)."""
    require(principal, READ_FIGURES, "read supervision figures")
    check_period(start, end)
    homes = await homes_in_scope(conn, principal=principal, region=region, institution_id=institution_id)
    return await figures(conn, homes=homes, start=start, end=end)


@supervision.get("/attention")
async def get_attention(
    conn: Conn, principal: CurrentPrincipal, start: Start, end: End, region: Region = None
) -> list[attention.HomeAttention]:
    """Homes that need attention, most urgent first, each with its reasons."""
    require(principal, READ_FIGURES, "read supervision figures")
    check_period(start, end)
    homes = await homes_in_scope(conn, principal=principal, region=region)
    report = await figures(conn, homes=homes, start=start, end=end)
    return attention.rank(report.homes, flagged=await credit.flagged_homes(conn, homes=homes))


@supervision.get("/visits")
async def get_visit_coverage(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    start: Start,
    end: End,
    region: Region = None,
    institution_id: Annotated[int | None, Query(ge=1)] = None,
) -> CoverageReport:
    """Visits to elders living alone: key subjects visited every month, general ones in the year (targets 100%),
    per home in scope and for all of them (``region``, institution_id 0). Counts only, nobody named."""
    require(principal, READ_FIGURES, "read supervision figures")
    check_period(start, end)
    homes = await homes_in_scope(conn, principal=principal, region=region, institution_id=institution_id)
    return await visits.coverage(conn, homes=homes, start=start, end=end)


class RoundIn(BaseModel):
    floor_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="none: a round of the whole home")
    done_at: datetime | None = Field(default=None, description="default: now")
    note: str = Field(default="", max_length=2000, pattern=Text)


@supervision.post("/rounds", status_code=201)
async def log_round(body: RoundIn, conn: Conn, principal: CurrentPrincipal) -> rounds.Round:
    """Staff log a round; it counts as a night round when done between 21:00 and 06:00 local time."""
    return await rounds.log_round(
        conn, principal=principal, floor_id=body.floor_id, done_at=body.done_at, note=body.note
    )


@supervision.get("/rounds")
async def list_rounds(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[rounds.Round]:
    require(principal, RISK_INSPECTION, "read night rounds")
    now = datetime.now(UTC)
    return await rounds.list_rounds(
        conn, principal=principal, since=since or now - timedelta(days=7), until=until or now, limit=limit
    )


class CreditIn(BaseModel):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    region: str | None = Field(default=None, pattern=r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$")
    institution_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


@supervision.post("/credit-scores", status_code=201)
async def compute_credit(body: CreditIn, conn: Conn, principal: CurrentPrincipal) -> list[credit.Score]:
    """Score every home in scope (or one) for the period; each computation is kept, the latest in force."""
    require(principal, SUPERVISE, "compute credit scores")
    check_period(body.start, body.end)
    homes = await homes_in_scope(conn, principal=principal, region=body.region, institution_id=body.institution_id)
    return await credit.compute(conn, homes=homes, start=body.start, end=body.end, computed_by=principal.user_id)


@supervision.get("/credit-scores")
async def list_credit(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    institution_id: Annotated[int | None, Query(ge=1)] = None,
    all_computations: Annotated[bool, Query(description="every computation, not only the one in force")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[credit.Score]:
    require(principal, READ_FIGURES, "read credit scores")
    return await credit.history(
        conn, principal=principal, institution_id=institution_id, limit=limit, latest_only=not all_computations
    )


@supervision.get("/credit-scores/{score_id}")
async def explain_credit(score_id: PathId, conn: Conn, principal: CurrentPrincipal) -> credit.Explained:
    """A score line by line: each term with its inputs, rule, weight, cap and deduction."""
    require(principal, READ_FIGURES, "read credit scores")
    return await credit.explain(conn, principal=principal, score_id=score_id)


@supervision.get("/flags")
async def list_flags(conn: Conn, principal: CurrentPrincipal) -> list[credit.Flag]:
    """Open flags: homes whose subsidy claims go to a person before payment."""
    require(principal, READ_FIGURES, "read flags")
    return await credit.open_flags(conn, principal=principal)


class DrawIn(BaseModel):
    region: str = Field(pattern=r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$", description="administrative division code")
    homes: int = Field(ge=1, le=1000, description="k: homes to draw")
    inspectors: int = Field(ge=1, le=1000, description="m: inspectors to draw")
    team_size: int = Field(default=2, ge=1, le=10)
    seed: str | None = Field(
        default=None,
        min_length=8,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="a public value; default: 128 random bits",
    )
    kinds: list[inspections.Kind] = Field(default=["residential_home"], min_length=1)
    purpose: str = Field(default="", max_length=500, pattern=Text)


@supervision.post("/inspections/draws", status_code=201)
async def create_draw(body: DrawIn, conn: Conn, principal: CurrentPrincipal) -> inspections.PublicDraw:
    """Draw k homes and m inspectors of a region from the seed; published at once, kept for ever."""
    return await inspections.create_draw(
        conn,
        principal=principal,
        region=body.region,
        homes=body.homes,
        inspectors=body.inspectors,
        team_size=body.team_size,
        seed=body.seed,
        kinds=body.kinds,
        purpose=body.purpose,
    )


class ResultIn(BaseModel):
    outcome: inspections.Outcome
    summary: str = Field(min_length=1, max_length=4000, pattern=Text, description="public: no personal data")
    inspected_at: datetime


@supervision.post("/inspections/{inspection_id}/result")
async def record_result(
    inspection_id: PathId, body: ResultIn, conn: Conn, principal: CurrentPrincipal
) -> inspections.PublicInspection:
    return await inspections.record_result(
        conn,
        principal=principal,
        inspection_id=inspection_id,
        outcome=body.outcome,
        summary=body.summary,
        inspected_at=body.inspected_at,
    )


async def _home(conn: Conn, principal: CurrentPrincipal, institution_id: int) -> int:
    require(principal, RISK_INSPECTION, "run a risk inspection")
    return await resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_INSTITUTION)


async def _inspected(conn: AsyncConn, principal: Principal, institution_id: int, shown_as: str) -> risk.RiskReport:
    """The inspection, its read audited: it names residents with their capability and fall risk."""
    home = await _home(conn, principal, institution_id)
    async with conn.transaction():
        report = await risk.inspect(conn, institution_id=home)
        await audit.read_health(
            conn, principal=principal, object_type="risk_inspection", object_id=None, institution_id=home,
            detail={"as": shown_as, "residents_read": report.residents, "person_codes": report.named[:1000],
                    "named": len(report.named), "fields": ["person_code", "bed", "capability", "fall_risk"]},
        )  # fmt: skip
    return report


@supervision.get("/institutions/{institution_id}/risk-inspection")
async def risk_inspection(institution_id: PathId, conn: Conn, principal: CurrentPrincipal) -> risk.RiskReport:
    """One-press risk inspection (一键巡检) of a home, now. The read is audited."""
    return await _inspected(conn, principal, institution_id, "json")


_PDF: dict[int | str, dict[str, object]] = {
    200: {
        "description": "the report as a PDF (A4, Chinese and English)",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@supervision.get("/institutions/{institution_id}/risk-inspection.pdf", response_class=Response, responses=_PDF)
async def risk_inspection_pdf(institution_id: PathId, conn: Conn, principal: CurrentPrincipal) -> Response:
    report = await _inspected(conn, principal, institution_id, "pdf")
    stamp = report.generated_at.strftime("%Y%m%dT%H%MZ")
    document = await asyncio.to_thread(report_pdf.render, report)  # CPU work off the event loop
    return Response(
        document,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="risk-{report.institution_code}-{stamp}.pdf"'},
    )


_HTML: dict[int | str, dict[str, object]] = {
    200: {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
}


# response_class=Response, not HTMLResponse: FastAPI would otherwise document the JSON errors as text/html.
@supervision.get("/institutions/{institution_id}/risk-inspection.html", response_class=Response, responses=_HTML)
async def risk_inspection_page(institution_id: PathId, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    report = await _inspected(conn, principal, institution_id, "html")
    return HTMLResponse(pages.risk_page(report, "risk-inspection.pdf"))


PublicRegion = Annotated[str, Query(pattern=r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})?$")]


@public.get("/api/v1/public/inspections")
async def public_inspections(
    conn: Conn, region: PublicRegion = "", limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[inspections.PublicDraw]:
    """Every draw with its seed and candidate lists (so anyone can re-run it) and the results; no login."""
    return await inspections.public_draws(conn, region=region, limit=limit)


@public.get("/public/inspections", response_class=Response, responses=_HTML)
async def public_inspections_page(conn: Conn, region: PublicRegion = "") -> HTMLResponse:
    return HTMLResponse(pages.public_page(await inspections.public_draws(conn, region=region, limit=50)))


router = APIRouter()
router.include_router(supervision)
router.include_router(public)
