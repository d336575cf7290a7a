"""Facility map: nearest-10 and a district filter with free-bed counts, with 50,000 homes loaded.

Starts a throwaway stack, generates the homes (bench/map_world.py), then measures through the service
layer (the same SQL the API runs) and through HTTP (`eldercare serve`, cache off, then on). Baselines in
the same run: the same queries with the spatial index (nearest) or the region index (district) dropped
inside a transaction that is rolled back, so the planner has to scan.

    .venv/bin/python bench/map_bench.py [--homes 50000] [--queries 300] [--keep]

Targets: nearest-10 p95 < 20 ms; district filter with free-bed counts p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.map_world import generate
from tests.conftest import free_stack_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http

from eldercare.platform.db.migrate import migrate
from eldercare.platform.map import service
from eldercare.platform.map.geo import LonLat
from eldercare.platform.map.models import HomeFilter
from eldercare.platform.stack import service as stack_service

NEAREST_TARGET_MS = 20.0
DISTRICT_TARGET_MS = 50.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, ms: list[float]) -> str:
    return (
        f"{name:<58} n={len(ms):<4} p50={statistics.median(ms):8.2f} ms  p95={pct(ms, 0.95):8.2f} ms"
        f"  max={max(ms):8.2f} ms"
    )


async def timed(calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def points(homes: list[tuple[float, float]], rng: random.Random, n: int) -> list[LonLat]:
    """Where people look: 80 % within ~5 km of some home, 20 % anywhere in China's populated box."""
    found = []
    for _ in range(n):
        if rng.random() < 0.8:
            lon, lat = rng.choice(homes)
            found.append(LonLat(lon + rng.gauss(0, 0.05), lat + rng.gauss(0, 0.05)))
        else:
            found.append(LonLat(rng.uniform(98, 122), rng.uniform(21, 42)))
    return found


