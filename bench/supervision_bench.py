"""Supervision figures and the one-press inspection, timed on a region of 200 homes, with same-run baselines.

Targets (issue 11): a region's figures for 200 homes over 30 days, p95 under 300 ms; a home's one-press
risk inspection under 1 s, its PDF included.

    .venv/bin/python bench/supervision_bench.py [--homes 200] [--beds 100] [--days 30] [--runs 40]

Starts a throwaway stack, seeds the region in bulk (bench/supervision_world.py), serves the real app under
uvicorn in this process, and prints each figure with p50/p95/max. Baselines from the same run:

- the figures as migration 0006 computed them, scanning and sorting every alarm of the period (installed
  in the throwaway database as ``bench_figures_scan``, from 0006's own text), against today's
  ``supervision_figures``, both called in SQL one after the other; the two must agree (percentiles to the
  millisecond, every other column exactly), or the run fails;
- ``GET /healthz`` (the HTTP round trip) and ``GET /api/v1/alarms?open=true`` (the live list staff use).

The inspection is timed alone and then "under load": while another process asks for the region's figures
without pause, as a regulator's dashboard would.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

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
MIGRATIONS = Path(__file__).resolve().parents[1] / "platform" / "db" / "migrations"
PERCENTILES = ("median_s_to_acknowledge", "p90_s_to_acknowledge", "median_s_to_attend", "p90_s_to_attend")


def timed(runs: int, call: Callable[[], Any], check: Callable[[Any], None] | None = None) -> list[float]:
    for _ in range(3):  # warm-up: plans, pool, caches
        call()
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        reply = call()
        took.append(time.perf_counter() - t)
        if check is not None:
            check(reply)
    return took


def ok(status: int = 200) -> Callable[[httpx.Response], None]:
    def check(reply: httpx.Response) -> None:
        assert reply.status_code == status, reply.text

    return check


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (f"{name:<52} n={len(values):<4} p50={statistics.median(values) * 1000:8.1f} ms"
            f"  p95={pct(values, 0.95) * 1000:8.1f} ms  max={max(values) * 1000:8.1f} ms")  # fmt: skip


def install_scan_baseline(url: str) -> None:
    """0006's supervision_figures, unchanged but for its name: the scan of every alarm of the period."""
    text = (MIGRATIONS / "0006_supervision.sql").read_text(encoding="utf-8")
    found = re.search(r"CREATE FUNCTION supervision_figures\(.*?\n\$fn\$;", text, re.S)
    assert found is not None, "0006's supervision_figures not found"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(found.group(0).replace("supervision_figures(", "bench_figures_scan(", 1))


def compare(url: str, homes: list[int], start: object, end: object, runs: int) -> tuple[list[float], list[float]]:
    """Both functions, interleaved; asserts they agree. Returns (scan, today's) timings."""
    scan: list[float] = []
    today: list[float] = []
    with psycopg.connect(url) as conn:
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for n in range(runs + 2):
            for name, took in (("bench_figures_scan", scan), ("supervision_figures", today)):
                t = time.perf_counter()
                cur = conn.execute(f"SELECT * FROM {name}(%s, %s, %s)", (homes, start, end))
                rows[name] = cur.fetchall()
                if n >= 2:  # two warm-ups
                    took.append(time.perf_counter() - t)
            conn.rollback()
        columns = [d.name for d in cur.description or []]
    old, new = rows["bench_figures_scan"], rows["supervision_figures"]
    assert len(old) == len(new) == len(homes) + 1
    for a, b in zip(old, new, strict=True):
        for column, x, y in zip(columns, a, b, strict=True):
            if column in PERCENTILES and x is not None and y is not None:
                assert abs(x - y) <= 0.0005 + 1e-9, (column, a[0], x, y)
            elif isinstance(x, float) and isinstance(y, float):
                assert abs(x - y) <= 1e-9 * max(1.0, abs(x)), (column, a[0], x, y)
            else:
                assert x == y, (column, a[0], x, y)
    return scan, today


