"""Subsidy verification of one month for a region of 200 homes and 20,000 residents, timed; with the
row-by-row Python version of the same night evidence on a sample of lines as the baseline (same run, same
database), and a check that both agree on every sampled night.

Target (issue 9): the month verified in under 60 s on this machine, in SQL over the roll-ups.

    .venv/bin/python bench/subsidy_bench.py [--homes 200] [--residents 20000] [--sample 400] [--runs 2]

Starts a throwaway stack, writes the world of tests/subsidy/world.py at that size (the registry, a bed
sensor per bed, ``bed_hourly`` for every hour of the month - 24 per bed and day, the real size of the table -
and the wristbands' ``device_daily``), the homes' claims, the death and hardship registers and the amounts,
then times :func:`eldercare.platform.subsidy.verify.run` (what ``POST /api/v1/subsidy/runs`` calls).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_stack_ports
from tests.subsidy import world_db
from tests.subsidy.world import SCHEDULES, TZ, Scenario, plan

from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack import service
from eldercare.platform.subsidy import claims, programmes, registers, verify
from eldercare.platform.subsidy.rules import Rules

MONTH = date(2026, 10, 1)


async def load(url: str, scenario: Scenario, written: world_db.Written, vault: Vault, principal: Principal) -> None:
    """Amounts, claims and registers through the same service functions the API calls."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for programme, rates in SCHEDULES.items():
            body = programmes.ScheduleIn.model_validate(
                {"programme": programme, "region_code": "42", "effective_from": "2026-01", "rates": rates}
            )
            async with conn.transaction():
                await programmes.add_schedule(conn, principal=principal, body=body, effective_from=date(2026, 1, 1))
        units = await claims.programme_units(conn)
        for index, home in enumerate(written.homes):
            lines = claims.check(
                claims.file_lines(scenario.claim_file(index), filename="c.csv"), month=MONTH, units=units
            )
            async with conn.transaction():
                await claims.store(
                    conn, principal=principal, institution_id=home, month=MONTH, lines=lines, source="csv"
                )
        for kind, data in (("deaths", scenario.death_register()), ("hardship", scenario.hardship_register())):
            entries = registers.check(kind, data, filename=f"{kind}.csv", vault=vault)  # type: ignore[arg-type]
            async with conn.transaction():
                await registers.store(conn, principal=principal, register=kind, region="42", filename="x.csv",  # type: ignore[arg-type]
                                      entries=entries)  # fmt: skip


async def run(url: str, principal: Principal) -> verify.RunSummary:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await verify.run(conn, principal=principal, region="4205", month=MONTH)


# ---------------------------------------------------------------------------------------------------------
# The baseline: the night evidence of one line at a time, in Python, from the same roll-ups.


def _night(d: int) -> tuple[datetime, datetime, datetime]:
    day = MONTH + timedelta(days=d - 1)
    start = datetime(day.year, day.month, day.day, 22, tzinfo=TZ)
    return start, start + timedelta(hours=8), start + timedelta(hours=4)


def _inside(span: tuple[datetime, datetime | None], at: datetime) -> bool:
    return span[0] <= at and (span[1] is None or at < span[1])


