"""What was claimed, verified and withheld: a home's month line by line, totals per home, district and region,
and the same as CSV (UTF-8 with BOM, for Excel) or XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from psycopg.rows import dict_row

from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.subsidy import disclosure, reason_text
from eldercare.platform.subsidy.models import (
    ClaimView,
    Decision,
    DistrictTotals,
    HomeTotals,
    LineVerdict,
    Reason,
    RegionTotals,
    Totals,
)
from eldercare.platform.subsidy.reason_text import Lang, coded

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")

_TOTALS = """
count(*)::int AS lines,
count(*) FILTER (WHERE v.line_id IS NULL)::int AS unverified,
count(*) FILTER (WHERE coalesce(d.outcome, v.verdict) = 'verified')::int AS verified,
count(*) FILTER (WHERE coalesce(d.outcome, v.verdict) = 'partly_verified')::int AS partly_verified,
count(*) FILTER (WHERE coalesce(d.outcome, v.verdict) = 'rejected')::int AS rejected,
count(*) FILTER (WHERE v.verdict = 'manual_check')::int AS manual_check,
count(*) FILTER (WHERE v.verdict = 'manual_check' AND d.line_id IS NULL)::int AS pending,
coalesce(sum(coalesce(v.claimed_yuan, l.amount, 0)), 0) AS claimed_yuan,
coalesce(sum(coalesce(d.payable_yuan, v.payable_yuan, 0)), 0) AS payable_yuan,
coalesce(sum(v.supported_yuan) FILTER (WHERE v.verdict = 'manual_check' AND d.line_id IS NULL), 0) AS pending_yuan
"""

_FROM = """
FROM subsidy_claims c
JOIN subsidy_claim_lines l ON l.claim_id = c.id
JOIN institutions i ON i.id = c.institution_id
LEFT JOIN subsidy_verdicts v ON v.line_id = l.id
LEFT JOIN subsidy_decisions d ON d.line_id = l.id
"""


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "withheld_yuan": row["claimed_yuan"] - row["payable_yuan"]}


def empty_totals() -> Totals:
    zero = Decimal(0)
    return Totals(lines=0, unverified=0, verified=0, partly_verified=0, rejected=0, manual_check=0, pending=0,
                  claimed_yuan=zero, payable_yuan=zero, withheld_yuan=zero, pending_yuan=zero)  # fmt: skip


async def claim_view(
    conn: AsyncConn, *, reader: Principal, institution_id: int, month: date, evidence: bool = True
) -> ClaimView:
    """The home's claim in force for the month, each line with its verdict, reasons, evidence and decision, as
    ``reader`` may see it (``disclosure.py``: what other homes recorded is for supervisors)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, submitted_at, source FROM subsidy_claims WHERE institution_id = %s AND month = %s"
            " AND replaced_at IS NULL",
            (institution_id, month),
        )
        claim = await cur.fetchone()
        if claim is None:
            return ClaimView(institution_id=institution_id, month=f"{month:%Y-%m}", claim_id=None, submitted_at=None,
                             source=None, totals=empty_totals(), lines=[])  # fmt: skip
        await cur.execute(
            "SELECT l.id AS line_id, l.line_no, l.ref, l.person_code, l.bed_code, l.programme, l.days, l.amount,"
            " v.verdict, v.claimed_days, v.verified_days, v.claimed_yuan, v.supported_yuan,"
            " coalesce(d.payable_yuan, v.payable_yuan) AS payable_yuan, coalesce(v.reasons, '[]') AS reasons,"
            " CASE WHEN %(evidence)s THEN v.evidence END AS evidence, d.outcome, d.payable_yuan AS decided_yuan,"
            " d.note, d.decided_at, d.decided_by"
            " FROM subsidy_claim_lines l LEFT JOIN subsidy_verdicts v ON v.line_id = l.id"
            " LEFT JOIN subsidy_decisions d ON d.line_id = l.id WHERE l.claim_id = %(claim)s ORDER BY l.line_no",
            {"claim": claim["id"], "evidence": evidence},
        )
        lines = [_line(r) for r in await cur.fetchall()]
        await cur.execute(f"SELECT {_TOTALS} {_FROM} WHERE c.id = %s", (claim["id"],))
        totals = await cur.fetchone()
    assert totals is not None
    view = ClaimView(
        institution_id=institution_id,
        month=f"{month:%Y-%m}",
        claim_id=claim["id"],
        submitted_at=claim["submitted_at"],
        source=claim["source"],
        totals=Totals.model_validate(_totals(totals)),
        lines=lines,
    )
    regions: dict[str, str] = {}
    if reader.role is Role.REGULATOR and (named := disclosure.homes_named(view)):
        rows = await (
            await conn.execute("SELECT code, region_code FROM institutions WHERE code = ANY(%s)", (sorted(named),))
        ).fetchall()
        regions = {str(code): str(region) for code, region in rows}
    return disclosure.for_reader(view, reader, home_regions=regions)


