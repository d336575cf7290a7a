"""A verification run: every claim line in force for a month in a region gets its verdict, in one transaction
of set-based SQL over the roll-ups (``evidence_sql``, ``verdict_sql``); then the findings for supervision, the
liveness list and the anomaly ranking of the region's homes.

Runs of overlapping regions are serialised by an advisory lock (also taken when new amounts are stored).
"""

from __future__ import annotations

import time as clock
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.subsidy import anomaly, evidence_sql, verdict_sql
from eldercare.platform.subsidy.rules import Rules, month_days


def params(*, region: str, month: date, rules: Rules, run_id: int = 0) -> dict[str, Any]:
    first, last, days = month_days(month)
    zone = ZoneInfo(rules.timezone)
    after = last + timedelta(days=1)
    hours = 24 - rules.night_start_hour + rules.night_end_hour
    slots = [
        (datetime.combine(first + timedelta(days=d), time(rules.night_start_hour), zone) + timedelta(hours=h), d)
        for d in range(days)
        for h in range(hours)
    ]
    return {
        "region": region,
        "month": first,
        "month_end": last,
        "dim": days,
        "tz": rules.timezone,
        "ns": rules.night_start_hour,
        "ne": rules.night_end_hour,
        "t_first": datetime.combine(first, time(rules.night_start_hour), zone),
        "t_last": datetime.combine(after, time(rules.night_end_hour), zone),
        "t_month0": datetime.combine(first, time(0), zone),
        "t_month1": datetime.combine(after, time(0), zone),
        "t_end": datetime.combine(after, time(0), zone),
        "min_hours": rules.min_observed_hours,
        "min_share": rules.min_occupied_share,
        "off_tol": rules.offline_tolerance_nights,
        "abs_tol": rules.absence_tolerance_nights,
        "leeway": rules.overclaim_leeway_days,
        "allow_abs": rules.allowance_absent_nights,
        "run": run_id,
        # the UTC start of every hour of every night, and the night it belongs to
        "slot_buckets": [at for at, _ in slots],
        "slot_nights": [first + timedelta(days=d) for _, d in slots],
    }


@dataclass
class RunSummary:
    run_id: int
    region_code: str
    month: date
    homes: int = 0
    lines: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    claimed_yuan: Decimal = Decimal(0)
    payable_yuan: Decimal = Decimal(0)
    withheld_yuan: Decimal = Decimal(0)
    receivers: int = 0
    follow_up: int = 0
    findings: int = 0
    ranked_homes: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "homes": self.homes,
            "lines": self.lines,
            "verdicts": self.verdicts,
            "claimed_yuan": str(self.claimed_yuan),
            "payable_yuan": str(self.payable_yuan),
            "withheld_yuan": str(self.withheld_yuan),
            "receivers": self.receivers,
            "follow_up": self.follow_up,
            "findings": self.findings,
            "ranked_homes": self.ranked_homes,
            "seconds": round(self.seconds, 3),
            "steps": {k: round(v, 3) for k, v in self.steps.items()},
        }


def _label(statement: str) -> str:
    words = statement.split()
    if words[:3] == ["CREATE", "TEMP", "TABLE"]:
        return words[3]
    if words[:2] == ["INSERT", "INTO"]:
        return "insert " + words[2]
    if words[:2] == ["DELETE", "FROM"]:
        return "delete " + words[2]
    return words[0].lower()


async def _steps(conn: AsyncConn, statements: tuple[str, ...], values: dict[str, Any], steps: dict[str, float]) -> None:
    for statement in statements:
        t = clock.perf_counter()
        await conn.execute(statement, values)
        label = _label(statement)
        steps[label] = steps.get(label, 0.0) + clock.perf_counter() - t


async def run(
    conn: AsyncConn,
    *,
    principal: Principal | None,
    region: str,
    month: date,
    rules: Rules | None = None,
    rank: bool = True,
) -> RunSummary:
    """Verify ``month`` for the homes of ``region`` (a code prefix); the run's summary."""
    rules = rules or Rules()
    started = clock.perf_counter()
    async with conn.transaction():
        # Measured (bench/subsidy_bench.py): JIT compilation cost about a second per statement here, and the
        # default work_mem sent the month's aggregations to disk.
        await conn.execute("SET LOCAL jit = off")
        await conn.execute("SET LOCAL work_mem = '256MB'")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('subsidy-amounts'))")
        row = await (
            await conn.execute(
                "INSERT INTO subsidy_runs (region_code, month, run_by, rules) VALUES (%s, %s, %s, %s) RETURNING id",
                (region, month, principal.user_id if principal else None, Jsonb(rules.as_json())),
            )
        ).fetchone()
        assert row is not None
        summary = RunSummary(run_id=int(row[0]), region_code=region, month=month)
        values = params(region=region, month=month, rules=rules, run_id=summary.run_id)
        steps = summary.steps
        await _steps(conn, evidence_sql.STEPS, values, steps)
        await _steps(conn, verdict_sql.INFO, values, steps)
        await _steps(conn, verdict_sql.VERDICTS, values, steps)
        await _steps(conn, verdict_sql.FINDINGS, values, steps)
        await _steps(conn, verdict_sql.LIVENESS, values, steps)
        await _summarise(conn, summary)
        if rank:
            t = clock.perf_counter()
            summary.ranked_homes = await anomaly.rank(conn, run_id=summary.run_id, month=month, values=values)
            steps["anomaly ranking"] = clock.perf_counter() - t
        summary.seconds = clock.perf_counter() - started
        await conn.execute(
            "UPDATE subsidy_runs SET finished_at = clock_timestamp(), summary = %s WHERE id = %s",
            (Jsonb(summary.as_json()), summary.run_id),
        )
        if principal is not None:
            await audit.record(
                conn,
                principal=principal,
                action="verify_subsidies",
                object_type="subsidy_run",
                object_id=summary.run_id,
                institution_id=None,
                detail={"region_code": region, "month": f"{month:%Y-%m}", "lines": summary.lines},
            )
    return summary


async def _summarise(conn: AsyncConn, summary: RunSummary) -> None:
    run = {"run": summary.run_id}
    rows = await (
        await conn.execute(
            "SELECT verdict, count(*), sum(claimed_yuan), sum(payable_yuan) FROM subsidy_verdicts"
            " WHERE run_id = %(run)s GROUP BY 1",
            run,
        )
    ).fetchall()
    for verdict, n, claimed, payable in rows:
        summary.verdicts[str(verdict)] = int(n)
        summary.lines += int(n)
        summary.claimed_yuan += claimed
        summary.payable_yuan += payable
    summary.withheld_yuan = summary.claimed_yuan - summary.payable_yuan
    homes = await (await conn.execute("SELECT count(*) FROM v_homes")).fetchone()
    live = await (
        await conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE follow_up) FROM subsidy_liveness WHERE run_id = %(run)s", run
        )
    ).fetchone()
    found = await (
        await conn.execute("SELECT count(*) FROM subsidy_findings WHERE (detail->>'run_id')::bigint = %(run)s", run)
    ).fetchone()
    summary.homes = int(homes[0]) if homes else 0
    summary.receivers, summary.follow_up = (int(live[0]), int(live[1])) if live else (0, 0)
    summary.findings = int(found[0]) if found else 0
