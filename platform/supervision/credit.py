"""Credit scores: gather each home's inputs for a period, score them (:mod:`.formula`), keep every
computation with its terms, and keep the home's blacklist flag in step with its latest period."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from eldercare.platform.api.errors import NotFound
from eldercare.platform.auth.scope import Principal, institution_filter
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.supervision import formula
from eldercare.platform.supervision.figures import TIMEZONE, figures

FLAG = "subsidy_manual_check"


class TermOut(BaseModel):
    position: int
    term: str
    rule: str
    inputs: dict[str, Any]
    weight: float
    cap: float
    deduction: float


class Score(BaseModel):
    id: int
    institution_id: int
    institution_code: str
    period_start: date
    period_end: date
    formula_version: str
    base: float
    score: float
    threshold: float
    blacklisted: bool
    computed_at: datetime


class Explained(Score):
    terms: list[TermOut]
    explanation: list[str]


_FINDINGS = (
    "SELECT institution_id, severity, count(*) FROM subsidy_findings WHERE institution_id = ANY(%(homes)s)"
    " AND dismissed_at IS NULL AND found_at >= %(start)s::timestamp AT TIME ZONE %(tz)s"
    " AND found_at < (%(end)s::date + 1)::timestamp AT TIME ZONE %(tz)s GROUP BY 1, 2"
)
_OUTCOMES = (
    "SELECT institution_id, outcome, count(*) FROM inspections WHERE institution_id = ANY(%(homes)s)"
    " AND outcome IS NOT NULL AND inspected_at >= %(start)s::timestamp AT TIME ZONE %(tz)s"
    " AND inspected_at < (%(end)s::date + 1)::timestamp AT TIME ZONE %(tz)s GROUP BY 1, 2"
)


async def _counts(conn: AsyncConn, query: str, params: dict[str, Any]) -> dict[int, dict[str, int]]:
    """(home, label, count) rows as {home: {label: count}}."""
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for home, label, n in await (await conn.execute(query, params)).fetchall():
        found[int(home)][str(label)] = int(n)
    return found


async def gather(conn: AsyncConn, *, homes: list[int], start: date, end: date) -> dict[int, formula.Inputs]:
    report = await figures(conn, homes=homes, start=start, end=end)
    bounds = {"homes": homes, "start": start, "end": end, "tz": TIMEZONE}
    findings = await _counts(conn, _FINDINGS, bounds)
    outcomes = await _counts(conn, _OUTCOMES, bounds)
    return {
        f.institution_id: formula.Inputs(
            alarms_for_people=f.alarms_for_people,
            p90_s_to_acknowledge=f.p90_s_to_acknowledge,
            p90_s_to_attend=f.p90_s_to_attend,
            unacknowledged_over_5_min=f.unacknowledged_over_5_min,
            open_at_end=f.open_at_end,
            falls=f.falls,
            beds=f.beds,
            device_online_rate=f.device_online_rate,
            subsidy_findings=findings.get(f.institution_id, {}),
            inspections=outcomes.get(f.institution_id, {}),
        )
        for f in report.homes
    }


async def compute(conn: AsyncConn, *, homes: list[int], start: date, end: date, computed_by: int | None) -> list[Score]:
    """Score every home of ``homes`` for [start, end], store each with its terms, update the flags."""
    inputs = await gather(conn, homes=homes, start=start, end=end)
    ids: list[int] = []
    async with conn.transaction():
        for home, x in sorted(inputs.items()):
            result = formula.score(x)
            row = await (
                await conn.execute(
                    "INSERT INTO credit_scores (institution_id, period_start, period_end, formula_version, base,"
                    " score, threshold, blacklisted, computed_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " RETURNING id",
                    (
                        home,
                        start,
                        end,
                        result.version,
                        result.base,
                        result.score,
                        result.threshold,
                        result.blacklisted,
                        computed_by,
                    ),
                )
            ).fetchone()
            assert row is not None
            score_id = int(row[0])
            ids.append(score_id)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO credit_score_terms (score_id, position, term, inputs, rule, weight, cap, deduction)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (score_id, n, t.term, Jsonb(t.inputs), t.rule, round(t.weight, 3), t.cap, t.deduction)
                        for n, t in enumerate(result.terms, start=1)
                    ],
                )
            await _sync_flag(conn, home)
    return await _scores(conn, sql.SQL("s.id = ANY(%(ids)s)"), {"ids": ids}, limit=len(ids) or 1)


async def _sync_flag(conn: AsyncConn, institution_id: int) -> None:
    """The blacklist flag follows the home's latest period (latest computation of it)."""
    latest = await (
        await conn.execute(
            "SELECT id, score, threshold, blacklisted, period_start, period_end FROM credit_scores_latest"
            " WHERE institution_id = %s ORDER BY period_end DESC, computed_at DESC LIMIT 1",
            (institution_id,),
        )
    ).fetchone()
    if latest is None:
        return
    score_id, value, threshold, blacklisted, p0, p1 = latest
    if blacklisted:
        await conn.execute(
            "INSERT INTO institution_flags (institution_id, flag, source, credit_score_id, reason)"
            " VALUES (%s, %s, 'credit_score', %s, %s) ON CONFLICT (institution_id, flag) WHERE cleared_at IS NULL"
            " DO NOTHING",
            (institution_id, FLAG, score_id, f"credit score {value} below {threshold} for {p0}..{p1}"),
        )
    else:
        await conn.execute(
            "UPDATE institution_flags SET cleared_at = clock_timestamp(), cleared_reason = %s"
            " WHERE institution_id = %s AND flag = %s AND source = 'credit_score' AND cleared_at IS NULL",
            (f"credit score {value} at or above {threshold} for {p0}..{p1}", institution_id, FLAG),
        )