async def service_figures(url: str, *, queries: int, rng: random.Random) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        homes = [
            (float(a), float(b)) for a, b in await (await conn.execute("SELECT lon, lat FROM institutions")).fetchall()
        ]
        districts = [
            str(r[0])
            for r in await (
                await conn.execute("SELECT DISTINCT left(region_code, 6) FROM institutions ORDER BY 1")
            ).fetchall()
        ]
        near = points(homes, rng, queries)
        picked = [rng.choice(districts) for _ in range(queries)]
        nothing = HomeFilter()

        def nearest_call(p: LonLat, f: HomeFilter = nothing) -> Callable[[], Awaitable[Any]]:
            return lambda: service.homes(conn, filters=f, near=p, limit=10)

        def district_call(code: str) -> Callable[[], Awaitable[Any]]:
            return lambda: service.homes(conn, filters=HomeFilter(region=code), near=None, limit=500)

        await timed([nearest_call(p) for p in near[:20]])  # warm the caches
        figures["nearest-10 (GiST KNN on map_earth)"] = await timed([nearest_call(p) for p in near])
        with_free = HomeFilter(free_min=1, free_kind=None)
        figures["nearest-10 with >= 1 free bed"] = await timed([nearest_call(p, with_free) for p in near])
        figures["district filter with free-bed counts (region index)"] = await timed([district_call(c) for c in picked])
        sizes = [
            len((await service.homes(conn, filters=HomeFilter(region=c), near=None, limit=500)).rows)
            for c in picked[:50]
        ]
        print(
            f"  districts: {len(districts)}; homes per district in the sample:"
            f" median {statistics.median(sizes)}, max {max(sizes)}"
        )

        base_n = max(20, queries // 10)
        async with conn.transaction(force_rollback=True):
            await conn.execute("DROP INDEX institutions_earth")
            figures["BASELINE nearest-10 without the spatial index"] = await timed(
                [nearest_call(p) for p in near[:base_n]]
            )
        async with conn.transaction(force_rollback=True):
            await conn.execute("DROP INDEX institutions_region")
            figures["BASELINE district filter without the region index"] = await timed(
                [district_call(c) for c in picked[:base_n]]
            )
        plan = await (
            await conn.execute(
                "EXPLAIN (COSTS OFF) SELECT id FROM institutions i WHERE lat IS NOT NULL"
                " ORDER BY map_earth(lat, lon) <-> map_earth(30.7, 111.29) LIMIT 10"
            )
        ).fetchall()
        print("  nearest plan: " + " / ".join(str(r[0]).strip() for r in plan))
    return figures


def http_figures(
    base: str, *, queries: int, rng: random.Random, homes: list[tuple[float, float]], districts: list[str], tag: str
) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    near = points(homes, rng, queries)
    picked = [rng.choice(districts) for _ in range(queries)]
    with httpx.Client(base_url=base, timeout=30) as http:
        for p in near[:10]:
            http.get("/api/v1/map/nearest", params={"lat": p.lat, "lon": p.lon})
        ms = []
        for p in near:
            started = time.perf_counter()
            reply = http.get("/api/v1/map/nearest", params={"lat": p.lat, "lon": p.lon, "n": 10})
            ms.append((time.perf_counter() - started) * 1000)
            assert reply.status_code == 200, reply.text
        figures[f"HTTP nearest-10 ({tag})"] = ms
        ms = []
        for code in picked:
            started = time.perf_counter()
            reply = http.get("/api/v1/map/homes", params={"region": code})
            ms.append((time.perf_counter() - started) * 1000)
            assert reply.status_code == 200, reply.text
        figures[f"HTTP district filter with free-bed counts ({tag})"] = ms
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--homes", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(7)

    state = Path(tempfile.mkdtemp(prefix="ec-mapbench-", dir="/tmp"))
    state.chmod(0o711)
    info = stack_service.up(state, free_stack_ports())
    try:
        migrate(info.database_url)
        print(f"generating {args.homes} homes ...", flush=True)
        started = time.perf_counter()
        counts = generate(info.database_url, homes=args.homes)
        with psycopg.connect(info.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
            homes = [(float(a), float(b)) for a, b in conn.execute("SELECT lon, lat FROM institutions").fetchall()]
            districts = [
                str(r[0]) for r in conn.execute("SELECT DISTINCT left(region_code, 6) FROM institutions").fetchall()
            ]
            free = conn.execute(
                "SELECT count(*) FROM beds b WHERE b.room_id IS NOT NULL AND b.retired_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM bed_assignments a WHERE a.bed_id = b.id"
                " AND a.during && tstzrange(now(), NULL))"
            ).fetchone()
        print(
            f"loaded in {time.perf_counter() - started:.0f} s: {counts.homes} homes, {counts.beds} beds,"
            f" {counts.stays_now} current stays, {counts.stays_past} ended stays, {counts.sensors} bed sensors;"
            f" unassigned beds in service {free[0] if free else '?'}; database {size[0] if size else '?'}",
            flush=True,
        )
        print("\nservice layer (the API's SQL, one connection, sequential):", flush=True)
        figures = asyncio.run(service_figures(info.database_url, queries=args.queries, rng=rng))
        api_port = info.ports.api
        base = f"http://127.0.0.1:{api_port}"
        for tag, ttl in (("cache off", "0"), ("cache on, 30 s: the same requests again", "30")):
            env = stack_env(
                info, ELDERCARE_MAP_CACHE_TTL_S=ttl, ELDERCARE_MAP_RATE_PER_S="100000", ELDERCARE_MAP_BURST="100000"
            )
            with run_eldercare("serve", ["serve", "--port", str(api_port)], env):
                wait_http(f"{base}/healthz", 60)
                if ttl != "0":  # fill the cache with the very requests measured next
                    http_figures(
                        base, queries=args.queries, rng=random.Random(11), homes=homes, districts=districts, tag=tag
                    )
                figures.update(
                    http_figures(
                        base, queries=args.queries, rng=random.Random(11), homes=homes, districts=districts, tag=tag
                    )
                )
        print(f"\nload average during the run (1, 5, 15 min; 2 cores, shared): {os.getloadavg()}")
        for name, ms in figures.items():
            print(line(name, ms))
        near = pct(figures["nearest-10 (GiST KNN on map_earth)"], 0.95)
        near_base = pct(figures["BASELINE nearest-10 without the spatial index"], 0.95)
        dist = pct(figures["district filter with free-bed counts (region index)"], 0.95)
        dist_base = pct(figures["BASELINE district filter without the region index"], 0.95)
        print()
        print(
            f"nearest-10 p95 {near:.2f} ms (target < {NEAREST_TARGET_MS} ms:"
            f" {'met' if near < NEAREST_TARGET_MS else 'NOT met'});"
            f" {near_base / near:.0f}x faster than without the index"
        )
        print(
            f"district p95 {dist:.2f} ms (target < {DISTRICT_TARGET_MS} ms:"
            f" {'met' if dist < DISTRICT_TARGET_MS else 'NOT met'});"
            f" {dist_base / dist:.1f}x faster than without the region index"
        )
        return 0
    finally:
        stack_service.down(state)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
