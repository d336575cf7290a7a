"""The phases of ``bench/ingest_throughput.py``: a load run against a consumer, sampled while it runs."""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from bench.ingest_support import (
    TICK,
    Process,
    broker_pid,
    cpu_ticks,
    env_for,
    load_args,
    machine_busy_ticks,
    parse_report,
    postgres_ticks,
    run_and_measure,
    scrape,
    start,
    total,
)

from eldercare.platform.stack.model import StackInfo

STORED = "eldercare_ingest_stored_total"


def _interpolate(series: list[tuple[float, float]], at: float) -> float:
    for (t0, v0), (t1, v1) in itertools.pairwise(series):
        if t0 <= at <= t1:
            return v0 + (v1 - v0) * (at - t0) / (t1 - t0) if t1 > t0 else v1
    return series[-1][1] if at > series[-1][0] else series[0][1]


class Counters:
    """What to sample during a phase: stored count, and CPU ticks per process."""

    def __init__(self, stack: StackInfo, ingest: list[Process], ports: list[int], naive: Process | None) -> None:
        self.stack, self.ingest, self.ports, self.naive = stack, ingest, ports, naive

    def stored(self, kind: str = "reading") -> float:
        if self.naive is not None:
            lines = [line for line in self.naive.lines if line.startswith("stored ")]
            return float(lines[-1].split()[1]) if lines else 0.0
        return float(sum(total(scrape(port), STORED, kind=kind) for port in self.ports))

    def queued(self) -> float:
        return sum(total(scrape(port), "eldercare_ingest_queue_messages") for port in self.ports)

    def cpu(self) -> dict[str, int]:
        consumer = [self.naive] if self.naive is not None else self.ingest
        return {
            "ingest": sum(p.ticks() for p in consumer),
            "broker": cpu_ticks(broker_pid(self.stack)),
            "database": postgres_ticks(self.stack),
        }


def phase(
    name: str, counters: Counters, world: Path, *, rate: float, duration: float, readings: int, drain: bool
) -> dict[str, Any]:
    env = env_for(counters.stack)
    cpu0, busy0, stored0 = counters.cpu(), machine_busy_ticks(), counters.stored()
    series: list[tuple[float, float]] = [(time.time(), stored0)]
    outcome: dict[str, Any] = {}

    def generate() -> None:
        outcome["out"], outcome["cpu"] = run_and_measure(
            load_args(world, rate=rate, duration=duration, readings=readings), env
        )

    generator = threading.Thread(target=generate)
    generator.start()
    while generator.is_alive():
        generator.join(1.0)
        series.append((time.time(), counters.stored()))
    report = parse_report(outcome["out"])
    sent = report["readings"]
    drained_at = math.nan
    if drain:
        deadline = time.time() + 180
        while time.time() < deadline:
            now, stored = time.time(), counters.stored()
            series.append((now, stored))
            if stored - stored0 >= sent and counters.queued() == 0:
                drained_at = now
                break
            time.sleep(0.2)
    cpu1, busy1 = counters.cpu(), machine_busy_ticks()
    first, last = report["first_sent_ms"] / 1000, report["last_sent_ms"] / 1000
    window = max(last - first, 1e-9)
    in_window = _interpolate(series, last) - _interpolate(series, first)
    stored_all = series[-1][1] - stored0
    ticks = {k: cpu1[k] - cpu0[k] for k in cpu1}
    cores_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1) * (os.cpu_count() or 1)
    ours = (sum(ticks.values()) / TICK + outcome["cpu"]) / max(series[-1][0] - series[0][0], 1e-9)
    per_100k = {k: v / TICK / max(stored_all, 1) * 100_000 for k, v in ticks.items()}
    per_100k["generator"] = outcome["cpu"] / max(stored_all, 1) * 100_000
    result = {
        "phase": name,
        "offered_per_s": report["readings_per_s"],
        "stored_per_s": in_window / window,
        "sent": sent,
        "stored": stored_all,
        "drain_s": drained_at - last if drain else math.nan,
        "cpu_per_100k": per_100k,
        "cores_busy": cores_busy,
        "cores_ours": ours,
        "load": os.getloadavg()[0],
    }
    print(
        f"[{name}] offered {result['offered_per_s']:,.0f}/s, committed {result['stored_per_s']:,.0f}/s while sending;"
        f" {stored_all:,.0f} of {sent:,} stored, drained {result['drain_s']:.1f} s after the last send;"
        f" CPU s per 100k: " + ", ".join(f"{k} {v:.3f}" for k, v in per_100k.items())
        + f"; machine {cores_busy:.2f} cores busy, {ours:.2f} of them ours (load avg {result['load']:.2f})",
        flush=True,
    )  # fmt: skip
    return result


def alarm_latencies(stack: StackInfo, institution_id: int, stop: threading.Event, out: list[float]) -> None:
    """Publish -> alarm_inbox committed, per alarm: NOTIFY arrives at commit; published_at is the frame's sent."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("LISTEN alarm_inbox")
        last = 0
        while not stop.is_set():
            # the generator holds the connection: query only after it has returned the notification
            if not list(conn.notifies(timeout=0.5, stop_after=1)):
                continue
            received = time.time()
            rows = conn.execute(
                "SELECT id, extract(epoch FROM published_at)::float8 FROM alarm_inbox"
                " WHERE id > %s AND institution_id = %s ORDER BY id",
                (last, institution_id),
            ).fetchall()
            for row_id, published in rows:
                out.append(received - published)
                last = max(last, row_id)


def naive(stack: StackInfo, world: Path, name: str, *, rate: float, duration: float, readings: int) -> dict[str, Any]:
    script = str(Path(__file__).with_name("ingest_naive.py"))
    args = [sys.executable, script, str(world), str(stack.ports.mqtt)]
    consumer = start("naive", args, env_for(stack), wait_for="subscribed")
    try:
        counters = Counters(stack, [], [], consumer)
        return phase(name, counters, world, rate=rate, duration=duration, readings=readings, drain=False)
    finally:
        consumer.stop()