async def _scores(conn: AsyncConn, where: sql.Composable, params: dict[str, Any], *, limit: int) -> list[Score]:
    query = sql.SQL(
        "SELECT s.id, s.institution_id, i.code AS institution_code, s.period_start, s.period_end, s.formula_version,"
        " s.base::float8 AS base, s.score::float8 AS score, s.threshold::float8 AS threshold, s.blacklisted,"
        " s.computed_at FROM credit_scores s JOIN institutions i ON i.id = s.institution_id WHERE {where}"
        " ORDER BY s.period_end DESC, s.computed_at DESC, s.id DESC LIMIT {limit}"
    ).format(where=where, limit=sql.Literal(limit))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return [Score(**r) for r in await cur.fetchall()]


async def history(
    conn: AsyncConn, *, principal: Principal, institution_id: int | None, limit: int, latest_only: bool = True
) -> list[Score]:
    """Scores in the caller's scope, newest period first; by default the computation in force per period."""
    where = sql.SQL("{scope} AND (%(one)s::bigint IS NULL OR s.institution_id = %(one)s)").format(
        scope=institution_filter(principal, sql.SQL("s.institution_id"))
    )
    if latest_only:
        where = sql.SQL("{} AND s.id IN (SELECT id FROM credit_scores_latest)").format(where)
    return await _scores(conn, where, {"one": institution_id}, limit=limit)


async def explain(conn: AsyncConn, *, principal: Principal, score_id: int) -> Explained:
    where = sql.SQL("s.id = %(id)s AND {scope}").format(
        scope=institution_filter(principal, sql.SQL("s.institution_id"))
    )
    found = await _scores(conn, where, {"id": score_id}, limit=1)
    if not found:
        raise NotFound("credit score")
    head = found[0]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT position, term, rule, inputs, weight::float8 AS weight, cap::float8 AS cap,"
            " deduction::float8 AS deduction FROM credit_score_terms WHERE score_id = %s ORDER BY position",
            (score_id,),
        )
        lines = [TermOut(**r) for r in await cur.fetchall()]
    text = [f"base {head.base:g}"]
    text += [f"- {t.deduction:g}  {t.term}: {t.rule}; inputs {t.inputs}; cap {t.cap:g}" for t in lines]
    verdict = "blacklisted: subsidy claims checked by hand" if head.blacklisted else "not blacklisted"
    text.append(f"= {head.score:g} (threshold {head.threshold:g}: {verdict})")
    return Explained(**head.model_dump(), terms=lines, explanation=text)


class Flag(BaseModel):
    id: int
    institution_id: int
    institution_code: str
    flag: str
    source: str
    credit_score_id: int | None
    reason: str
    raised_at: datetime


async def open_flags(conn: AsyncConn, *, principal: Principal) -> list[Flag]:
    query = sql.SQL(
        "SELECT f.id, f.institution_id, i.code AS institution_code, f.flag, f.source, f.credit_score_id, f.reason,"
        " f.raised_at FROM institution_flags f JOIN institutions i ON i.id = f.institution_id"
        " WHERE f.cleared_at IS NULL AND {scope} ORDER BY f.raised_at DESC"
    ).format(scope=institution_filter(principal, sql.SQL("f.institution_id")))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query)
        return [Flag(**r) for r in await cur.fetchall()]


async def flagged_homes(conn: AsyncConn, *, homes: list[int]) -> set[int]:
    rows = await (
        await conn.execute(
            "SELECT institution_id FROM institution_flags WHERE cleared_at IS NULL AND institution_id = ANY(%s)",
            (homes,),
        )
    ).fetchall()
    return {int(r[0]) for r in rows}
