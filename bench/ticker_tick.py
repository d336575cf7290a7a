"""What one tick of the alarm ticker costs the database on a region of 200 homes and 20,000 beds, rule by rule.

    .venv/bin/python bench/ticker_tick.py [--homes 200 --beds 100 --rounds 7]

Starts a throwaway stack, writes the region in bulk (``bench/ticker_world.py``: every bed sensor with a sealed reading
every 5 s, rule overrides at every level, open alarms, bed-exit watches, gateways), then times each job of
``platform/alarms/ticker.py`` and the whole tick, best of ``--rounds`` after a warm-up round. Each run is in a
transaction rolled back at its end, and between rounds the bench stores the readings ingest would have stored
meanwhile and moves the live times (gateways seen, open alarms, open watches) along, so that every round judges the
same quiet region: a tick that decides that nothing happened, which is what almost every tick does.

Baseline, same run, same data, the variants in a rotating order round by round: the ticker as it was before migration
0030, calling the plpgsql ``rule_params(rule, institution, resident)`` once a bed, a wristband, a gateway or an open
alarm (their text is kept below and put in the module's place for the baseline), in transactions with the server's
JIT settings; the same queries in the ticker's transactions now (``SET LOCAL jit = off``); today's queries, joining
``rule_params_all(rule)`` once a query, with JIT; and today's ticker. Printed per job: the database backend's CPU time
(``/proc/<backend>/schedstat``; ``pg_stat_statements`` is not loaded by the stack), the wall time, and this process's
CPU in the vitals job (opening sealed rates). Before timing, the bench checks that the old and new parameters agree
for every bed, wristband, gateway and open alarm of the region, and each job must do the same work in every variant.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ingest_support import throwaway_stack
from bench.ticker_world import World, advance, feed, seed

from eldercare.platform.alarms import ticker
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import micros_sql

# The queries as they were before migration 0030 (ticker.py at 4a07999): the baseline.
OLD: dict[str, str] = {
    "_VITALS_WATCHED": f"""
WITH bound AS MATERIALIZED (
    SELECT d.id AS device_id, d.institution_id, db.bed_id, r.id AS resident_id,
           r.heart_rate_min, r.heart_rate_max, r.resp_rate_min, r.resp_rate_max,
           rule_params('vitals', d.institution_id, r.id) AS p
    FROM devices d
    JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
    JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> now()
    JOIN residents r ON r.id = ba.resident_id
    WHERE d.kind = 'bed_sensor' AND d.retired_at IS NULL
), watched AS (
    SELECT b.*, now() - make_interval(secs => (b.p->>'sustain_s')::float) AS since,
           coalesce((b.p->>'min_readings')::int, 3) AS least
    FROM bound b WHERE b.p IS NOT NULL
)
SELECT b.device_id, b.institution_id, b.bed_id, b.resident_id, b.heart_rate_min, b.heart_rate_max, b.resp_rate_min,
       b.resp_rate_max, b.least, b.since, last.micros, last.vitals_enc
FROM watched b CROSS JOIN LATERAL (
    SELECT {micros_sql("br.time")} AS micros, br.vitals_enc FROM bed_readings br
    WHERE br.device_id = b.device_id AND br.time > b.since AND br.presence AND br.vitals_enc IS NOT NULL
    ORDER BY br.time DESC LIMIT 1) last
WHERE NOT EXISTS (
    SELECT 1 FROM alarms a WHERE a.device_id = b.device_id AND a.kind = 'vitals'
    AND a.state IN ('raised', 'acknowledged', 'attending'))
""",
    "_WANDER": """
WITH worn AS (
    SELECT d.id AS device_id, d.institution_id, r.id AS resident_id, i.lat AS home_lat, i.lon AS home_lon,
           rule_params('wander', d.institution_id, r.id) AS p
    FROM devices d
    JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
    JOIN residents r ON r.id = db.resident_id AND r.wander_risk
    JOIN institutions i ON i.id = d.institution_id AND i.lat IS NOT NULL
    WHERE d.kind = 'wristband'
)
SELECT w.device_id, w.institution_id, w.resident_id, l.time, l.position_enc, l.lat, l.lon, w.home_lat, w.home_lon,
       (w.p->>'radius_m')::float
