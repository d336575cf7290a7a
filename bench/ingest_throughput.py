"""Ingest throughput, latency and CPU on one machine: broker, database, ingest and load generator together.

    .venv/bin/python bench/ingest_throughput.py            # the full run, about 6 minutes
    .venv/bin/python bench/ingest_throughput.py --quick    # a smoke run, about 1 minute

It starts a throwaway stack (TimescaleDB + Mosquitto, by the code of `eldercare stack up`, on free ports,
removed at the end) and two load homes of 50 gateways and 1,000 bed sensors each, one for ingest and one
for the naive consumer. Every phase runs `eldercare simulate load` in a process of its own, publishing over
TLS as real gateways do (the consumers read the broker's local plain listener). D is --duration (60 s):

1. naive, frames: the naive consumer (``bench/ingest_naive.py``: paho-mqtt, one INSERT and one commit per
   message) under the load of 4, for D/3 (it falls behind at once: what it commits is its capacity);
2. naive, single: the same under the load of 7, for D/3;
3. ours, frames of 50 readings at 2,200 frames/s (110,000 readings/s, 10% above the target) for D;
4. ours over-loaded: frames at --overload (2) times the rate of 3, for D/4: what it commits is its capacity;
5. ours at half the maximum load (the higher of 3 and 4), with 20 alarm frames/s, for D/2: p99 publish ->
   committed row (ingest's lag histogram: a bucket bound) and publish -> alarm_inbox row committed
   (LISTEN here; every alarm);
6. ours, single-reading messages at 11,000 messages/s, for D/2;
7. ours over-loaded: single-reading messages at --single-overload (4) times the rate of 6, for D/4: its
   capacity;
8. the MQTT clients alone (``bench/ingest_client.py``): CPU a message received and acknowledged, paho-mqtt
   with manual acknowledgements against ``ingest/mqtt.py``, on single readings and 50-reading frames.

The naive consumer runs first, before ingest's persistent sessions exist (they would otherwise queue a copy
of the naive home's load). Rates are readings (or messages) committed per second between the first and the
last publish of a phase; ours / naive compares what each stored under the same offered load, one that
over-loads both (4 with 1, 7 with 2): under a load ours keeps up with, ours could only show what was
offered. CPU is counted from /proc for each process (ingest, broker, every postgres process of the stack's
cluster, generator) from the start of a phase until everything sent is stored. The two cores are shared with
other work: the load average before the run and, per phase, how many cores were busy and how many of them
were ours, are printed and written with the figures to bench/results/ingest_throughput.json (``--quick``:
ingest_throughput_quick.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import ingest_client
from bench.ingest_phases import Counters, alarm_latencies, naive, phase
from bench.ingest_support import (
    EXE,
    env_for,
    histogram_quantile,
    load_args,
    make_world,
    parse_report,
    quantile,
    run_and_measure,
    scrape,
    start,
    throwaway_stack,
)

from eldercare.platform.stack.model import StackInfo

RESULTS = Path(__file__).with_name("results")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute (--duration 10)")
    parser.add_argument("--duration", type=float, help="D, seconds of the frames phase (default 60)")
    parser.add_argument("--ingest-processes", type=int, default=1)
    parser.add_argument("--overload", type=float, default=2.0, help="phase 4: times the frames rate")
    # 10% above the targets: a rate committed "while sending" can only reach what is offered
    parser.add_argument("--frames-rate", type=float, default=2200.0, help="phase 3: frames of 50 readings per s")
    parser.add_argument("--single-rate", type=float, default=11_000.0, help="phase 6: single-reading messages per s")
    parser.add_argument("--single-overload", type=float, default=4.0, help="phase 7: times the single rate")
    parser.add_argument("--client-messages", type=int, help="phase 7: messages per client (default 100,000)")
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args()
    d = args.duration or (10.0 if args.quick else 60.0)
    client_messages = args.client_messages or (10_000 if args.quick else 100_000)
    out = args.json or RESULTS / ("ingest_throughput_quick.json" if args.quick else "ingest_throughput.json")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # so the stack is taken down
    meta: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "duration_s": d,
        "commit": _commit(),
    }
    print(f"machine: {meta['cores']} cores, load average before the run {_loadavg(meta['load_average_before'])}")
    results: dict[str, Any] = {}
    with throwaway_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        ours_world, naive_world = Path(tmp) / "ours.json", Path(tmp) / "naive.json"
        ours = make_world(stack, ours_world, gateways=50, beds=1000, seed=1)
        make_world(stack, naive_world, gateways=50, beds=1000, seed=2)
        frames_overload, single_overload = args.frames_rate * args.overload, args.single_rate * args.single_overload
        results["naive_frames"] = naive(stack, naive_world, "naive, 50-reading frames", rate=frames_overload,
                                        duration=d / 3, readings=50)  # fmt: skip
        results["naive_single"] = naive(stack, naive_world, "naive, single readings", rate=single_overload,
                                        duration=d / 3, readings=1)  # fmt: skip
        env = env_for(stack, ELDERCARE_MQTT_PORT=str(stack.ports.mqtt), ELDERCARE_MQTT_TLS="false")
        ports = [50_000 + i for i in range(args.ingest_processes)]
        ingest = [
            start(f"ingest-{i}", [EXE, "ingest", "--name", f"bench{i}", "--metrics-port", str(port)], env,
                  wait_for="subscribed, storing")
            for i, port in enumerate(ports)
        ]  # fmt: skip
        try:
            counters = Counters(stack, ingest, ports, None)
            results["frames"] = phase("ours, 50-reading frames", counters, ours_world, rate=args.frames_rate,
                                      duration=d, readings=50, drain=True)  # fmt: skip
            results["overload"] = phase(f"ours at {args.overload:g}x, frames", counters, ours_world,
                                        rate=frames_overload, duration=d / 4, readings=50,
                                        drain=True)  # fmt: skip
            maximum = max(results["frames"]["stored_per_s"], results["overload"]["stored_per_s"])
            results["latency"] = _latency(stack, ports, ours_world, ours.institution_id, maximum / 2, d / 2)
            results["single"] = phase("ours, single readings", counters, ours_world, rate=args.single_rate,
                                      duration=d / 2, readings=1, drain=True)  # fmt: skip
            results["single_overload"] = phase(f"ours at {args.single_overload:g}x, single", counters, ours_world,
                                               rate=single_overload, duration=d / 4, readings=1,
                                               drain=True)  # fmt: skip
        finally:
            for process in ingest:
                process.stop()
        sent = sum(results[k]["sent"] for k in ("frames", "overload", "single", "single_overload"))
        sent += results["latency"]["sent"]
        results["exactly_once"] = _exactly_once(stack.database_url, ours.institution_id, sent)
        results["clients"] = {
            "single": ingest_client.compare(stack, messages=client_messages, readings=1),
            "frames": ingest_client.compare(stack, messages=max(client_messages // 5, 1000), readings=50),
        }
        for key in ("single", "frames"):
            print(f"[clients] {ingest_client.describe(results['clients'][key])}", flush=True)
    meta["load_average_after"] = os.getloadavg()
    document = {"meta": meta, "results": results, "summary": _summary(results, meta)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_plain(document), indent=1, default=str) + "\n")
    print(f"\nfigures written to {out}")
    return 0


def _latency(
    stack: StackInfo, ports: list[int], world: Path, institution_id: int, readings_per_s: float, duration: float
) -> dict[str, Any]:
    before = [scrape(p) for p in ports]
    latencies: list[float] = []
    stop = threading.Event()
    listener = threading.Thread(target=alarm_latencies, args=(stack, institution_id, stop, latencies))
    listener.start()
    rate = readings_per_s / 50
    output, _ = run_and_measure(load_args(world, rate=rate, duration=duration, readings=50, alarm_rate=20),
                                env_for(stack))  # fmt: skip
    time.sleep(3)
    stop.set()
    listener.join()
    after = [scrape(p) for p in ports]
    report = parse_report(output)

    def p99(name: str, lane: str) -> float:
        return max(histogram_quantile(b, a, name, lane, 0.99) for b, a in zip(before, after, strict=True))

    lag = p99("eldercare_ingest_lag_seconds", "telemetry")
    result = {
        "phase": "ours at half the maximum load, with alarms",
        "readings_per_s": report["readings_per_s"],
        "sent": report["readings"],
        "telemetry_p99_le_s": lag,
        "alarm_p99_s": quantile(latencies, 0.99),
        "alarm_p50_s": quantile(latencies, 0.5),
        "alarm_max_s": max(latencies, default=math.nan),
        "alarms": len(latencies),
        "alarms_sent": report["alarm_frames"],
        # where an alarm's time goes, from ingest's histograms (bucket bounds): sent -> committed, and the commit
        "alarm_lane_lag_p99_le_s": p99("eldercare_ingest_lag_seconds", "alarm"),
        "alarm_lane_commit_p99_le_s": p99("eldercare_ingest_commit_seconds", "alarm"),
        "telemetry_commit_p99_le_s": p99("eldercare_ingest_commit_seconds", "telemetry"),
        "generator_max_behind_s": report["max_behind_s"],
        "load": os.getloadavg()[0],
    }
    print(f"[latency at half the maximum load] {result}", flush=True)
    return result


def _exactly_once(database_url: str, institution_id: int, sent: int) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, time)) FROM bed_readings r JOIN devices d"
            " ON d.id = r.device_id WHERE d.institution_id = %s",
            (institution_id,),
        ).fetchone()
    assert row is not None
    return {"sent": sent, "stored": row[0], "distinct": row[1]}


def _summary(results: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Print the table of figures against the targets; return the same figures for the JSON."""
    frames, single, latency = results["frames"], results["single"], results["latency"]
    overload, single_overload, once = results["overload"], results["single_overload"], results["exactly_once"]
    naive_frames, naive_single = results["naive_frames"], results["naive_single"]
    ratio_frames = overload["stored_per_s"] / max(naive_frames["stored_per_s"], 1e-9)
    ratio_single = single_overload["stored_per_s"] / max(naive_single["stored_per_s"], 1e-9)
    rows = [
        ("(a) readings/s stored, 50-reading frames, sustained", f"{frames['stored_per_s']:,.0f} for"
         f" {meta['duration_s']:.0f} s", ">= 100,000", frames["stored_per_s"] >= 100_000),
        ("    capacity, frames offered at " + f"{overload['offered_per_s']:,.0f}/s", f"{overload['stored_per_s']:,.0f}",
         "", None),
        ("(b) messages/s stored, single-reading messages", f"{single['stored_per_s']:,.0f}", ">= 10,000",
         single["stored_per_s"] >= 10_000),
        ("    capacity, single readings offered at " + f"{single_overload['offered_per_s']:,.0f}/s",
         f"{single_overload['stored_per_s']:,.0f}", "", None),
        ("(c) naive consumer under the same over-loads", f"{naive_frames['stored_per_s']:,.0f} readings/s;"
         f" {naive_single['stored_per_s']:,.0f} messages/s", "", None),
        ("    ours / naive, frames", f"{ratio_frames:,.1f}x", ">= 20x", ratio_frames >= 20),
        ("    ours / naive, single readings", f"{ratio_single:,.1f}x", ">= 20x", ratio_single >= 20),
        (f"(d) p99 publish -> committed row at {latency['readings_per_s']:,.0f} readings/s",
         f"<= {latency['telemetry_p99_le_s']} s", "<= 1 s", latency["telemetry_p99_le_s"] <= 1.0),
        ("    p99 publish -> alarm row, same load", f"{latency['alarm_p99_s'] * 1000:.0f} ms (p50"
         f" {latency['alarm_p50_s'] * 1000:.0f}, max {latency['alarm_max_s'] * 1000:.0f}; {latency['alarms']} of"
         f" {latency['alarms_sent']})", "<= 100 ms", latency["alarm_p99_s"] <= 0.1),
        ("    where alarms wait (ingest's histograms, p99 <=)", f"lane lag {latency['alarm_lane_lag_p99_le_s']} s,"
         f" its commit {latency['alarm_lane_commit_p99_le_s']} s", "", None),
        ("    exactly once: readings sent / stored / distinct", f"{once['sent']:,} / {once['stored']:,} /"
         f" {once['distinct']:,}", "all equal", once["sent"] == once["stored"] == once["distinct"]),
    ]  # fmt: skip
    print("\n=== ingest benchmark ===")
    print(f"load average before the run {_loadavg(meta['load_average_before'])}, after"
          f" {_loadavg(meta['load_average_after'])} ({meta['cores']} cores shared with other work)")  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<44} {'target':<10} met")
    for name, measured, target, met in rows:
        print(f"{name:<{width}}  {measured:<44} {target:<10} {'' if met is None else 'yes' if met else 'NO'}")
    print("\nCPU seconds per 100,000 readings stored (single: per 100,000 messages), and the machine while it ran")
    cpu_phases = ("frames", "overload", "single", "single_overload", "naive_frames", "naive_single")
    print(f"{'phase':<28} {'ingest':>7} {'broker':>7} {'database':>8} {'generator':>9}   cores busy / ours")
    for key in cpu_phases:
        p = results[key]
        c = p["cpu_per_100k"]
        print(f"{p['phase']:<28} {c['ingest']:>7.3f} {c['broker']:>7.3f} {c['database']:>8.3f} {c['generator']:>9.3f}"
              f"   {p['cores_busy']:.2f} / {p['cores_ours']:.2f}")  # fmt: skip
    print("(naive: 'ingest' is the naive consumer; its per-100k figures divide by the little it stored)")
    clients = results["clients"]
    print("\nMQTT client alone, CPU a message received and acknowledged (µs)")
    for key in ("single", "frames"):
        c = clients[key]
        ours, paho = c[ingest_client.CLIENTS[0]], c[ingest_client.CLIENTS[1]]
        print(f"  {c['readings_per_message']:>2} reading(s) a message: ingest/mqtt.py {ours['us_per_message']:.1f},"
              f" paho-mqtt {paho['us_per_message']:.1f} ({c['paho_over_ours']:.1f}x)")  # fmt: skip
    extra_us = clients["single"][ingest_client.CLIENTS[1]]["us_per_message"]
    extra_us -= clients["single"][ingest_client.CLIENTS[0]]["us_per_message"]
    print(f"  paho in ingest would add {extra_us:.0f} µs a message: {extra_us * 1e-6 * 10_000:.2f} of a core at"
          f" 10,000 single-reading messages/s")  # fmt: skip
    return {
        "frames_readings_per_s": frames["stored_per_s"],
        "capacity_readings_per_s": overload["stored_per_s"],
        "single_messages_per_s": single["stored_per_s"],
        "capacity_single_messages_per_s": single_overload["stored_per_s"],
        "naive_frames_readings_per_s": results["naive_frames"]["stored_per_s"],
        "naive_single_messages_per_s": results["naive_single"]["stored_per_s"],
        "ratio_frames": ratio_frames,
        "ratio_single": ratio_single,
        "telemetry_p99_le_s": latency["telemetry_p99_le_s"],
        "alarm_p99_s": latency["alarm_p99_s"],
        "half_load_readings_per_s": latency["readings_per_s"],
        "cpu_per_100k": {key: results[key]["cpu_per_100k"] for key in cpu_phases},
        "client_us_per_message": {
            key: {name: clients[key][name]["us_per_message"] for name in ingest_client.CLIENTS}
            for key in ("single", "frames")
        },
        "targets_met": {name.strip(): met for name, _, _, met in rows if met is not None},
    }


def _loadavg(values: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _plain(value: object) -> object:
    """JSON without NaN (not valid JSON): NaN becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