def hammer(base: str, token: str, params: dict[str, str], stop: Event) -> None:
    """Ask for the region's figures without pause until ``stop`` is set (another process: load)."""
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            client.get("/api/v1/supervision/figures", params=params)


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
        start = end - timedelta(days=args.days - 1)
        t = time.perf_counter()
        homes = seed(info.database_url, homes=args.homes, beds=args.beds, days=args.days, end=end,
                     rng=random.Random(11))  # fmt: skip
        with psycopg.connect(info.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # what autovacuum does to settled data; both variants profit
            sizes = {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
                for table in ("beds", "devices", "device_daily", "bed_daily", "alarms", "night_rounds", "bed_readings")
            }
        print(
            f"seeded in {time.perf_counter() - t:.0f} s: {args.homes} homes; "
            + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
        )
        install_scan_baseline(info.database_url)
        scan_sql, figures_sql = compare(info.database_url, homes, start, end, args.runs)
        key = SecuritySettings(_env_file=state / "eldercare.env").key_bytes()
        with Server(database_url=info.database_url, key=key, state_dir=state) as server:
            city = login(server.base, "bench-city", PASSWORD)
            admin = login(server.base, "bench-admin", PASSWORD)
            period = {"from": start.isoformat(), "to": end.isoformat()}
            home = homes[0]
            plain = httpx.Client(timeout=30)
            healthz = timed(args.runs, lambda: plain.get(f"{server.base}/healthz"), ok())
            figures = timed(args.runs, lambda: city.get("/api/v1/supervision/figures", params=period), ok())
            report = city.get("/api/v1/supervision/figures", params=period).json()
            attention = timed(args.runs, lambda: city.get("/api/v1/supervision/attention", params=period), ok())
            open_alarms = timed(
                args.runs, lambda: admin.get("/api/v1/alarms", params={"open": "true", "limit": 200}), ok()
            )
            base = f"/api/v1/supervision/institutions/{home}/risk-inspection"
            t = time.perf_counter()
            assert city.get(base + ".pdf").status_code == 200  # cold: no cut yet, the full face; starts the cut
            first_pdf = time.perf_counter() - t
            t = time.perf_counter()
            cut = report_pdf._cut_path(report_pdf.font_path())
            while not cut.is_file():  # the cut started by the first PDF, in the server's background thread
                assert time.perf_counter() - t < 300, "the font cut did not finish in 5 minutes"
                time.sleep(0.2)
            cut_s = time.perf_counter() - t
            t = time.perf_counter()
            other = f"/api/v1/supervision/institutions/{homes[1]}/risk-inspection.pdf"
            assert city.get(other).status_code == 200  # another home: its own small face, cut from the cut
            first_pdf_cut = time.perf_counter() - t
            inspection = timed(args.runs, lambda: city.get(base), ok())
            page = timed(args.runs, lambda: city.get(base + ".html"), ok())
            pdf = timed(args.runs, lambda: city.get(base + ".pdf"), ok())
            stop = multiprocessing.Event()
            load = multiprocessing.Process(target=hammer, args=(server.base, city.token, period, stop), daemon=True)
            load.start()
            time.sleep(1)
            try:
                inspection_load = timed(args.runs, lambda: city.get(base), ok())
                pdf_load = timed(args.runs, lambda: city.get(base + ".pdf"), ok())
            finally:
                stop.set()
                load.join(timeout=60)
            credit = timed(5, lambda: city.post("/api/v1/supervision/credit-scores", json=period), ok(201))
        region = report["region"]
        print(f"period {period['from']} .. {period['to']}; region: {len(report['homes'])} homes,"
              f" {region['alarms']:,} alarms, online {region['device_online_rate']:.3f},"
              f" p90 ack {region['p90_s_to_acknowledge']:.3f} s, {region['beds']:,} beds")  # fmt: skip
        print(line("baseline: GET /healthz", healthz))
        print(line("baseline: GET /alarms?open=true (all homes)", open_alarms))
        print(line("baseline: 0006's figures in SQL (scan of the alarms)", scan_sql))
        print(line("region figures in SQL (supervision_figures)", figures_sql))
        print(line("region figures, 200 homes x 30 days (HTTP)", figures))
        print(line("attention ranking (same figures + flags)", attention))
        print(line("one-press inspection of a home (JSON)", inspection))
        print(line("one-press inspection of a home (HTML page)", page))
        print(f"{'one-press inspection PDF, first ever (full face)':<52} {first_pdf * 1000:8.1f} ms;"
              f" one-off GB 2312 cut {cut_s:.1f} s in the background")  # fmt: skip
        print(f"{'one-press inspection PDF, first of another home':<52} {first_pdf_cut * 1000:8.1f} ms")
        print(line("one-press inspection of a home (PDF)", pdf))
        print(line("inspection (JSON) while figures are asked nonstop", inspection_load))
        print(line("inspection (PDF) while figures are asked nonstop", pdf_load))
        print(line("credit scores computed for the region (201)", credit))
        p95, sql_p95, scan_p95 = pct(figures, 0.95), pct(figures_sql, 0.95), pct(scan_sql, 0.95)
        verdict = "met" if p95 < 0.3 else "NOT met"
        print(f"region figures p95 {p95 * 1000:.0f} ms over HTTP (target < 300 ms: {verdict}); in SQL p95"
              f" {sql_p95 * 1000:.0f} ms against the scan's {scan_p95 * 1000:.0f} ms: {scan_p95 / sql_p95:.1f}x faster;"
              " the figures agree")  # fmt: skip
        timings = {"JSON": inspection, "HTML": page, "PDF": pdf}
        loaded = {"JSON": inspection_load, "PDF": pdf_load}
        worst = max(pct(v, 0.95) for v in [*timings.values(), *loaded.values()])
        alone = ", ".join(f"{k} {pct(v, 0.95) * 1000:.0f} ms" for k, v in timings.items())
        busy = ", ".join(f"{k} {pct(v, 0.95) * 1000:.0f} ms" for k, v in loaded.items())
        verdict = "met" if worst < 1 else "NOT met"
        print(f"one-press inspection p95: {alone}; under load {busy} (target < 1 s: {verdict})")
        print(f"load average {os.getloadavg()[0]:.1f}; measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    finally:
        service.down(state)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