FROM worn w CROSS JOIN LATERAL (
    SELECT time, position_enc, lat, lon FROM locations WHERE device_id = w.device_id
    AND time > now() - make_interval(secs => (w.p->>'fresh_s')::float) ORDER BY time DESC LIMIT 1) l
WHERE w.p IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM alarms a WHERE a.device_id = w.device_id AND a.kind = 'wander'
    AND a.state IN ('raised', 'acknowledged', 'attending'))
""",
    "_NO_PRESENCE": """
SELECT d.id, d.institution_id, db.bed_id, ba.resident_id
FROM devices d
JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> now()
CROSS JOIN LATERAL (SELECT rule_params('no_presence', d.institution_id, ba.resident_id) AS p) r
CROSS JOIN LATERAL (SELECT now() - make_interval(hours => (r.p->>'hours')::int) AS since) w
WHERE d.kind = 'bed_sensor' AND r.p IS NOT NULL
  AND lower(ba.during) < w.since
  AND EXISTS (SELECT 1 FROM bed_readings x WHERE x.device_id = d.id AND x.time > now() - interval '10 minutes')
  AND EXISTS (SELECT 1 FROM bed_readings x WHERE x.device_id = d.id
              AND x.time <= w.since AND x.time > w.since - interval '30 minutes')
  AND NOT EXISTS (SELECT 1 FROM hospital_stays h WHERE h.resident_id = ba.resident_id
                  AND h.during && tstzrange(w.since, now()))
  AND NOT EXISTS (SELECT 1 FROM bed_readings x WHERE x.device_id = d.id AND x.presence AND x.time > w.since)
  AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.device_id = d.id AND a.kind = 'no_presence'
                  AND a.state IN ('raised', 'acknowledged', 'attending'))
""",
    "_SILENT": """
SELECT g.id, g.institution_id, g.gateway_id, g.last_seen_at, g.last_status FROM gateways g
 WHERE g.revoked_at IS NULL AND g.last_seen_at IS NOT NULL
 AND rule_params('gateway_offline', g.institution_id, NULL) IS NOT NULL
 AND (g.last_status = 'death' OR g.last_seen_at < now() - make_interval(secs =>
 (rule_params('gateway_offline', g.institution_id, NULL)->>'silence_s')::float))
 AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.gateway_pk = g.id AND a.kind = 'gateway_offline'
 AND a.state IN ('raised', 'acknowledged', 'attending')) FOR UPDATE OF g SKIP LOCKED
""",
    "_BACK": """
SELECT a.id, a.state::text FROM alarms a JOIN gateways g ON g.id = a.gateway_pk
 WHERE a.kind = 'gateway_offline' AND a.state IN ('raised', 'acknowledged', 'attending')
 AND g.last_status <> 'death' AND g.last_seen_at > a.occurred_at
 AND g.last_seen_at >= now() - make_interval(secs =>
 (coalesce(rule_params('gateway_offline', g.institution_id, NULL)->>'silence_s', '60'))::float)
 FOR UPDATE OF a SKIP LOCKED
""",
    "_ESCALATIONS": """
WITH due AS (
    SELECT a.id, (r.p->>'tiers')::int AS tiers FROM alarms a
    CROSS JOIN LATERAL (SELECT rule_params('escalation', a.institution_id, a.resident_id) AS p) r
    WHERE a.held_by IS NULL AND r.p IS NOT NULL AND (
        (a.state = 'raised' AND a.escalation_level < (r.p->>'tiers')::int
         AND a.raised_at + (a.escalation_level + 1) * make_interval(secs => (r.p->>'ack_timeout_s')::float) <= now())
        OR (a.state = 'raised' AND a.priority <> 'technical' AND (r.p->>'tiers')::int > 0
            AND a.escalation_level >= (r.p->>'tiers')::int
            AND greatest(a.raised_at + a.escalation_level * make_interval(secs => (r.p->>'ack_timeout_s')::float),
                         a.escalated_at) + make_interval(secs => (r.p->>'ack_timeout_s')::float) <= now())
        OR (a.state = 'acknowledged' AND a.priority <> 'technical' AND (r.p->>'tiers')::int > 0
            AND greatest(a.acknowledged_at, a.escalated_at)
                + make_interval(secs => (r.p->>'attend_timeout_s')::float) <= now()))
    FOR UPDATE OF a SKIP LOCKED)