def baseline_line(conn: psycopg.Connection[Any], line: tuple[Any, ...], rules: Rules) -> dict[str, list[int]]:
    """Present, absent and no-evidence nights of one bed line, row by row."""
    resident, bed = line
    stays = conn.execute(
        "SELECT lower(during), upper(during) FROM bed_assignments WHERE resident_id = %s AND bed_id = %s",
        (resident, bed),
    ).fetchall()
    hospital = conn.execute(
        "SELECT lower(during), upper(during) FROM hospital_stays WHERE resident_id = %s", (resident,)
    ).fetchall()
    died = conn.execute(
        "SELECT least((SELECT min(d.died_at) FROM deaths d JOIN residents r2 ON r2.id = d.resident_id"
        "              WHERE r2.id_number_hash = r.id_number_hash),"
        "             (SELECT min((dr.died_on + 1)::timestamp AT TIME ZONE 'Asia/Shanghai') FROM death_register dr"
        "              WHERE dr.id_number_hash = r.id_number_hash)) FROM residents r WHERE r.id = %s",
        (resident,),
    ).fetchone()
    death = died[0] if died else None
    sensors = conn.execute(
        "SELECT b.device_id, lower(b.during), upper(b.during) FROM device_bindings b"
        " JOIN devices d ON d.id = b.device_id WHERE b.bed_id = %s AND d.kind = 'bed_sensor'",
        (bed,),
    ).fetchall()
    hours: dict[int, dict[datetime, tuple[int, int]]] = {}
    for device, _, _ in sensors:
        rows = conn.execute(
            "SELECT bucket, observed_minutes, occupied_minutes FROM bed_hourly WHERE device_id = %s"
            " AND bucket >= %s AND bucket < %s",
            (device, _night(1)[0], _night(31)[1]),
        ).fetchall()
        hours[device] = {b: (o, c) for b, o, c in rows}
    out: dict[str, list[int]] = {"present": [], "absent": [], "no_evidence": []}
    for d in range(1, 32):
        start, _, mid = _night(d)
        if not any(_inside(s, mid) for s in stays) or (death is not None and mid >= death):
            continue
        if any(_inside(h, mid) for h in hospital):
            continue
        best: tuple[int, float] | None = None  # (hours with data, share of observed minutes in bed)
        for device, low, high in sensors:
            if not _inside((low, high), mid):
                continue
            seen = [hours[device].get(start + timedelta(hours=k), (0, 0)) for k in range(8)]
            observed = sum(o for o, _ in seen)
            this = (sum(1 for o, _ in seen if o > 0), sum(c for _, c in seen) / observed if observed else 0.0)
            best = this if best is None else (max(best[0], this[0]), max(best[1], this[1]))
        if best is None or best[0] < rules.min_observed_hours:
            out["no_evidence"].append(d)
        elif best[1] >= rules.min_occupied_share:
            out["present"].append(d)
        else:
            out["absent"].append(d)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--homes", type=int, default=200)
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=400, help="lines verified row by row for the baseline")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="ec-bench-", dir="/tmp"))
    state.chmod(0o711)
    info = service.up(state, free_stack_ports())
    try:
        migrate(info.database_url)
        vault = Vault(SecuritySettings(_env_file=info.state_dir / "eldercare.env").key_bytes())
        occupancy = 0.96
        beds = math.ceil(args.residents / args.homes / occupancy)
        t = time.perf_counter()
        scenario = plan(seed=args.seed, homes=args.homes, beds=beds, month=MONTH, occupancy=occupancy,
                        bad_homes=(3, 77))  # fmt: skip
        with psycopg.connect(info.database_url, autocommit=True) as conn:
            written = world_db.write(conn, scenario, vault, day_hours=True)
            admin = conn.execute(
                "INSERT INTO users (username, password_hash, role) VALUES ('bench-admin', 'x', 'admin') RETURNING id"
            ).fetchone()
            assert admin is not None
            sizes = conn.execute(
                "SELECT (SELECT count(*) FROM residents), (SELECT count(*) FROM beds),"
                " (SELECT count(*) FROM bed_hourly), pg_size_pretty(pg_total_relation_size('bed_hourly'))"
            ).fetchone()
        principal = Principal(int(admin[0]), "bench-admin", Role.ADMIN, None, None)
        asyncio.run(load(info.database_url, scenario, written, vault, principal))
        assert sizes is not None
        print(f"world: {args.homes} homes, {sizes[1]} beds, {sizes[0]} residents, {len(scenario.claims)} claim lines;"
              f" bed_hourly {sizes[2]:,} rows ({sizes[3]}); written in {time.perf_counter() - t:.0f} s")  # fmt: skip

        summaries = []
        for n in range(args.runs):
            t = time.perf_counter()
            summary = asyncio.run(run(info.database_url, principal))
            took = time.perf_counter() - t
            summaries.append((took, summary))
            slowest = sorted(summary.steps.items(), key=lambda kv: -kv[1])[:6]
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in slowest)
            print(f"run {n + 1}: {took:.1f} s for {summary.lines} lines of {summary.homes} homes"
                  f" ({summary.verdicts}); slowest steps: {steps}")  # fmt: skip
        best = min(t for t, _ in summaries)

        with psycopg.connect(info.database_url) as conn:
            lines = conn.execute(
                "SELECT r.id, b.id, v.evidence->'nights' FROM subsidy_verdicts v"
                " JOIN subsidy_claim_lines l ON l.id = v.line_id JOIN subsidy_claims c ON c.id = l.claim_id"
                " JOIN residents r ON r.person_code = l.person_code AND r.institution_id = c.institution_id"
                " JOIN beds b ON b.code = l.bed_code AND b.institution_id = c.institution_id"
                " WHERE l.bed_code IS NOT NULL AND v.month = %s ORDER BY l.id",
                (MONTH,),
            ).fetchall()
            sample = random.Random(args.seed).sample(lines, min(args.sample, len(lines)))
            t = time.perf_counter()
            agree = 0
            for resident, bed, nights in sample:
                mine = baseline_line(conn, (resident, bed), Rules())
                same = all(mine[k] == nights[k] for k in ("present", "absent", "no_evidence"))
                agree += same
            per_line = (time.perf_counter() - t) / len(sample)
        total_lines = summaries[0][1].lines
        estimate = per_line * total_lines
        print(f"baseline, row by row in Python (night evidence only): {per_line * 1000:.1f} ms a line on {len(sample)}"
              f" lines; {estimate:.0f} s estimated for all {total_lines} lines")  # fmt: skip
        print(f"baseline and SQL agree on every night of {agree} of {len(sample)} sampled lines")
        verdict = "met" if best < 60 else "NOT met"
        print(f"verification of the month: {best:.1f} s (target < 60 s: {verdict});"
              f" {estimate / best:.1f}x faster than the row-by-row estimate")  # fmt: skip
        total = summaries[-1][1]
        print(f"claimed {total.claimed_yuan} yuan, payable {total.payable_yuan}, withheld {total.withheld_yuan};"
              f" follow-up {total.follow_up} of {total.receivers} receivers; findings {total.findings}")  # fmt: skip
        return 0 if agree == len(sample) else 1
    finally:
        service.down(state)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