def _line(row: dict[str, Any]) -> LineVerdict:
    outcome = row.pop("outcome")
    decided = {k: row.pop(k) for k in ("decided_yuan", "note", "decided_at", "decided_by")}
    decision = None
    if outcome is not None:
        decision = Decision(outcome=outcome, payable_yuan=decided["decided_yuan"], note=decided["note"],
                            decided_at=decided["decided_at"], decided_by=decided["decided_by"])  # fmt: skip
    reasons = [reason_text.with_chinese(Reason.model_validate(r)) for r in row.pop("reasons")]
    return LineVerdict(**row, reasons=reasons, decision=decision)


async def region_totals(conn: AsyncConn, *, homes: Sequence[int], month: date, region: str) -> RegionTotals:
    query = (
        f"SELECT i.id AS institution_id, i.code AS institution_code, i.name AS institution_name,"
        f" i.region_code, GROUPING(i.id) AS g_home, GROUPING(i.region_code) AS g_region, {_TOTALS} {_FROM}"
        " WHERE c.month = %s AND c.replaced_at IS NULL AND c.institution_id = ANY(%s)"
        " GROUP BY GROUPING SETS ((i.id, i.code, i.name, i.region_code), (i.region_code), ())"
        " ORDER BY GROUPING(i.region_code), i.region_code, GROUPING(i.id), i.code"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (month, list(homes)))
        rows = await cur.fetchall()
    out = RegionTotals(month=f"{month:%Y-%m}", region_code=region, homes=[], districts=[], total=empty_totals())
    for row in rows:
        g_home, g_region = row.pop("g_home"), row.pop("g_region")
        values = _totals(row)
        if not g_home:
            out.homes.append(HomeTotals.model_validate(values))
        elif not g_region:
            out.districts.append(DistrictTotals.model_validate(values))
        else:
            out.total = Totals.model_validate(values)
    return out


# ---------------------------------------------------------------------------------------------------------
# Files

REASON_SEPARATOR: dict[str, str] = {"en": "; ", "zh-CN": "；"}
LINE_COLUMNS = (
    "line_no", "ref", "person_code", "bed_code", "programme", "days", "amount", "verdict", "claimed_days",
    "verified_days", "claimed_yuan", "supported_yuan", "payable_yuan", "decision", "nights_present",
    "nights_absent", "nights_no_evidence", "nights_hospital", "nights_after_death", "reasons",
)  # fmt: skip
TOTAL_COLUMNS = (
    "level", "region_code", "institution_code", "institution_name", "lines", "unverified", "verified",
    "partly_verified", "rejected", "manual_check", "pending", "claimed_yuan", "payable_yuan", "withheld_yuan",
    "pending_yuan",
)  # fmt: skip


def _days(evidence: dict[str, Any] | None, kind: str) -> str:
    if not evidence:
        return ""
    return ",".join(str(d) for d in evidence.get("nights", {}).get(kind) or [])


def headers(columns: Sequence[str], lang: Lang) -> list[str]:
    """The columns' headers: their codes in English (stable, for programs), their names in Chinese (for people)."""
    return [coded("export_col", c, lang) for c in columns]


def line_rows(view: ClaimView, lang: Lang = "en") -> list[list[Any]]:
    return [
        [
            line.line_no, line.ref or "", line.person_code or "", line.bed_code or "",
            coded("programme", line.programme, lang), line.days, line.amount,
            coded("verdict", line.verdict or "unverified", lang), line.claimed_days, line.verified_days,
            line.claimed_yuan, line.supported_yuan, line.payable_yuan,
            coded("verdict", line.decision.outcome if line.decision else "", lang),
            _days(line.evidence, "present"), _days(line.evidence, "absent"), _days(line.evidence, "no_evidence"),
            _days(line.evidence, "hospital"), _days(line.evidence, "after_death"),
            REASON_SEPARATOR[lang].join(reason_text.render(r, lang) for r in line.reasons),
        ]
        for line in view.lines
    ]  # fmt: skip


def total_rows(report: RegionTotals, lang: Lang = "en") -> list[list[Any]]:
    def values(t: Totals) -> list[Any]:
        return [t.lines, t.unverified, t.verified, t.partly_verified, t.rejected, t.manual_check, t.pending,
                t.claimed_yuan, t.payable_yuan, t.withheld_yuan, t.pending_yuan]  # fmt: skip

    home, district, region = (coded("total_level", level, lang) for level in ("home", "district", "region"))
    rows: list[list[Any]] = [
        [home, h.region_code, h.institution_code, h.institution_name, *values(h)] for h in report.homes
    ]
    rows += [[district, d.region_code, "", "", *values(d)] for d in report.districts]
    rows.append([region, report.region_code, "", "", *values(report.total)])
    return rows


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value  # a spreadsheet shows it as text, never runs it as a formula
    return value


def csv_bytes(columns: Sequence[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def xlsx_bytes(title: str, columns: Sequence[str], rows: list[list[Any]]) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.append(list(columns))
    for row in rows:
        sheet.append([float(v) if isinstance(v, Decimal) else _cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