UPDATE alarms SET escalation_level = least(escalation_level + 1, due.tiers), escalated_at = clock_timestamp()
FROM due WHERE alarms.id = due.id
RETURNING alarms.id, alarms.state::text, alarms.escalation_level
""",
}
NEW: dict[str, str] = {name: getattr(ticker, name) for name in OLD}

# Every row a job computes parameters for, with the old and the new parameters side by side: they must agree.
_AGREE = """
WITH pairs AS (
    SELECT rule, d.institution_id, ba.resident_id FROM devices d
    JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
    JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> now(),
    unnest(ARRAY['vitals', 'no_presence', 'bed_exit_night']) rule
    UNION ALL
    SELECT 'wander', d.institution_id, db.resident_id FROM devices d JOIN device_bindings db ON db.device_id = d.id
    WHERE d.kind = 'wristband'
    UNION ALL
    SELECT 'gateway_offline', institution_id, NULL FROM gateways
    UNION ALL
    SELECT 'escalation', institution_id, resident_id FROM alarms WHERE state IN ('raised', 'acknowledged', 'attending')
), every AS MATERIALIZED (
    SELECT r.rule, f.* FROM unnest(ARRAY['vitals', 'no_presence', 'bed_exit_night', 'wander', 'gateway_offline',
                                         'escalation']) r (rule), rule_params_all(r.rule) f
), judged AS (
    SELECT rule_params(p.rule, p.institution_id, p.resident_id) AS old,
           CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END AS new
    FROM pairs p
    JOIN every home ON home.rule = p.rule AND home.institution_id = p.institution_id AND home.resident_id IS NULL
    LEFT JOIN every own ON own.rule = p.rule AND own.institution_id = p.institution_id
         AND own.resident_id = p.resident_id
)
SELECT count(*), count(*) FILTER (WHERE old IS DISTINCT FROM new), count(*) FILTER (WHERE old IS NULL) FROM judged
"""


@dataclass
class Timing:
    wall: float = float("inf")
    database: float = float("inf")
    here: float = float("inf")
    done: int = 0

    def keep(self, wall: float, database: float, here: float, done: int) -> None:
        if wall < self.wall:
            self.wall, self.database, self.here, self.done = wall, database, here, done


def backend_cpu(pid: int) -> float:
    """Seconds of CPU the database backend ``pid`` has run (the scheduler's count, in nanoseconds)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def timed(conn: AsyncConn, pid: int, work: Callable[[], Awaitable[object]]) -> tuple[float, float, float, int]:
    """One run of ``work`` in a transaction rolled back at its end: wall, database CPU, this process's CPU."""
    cpu0, here0, wall0 = backend_cpu(pid), time.process_time(), time.perf_counter()
    async with conn.transaction(force_rollback=True):
        result = await work()
    wall, here, cpu = time.perf_counter() - wall0, time.process_time() - here0, backend_cpu(pid) - cpu0
    done = sum(result.values()) if isinstance(result, dict) else result
    assert isinstance(done, int)
    return wall, cpu, here, done


@asynccontextmanager
async def jit_on(conn: AsyncConn) -> AsyncIterator[None]:
    """A job's transaction as it was before: with the server's JIT settings."""
    async with conn.transaction():
        yield


@dataclass(frozen=True)
class Variant:
    name: str
    queries: dict[str, str]
    transaction: Callable[[AsyncConn], AbstractAsyncContextManager[None]]


VARIANTS = (
    Variant("before: rule_params, JIT", OLD, jit_on),
    Variant("rule_params_all, JIT", NEW, jit_on),
    Variant("rule_params, no JIT", OLD, ticker._transaction),
    Variant("now: rule_params_all, no JIT", NEW, ticker._transaction),
)


def use(variant: Variant) -> None:
    for name, text in variant.queries.items():
        setattr(ticker, name, text)
    ticker._transaction = variant.transaction  # type: ignore[assignment]


async def measure(url: str, vault: Vault, world: World, rounds: int) -> dict[str, dict[str, Timing]]:
    """Each variant's best per job and for the whole tick, the variants in a rotating order round by round."""
    best = {v.name: {name: Timing() for name, _ in (*ticker.JOBS, ("whole tick", None))} for v in VARIANTS}
    rng = random.Random(17)
    with psycopg.connect(url, autocommit=True) as sync:
        moved = advance(sync, world.fed_until)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        pid = row[0]
        for n in range(rounds + 1):  # the first is a warm-up
            for variant in VARIANTS[n % len(VARIANTS) :] + VARIANTS[: n % len(VARIANTS)]:
                with psycopg.connect(url, autocommit=True) as sync:
                    feed(sync, vault, world, rng)
                    moved = advance(sync, moved)
                use(variant)
                for name, job in ticker.JOBS:
                    took = await timed(conn, pid, partial(job, conn, vault))
                    if n:
                        best[variant.name][name].keep(*took)
                took = await timed(conn, pid, lambda: ticker.tick(conn, vault=vault))
                if n:
                    best[variant.name]["whole tick"].keep(*took)
        use(VARIANTS[-1])
    return best


def report(best: dict[str, dict[str, Timing]], rounds: int) -> None:
    names = list(best)
    jobs = list(best[names[0]])
    for title, field in (("database CPU", "database"), ("wall", "wall")):

        def pick(t: Timing, field: str = field) -> float:
            return float(getattr(t, field))

        print(f"\n{title}, ms, best of {rounds} rounds (each run in a transaction rolled back):")
        print(f"{'job':12}" + "".join(f"{n:>31}" for n in names) + f"{'now/before':>12}")
        for job in jobs:
            row = [best[n][job] for n in names]
            assert len({t.done for t in row}) == 1, (job, [t.done for t in row])  # the same work done
            ratio = pick(row[-1]) / pick(row[0]) if pick(row[0]) else float("nan")
            print(f"{job:12}" + "".join(f"{pick(t) * 1e3:31.1f}" for t in row) + f"{ratio:11.2f}x")
    here = best[names[-1]]["vitals"].here
    print(f"\nthis process's CPU in the vitals job (opening sealed rates): {here * 1e3:.1f} ms")
    tick = [best[n]["whole tick"].database for n in names]
    print(
        f"a tick's database CPU: {tick[0] * 1e3:.0f} ms before, {tick[-1] * 1e3:.0f} ms now"
        f" ({tick[-1] / tick[0]:.2f}x); with JIT on, rule_params per row took {(tick[0] - tick[1]) * 1e3:.0f} ms of"
        f" it, with JIT off {(tick[2] - tick[3]) * 1e3:.0f} ms; every 5 s: {tick[0] / 5:.0%} of a core before,"
        f" {tick[-1] / 5:.0%} now"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=200)
    parser.add_argument("--beds", type=int, default=100, help="beds a home")
    parser.add_argument("--minutes", type=int, default=3, help="of readings every 5 s before the first tick")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with throwaway_stack() as info:
        vault = Vault(SecuritySettings(_env_file=info.state_dir / "eldercare.env").key_bytes())
        started = time.perf_counter()
        world = seed(info.database_url, vault, homes=args.homes, beds=args.beds, minutes=args.minutes,
                     rng=random.Random(3))  # fmt: skip
        print(f"region: {world.homes} homes, {world.beds:,} beds, {world.residents:,} residents,"
              f" {world.readings:,} bed readings, {world.fixes:,} wristband fixes, {world.alarms_open} open alarms,"
              f" {world.rule_rows} rule rows of homes and residents;"
              f" written in {time.perf_counter() - started:.1f} s")  # fmt: skip
        with psycopg.connect(info.database_url) as conn:
            row = conn.execute(_AGREE).fetchone()
        assert row is not None
        pairs, differ, disabled = row
        print(f"parameters: old and new agree on {pairs - differ:,} of {pairs:,} rows judged ({disabled:,} disabled)")
        if differ:
            return 1
        best = asyncio.run(measure(info.database_url, vault, world, args.rounds))
    report(best, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
