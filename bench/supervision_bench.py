"""Supervision figures and the one-press inspection, timed through the API on a region of 200 homes.

Targets (issue 11): a region's figures for 200 homes over 30 days, p95 under 300 ms; a home's one-press
risk inspection under 1 s. Baselines from the same run and server: ``GET /healthz`` (the HTTP round trip)
and ``GET /api/v1/alarms?open=true`` of the same home (the live list staff look at).

    .venv/bin/python bench/supervision_bench.py [--homes 200] [--beds 100] [--days 30] [--runs 40]

Starts a throwaway stack, seeds the region in bulk (bench/supervision_world.py), serves the real app under
uvicorn in this process, and prints each figure with p50/p95/max.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.supervision_world import TZ, seed
from tests.conftest import free_stack_ports
from tests.registry.support import Server, login

from eldercare.platform.auth.service import hash_password
from eldercare.platform.config import SecuritySettings
from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack import service
from eldercare.platform.supervision import report_pdf

PASSWORD = "bench-password-1"


def timed(runs: int, call: Callable[[], httpx.Response], status: int = 200) -> list[float]:
    for _ in range(3):  # warm-up: plans, pool, caches
        assert call().status_code == status
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        reply = call()
        took.append(time.perf_counter() - t)
        assert reply.status_code == status, reply.text
    return took


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (f"{name:<48} n={len(values):<4} p50={statistics.median(values) * 1000:8.1f} ms"
            f"  p95={pct(values, 0.95) * 1000:8.1f} ms  max={max(values) * 1000:8.1f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--homes", type=int, default=200)
    parser.add_argument("--beds", type=int, default=100, help="beds per home")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="ec-bench-", dir="/tmp"))
    state.chmod(0o711)
    os.environ["ELDERCARE_CACHE_DIR"] = str(state / "cache")  # a cold font cache, measured
    info = service.up(state, free_stack_ports())
    try:
        migrate(info.database_url)
        with psycopg.connect(info.database_url, autocommit=True) as conn:
            for name, role, region in (("bench-city", "regulator", "4205"), ("bench-admin", "admin", None)):
                conn.execute(
                    "INSERT INTO users (username, password_hash, role, region_code) VALUES (%s, %s, %s, %s)",
                    (name, hash_password(PASSWORD), role, region),
                )
        end = (datetime.now(TZ) - timedelta(days=1)).date()
        t = time.perf_counter()
        homes = seed(info.database_url, homes=args.homes, beds=args.beds, days=args.days, end=end,
                     rng=random.Random(11))  # fmt: skip
        with psycopg.connect(info.database_url) as conn:
            sizes = {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
                for table in ("beds", "devices", "device_daily", "bed_daily", "alarms", "night_rounds", "bed_readings")
            }
        print(
            f"seeded in {time.perf_counter() - t:.0f} s: {args.homes} homes; "
            + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
        )
        key = SecuritySettings(_env_file=state / "eldercare.env").key_bytes()
        with Server(database_url=info.database_url, key=key, state_dir=state) as server:
            city = login(server.base, "bench-city", PASSWORD)
            admin = login(server.base, "bench-admin", PASSWORD)
            start = end - timedelta(days=args.days - 1)
            period = {"from": start.isoformat(), "to": end.isoformat()}
            home = homes[0]
            plain = httpx.Client(timeout=30)
            healthz = timed(args.runs, lambda: plain.get(f"{server.base}/healthz"))
            figures = timed(args.runs, lambda: city.get("/api/v1/supervision/figures", params=period))
            report = city.get("/api/v1/supervision/figures", params=period).json()
            attention = timed(args.runs, lambda: city.get("/api/v1/supervision/attention", params=period))
            open_alarms = timed(args.runs, lambda: admin.get("/api/v1/alarms", params={"open": "true", "limit": 200}))
            inspection = timed(args.runs, lambda: city.get(f"/api/v1/supervision/institutions/{home}/risk-inspection"))
            pdf_path = f"/api/v1/supervision/institutions/{home}/risk-inspection.pdf"
            t = time.perf_counter()
            assert city.get(pdf_path).status_code == 200  # the full font face; starts the one-off cut
            first_pdf = time.perf_counter() - t
            t = time.perf_counter()
            cut = report_pdf._cut_path(report_pdf.font_path())
            while not cut.is_file():  # the cut started by the first PDF, in the server's background thread
                assert time.perf_counter() - t < 300, "the font cut did not finish in 5 minutes"
                time.sleep(0.2)
            cut_s = time.perf_counter() - t
            pdf = timed(args.runs // 2, lambda: city.get(pdf_path))
            credit = timed(5, lambda: city.post("/api/v1/supervision/credit-scores", json=period), status=201)
        region = report["region"]
        print(f"period {period['from']} .. {period['to']}; region: {len(report['homes'])} homes,"
              f" {region['alarms']:,} alarms, online {region['device_online_rate']:.3f},"
              f" p90 ack {region['p90_s_to_acknowledge']:.0f} s, {region['beds']:,} beds")  # fmt: skip
        print(line("baseline: GET /healthz", healthz))
        print(line("baseline: GET /alarms?open=true (all homes)", open_alarms))
        print(line("region figures, 200 homes x 30 days", figures))
        print(line("attention ranking (same figures + flags)", attention))
        print(line("one-press inspection of a home (JSON)", inspection))
        print(
            f"{'one-press inspection PDF, first (full font face)':<48} {first_pdf * 1000:8.1f} ms;"
            f" one-off font cut {cut_s:.1f} s"
        )
        print(line("one-press inspection of a home (PDF, cut face)", pdf))
        print(line("credit scores computed for the region (201)", credit))
        p95 = pct(figures, 0.95)
        print(f"region figures p95 {p95 * 1000:.0f} ms (target < 300 ms: {'met' if p95 < 0.3 else 'NOT met'});"
              f" {p95 / pct(healthz, 0.95):.0f}x the HTTP round trip")  # fmt: skip
        worst = max(inspection)
        print(f"one-press inspection max {worst * 1000:.0f} ms, PDF max {max(pdf) * 1000:.0f} ms"
              f" (target < 1 s: {'met' if max(worst, *pdf) < 1 else 'NOT met'});"
              f" p95 {pct(inspection, 0.95) / pct(open_alarms, 0.95):.1f}x the open-alarm list")  # fmt: skip
        print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    finally:
        service.down(state)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
