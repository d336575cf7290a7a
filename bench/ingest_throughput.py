"""Ingest throughput, latency and CPU on one machine: broker, database, ingest and load generator together.

    .venv/bin/python bench/ingest_throughput.py [--duration 60] [--ingest-processes 1]

It starts a throwaway stack (TimescaleDB + Mosquitto, as `eldercare stack up` does) and two load homes of
50 gateways and 1,000 bed sensors each, then measures, each phase with `eldercare simulate load` in a
process of its own publishing over TLS as real gateways do (ingest reads the broker's local listener):

1. ours, frames of 50 readings at 2,200 frames/s (110,000 readings/s, 10% above the target) for --duration
   seconds;
2. ours, single-reading messages at 11,000 messages/s;
3. ours at half the load of 1 with alarm frames: p99 publish -> committed row (ingest's lag histogram,
   bucket bound) and publish -> alarm_inbox row committed (LISTEN here, every alarm);
4. ours over-loaded: the loads of 1 and 2 times --max-factor (3), for half the duration: what it commits
   per second is its capacity;
5. the naive consumer (bench/ingest_naive.py: one INSERT and one commit per message) on the same loads as
   4, for half the duration (it falls behind at once; what it stores per second is its capacity). The
   ratio ours / naive compares 4 and 5.

Rates are readings (or messages) committed per second between the first and the last publish. CPU is
counted from /proc for each process (ingest, broker, every postgres process of the stack's cluster,
generator) from the start of a phase until everything sent is stored. The machine's other load is shown,
since the two cores are shared.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ingest_support import (
    EXE,
    TICK,
    Process,
    broker_pid,
    cpu_ticks,
    env_for,
    histogram_quantile,
    load_args,
    machine_busy_ticks,
    make_world,
    parse_report,
    postgres_ticks,
    quantile,
    run_and_measure,
    scrape,
    start,
    throwaway_stack,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase (naive: half)")
    parser.add_argument("--ingest-processes", type=int, default=1)
    parser.add_argument("--max-factor", type=float, default=3.0, help="the over-load of ours vs naive phases")
    # 10% above the targets: a rate committed "while sending" can only reach what is offered
    parser.add_argument("--frames-rate", type=float, default=2200.0, help="phase 1: frames of 50 readings per s")
    parser.add_argument("--single-rate", type=float, default=11_000.0, help="phase 2: single-reading messages per s")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # so the stack is taken down
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    with throwaway_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        ours_world, naive_world = Path(tmp) / "ours.json", Path(tmp) / "naive.json"
        ours = make_world(stack, ours_world, gateways=50, beds=1000, seed=1)
        make_world(stack, naive_world, gateways=50, beds=1000, seed=2)
        env = env_for(stack, ELDERCARE_MQTT_PORT=str(stack.ports.mqtt), ELDERCARE_MQTT_TLS="false")
        ports = [50_000 + i for i in range(args.ingest_processes)]
        ingest = [
            start(f"ingest-{i}", [EXE, "ingest", "--name", f"bench{i}", "--metrics-port", str(port)], env,
                  wait_for="subscribed, storing")
            for i, port in enumerate(ports)
        ]  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        d, m = args.duration, args.max_factor
        try:
            counters = Counters(stack, ingest, ports, None)
            results["frames"] = phase("ours, 50-reading frames", counters, ours_world, rate=args.frames_rate,
                                      duration=d, readings=50, drain=True)  # fmt: skip
            results["single"] = phase("ours, single readings", counters, ours_world, rate=args.single_rate,
                                      duration=d, readings=1, drain=True)  # fmt: skip
            half = results["frames"]["stored_per_s"] / 2 / 50
            before = [scrape(p) for p in ports]
            latencies: list[float] = []
            stop = threading.Event()
            listener = threading.Thread(target=alarm_latencies, args=(stack, ours.institution_id, stop, latencies))
            listener.start()
            out, _ = run_and_measure(
                load_args(ours_world, rate=half, duration=d, readings=50, alarm_rate=20), env_for(stack)
            )
            time.sleep(3)
            stop.set()
            listener.join()
            after = [scrape(p) for p in ports]
            report = parse_report(out)
            lag = max(
                histogram_quantile(b, a, "eldercare_ingest_lag_seconds", "telemetry", 0.99)
                for b, a in zip(before, after, strict=True)
            )
            results["latency"] = {
                "readings_per_s": report["readings_per_s"],
                "telemetry_p99_le_s": lag,
                "alarm_p99_s": quantile(latencies, 0.99),
                "alarm_p50_s": quantile(latencies, 0.5),
                "alarm_max_s": max(latencies, default=math.nan),
                "alarms": len(latencies),
                "alarms_sent": report["alarm_frames"],
            }
            print(f"[latency at half load] {results['latency']}", flush=True)
            results["max_frames"] = phase(f"ours at {m:g}x, frames", counters, ours_world, rate=args.frames_rate * m,
                                          duration=d / 2, readings=50, drain=True)  # fmt: skip
            results["max_single"] = phase(f"ours at {m:g}x, single", counters, ours_world, rate=args.single_rate * m,
                                          duration=d / 2, readings=1, drain=True)  # fmt: skip
        finally:
            for process in ingest:
                process.stop()
        results["naive_frames"] = _naive(stack, naive_world, f"naive at {m:g}x, frames",
                                         rate=args.frames_rate * m, duration=d / 2, readings=50)  # fmt: skip
        results["naive_single"] = _naive(stack, naive_world, f"naive at {m:g}x, single",
                                         rate=args.single_rate * m, duration=d / 2, readings=1)  # fmt: skip
        with psycopg.connect(stack.database_url) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (device_id, time)) FROM bed_readings r JOIN devices d"
                " ON d.id = r.device_id WHERE d.institution_id = %s",
                (ours.institution_id,),
            ).fetchone()
        assert row is not None
        sent_ours = sum(results[k]["sent"] for k in ("frames", "single", "max_frames", "max_single"))
        sent_ours += report["readings"]
        _summary(results, sent_ours, row[0], row[1], args)
    return 0


def _naive(stack: StackInfo, world: Path, name: str, *, rate: float, duration: float, readings: int) -> dict[str, Any]:
    script = str(Path(__file__).with_name("ingest_naive.py"))
    args = [sys.executable, script, str(world), str(stack.ports.mqtt)]
    consumer = start("naive", args, env_for(stack), wait_for="subscribed")
    try:
        counters = Counters(stack, [], [], consumer)
        return phase(name, counters, world, rate=rate, duration=duration, readings=readings, drain=False)
    finally:
        consumer.stop()


def _summary(
    results: dict[str, dict[str, Any]], sent: int, stored: int, distinct: int, args: argparse.Namespace
) -> None:
    frames, single, latency = results["frames"], results["single"], results["latency"]
    naive_frames, naive_single = results["naive_frames"], results["naive_single"]
    print("\n=== summary ===")
    print(f"exactly once: {sent:,} readings sent to ours, {stored:,} stored, {distinct:,} distinct (device, time)")
    print(f"50-reading frames: {frames['stored_per_s']:,.0f} readings/s committed for {args.duration:.0f} s"
          f" (target >= 100,000)")  # fmt: skip
    print(f"single readings:   {single['stored_per_s']:,.0f} messages/s committed (target >= 10,000)")
    print(f"naive consumer:    {naive_frames['stored_per_s']:,.0f} readings/s on frames,"
          f" {naive_single['stored_per_s']:,.0f} messages/s on single readings")  # fmt: skip
    max_frames, max_single = results["max_frames"], results["max_single"]
    print(f"ours over-loaded:  {max_frames['stored_per_s']:,.0f} readings/s on frames offered at"
          f" {max_frames['offered_per_s']:,.0f}/s, {max_single['stored_per_s']:,.0f} messages/s on single"
          f" readings offered at {max_single['offered_per_s']:,.0f}/s")  # fmt: skip
    ratio_f = max_frames["stored_per_s"] / max(naive_frames["stored_per_s"], 1e-9)
    ratio_s = max_single["stored_per_s"] / max(naive_single["stored_per_s"], 1e-9)
    print(f"ours / naive, same over-load: {ratio_f:.1f}x on frames, {ratio_s:.1f}x on single readings (target >= 20x)")
    print(f"latency at half load ({latency['readings_per_s']:,.0f} readings/s): telemetry p99 <= "
          f"{latency['telemetry_p99_le_s']} s (target <= 1 s); alarm p99 {latency['alarm_p99_s'] * 1000:.0f} ms,"
          f" p50 {latency['alarm_p50_s'] * 1000:.0f} ms, max {latency['alarm_max_s'] * 1000:.0f} ms over"
          f" {latency['alarms']} of {latency['alarms_sent']} alarms (target <= 100 ms)")  # fmt: skip
    for key in ("frames", "single"):
        cpu = results[key]["cpu_per_100k"]
        print(
            f"CPU s per 100,000 readings ({results[key]['phase']}): "
            + ", ".join(f"{k} {v:.3f}" for k, v in cpu.items())
        )


if __name__ == "__main__":
    sys.exit(main())
