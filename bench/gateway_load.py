"""500 devices at one reading a second each: the gateway's memory (target: RSS at most 80 MB) and CPU per
1,000 readings, next to the home broker's CPU for the same messages (the baseline, same run).

    .venv/bin/python bench/gateway_load.py [--beds 400 --buttons 50 --wearables 50 --seconds 60]

Devices publish in vendor A (bed sensors) and vendor B (buttons, wearables' 50 Hz accelerometer chunks) to a
real home broker; the gateway maps, supervises, runs the fall detector on every wearable, stores with fsync
and forwards over TLS to the platform's broker, where ingest stores it in TimescaleDB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.gateway_support import SteadyFleet, cpu_seconds, gateway_config, mosquitto_pid, rss_mb, status, world
from tests.gateway.support import now_ms
from tests.platform_procs import run_eldercare, stack_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beds", type=int, default=400)
    parser.add_argument("--buttons", type=int, default=50)
    parser.add_argument("--wearables", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    n_devices = args.beds + args.buttons + args.wearables

    with world(beds=args.beds, buttons=args.buttons, wearables=args.wearables, seed=501) as w:
        setup = gateway_config(w)
        with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(w.stack)) as gateway:
            gateway.wait_for("running", timeout=60)
            gateway.wait_for("subscribed to", timeout=60)
            pid = gateway.popen.pid
            time.sleep(3)
            idle_rss, _ = rss_mb(pid)
            idle_cpu0 = cpu_seconds(pid)
            time.sleep(5)
            idle_cpu = (cpu_seconds(pid) - idle_cpu0) / 5

            devices = SteadyFleet(w, t0=now_ms() - 86_400_000)
            devices.start()
            time.sleep(args.warmup)
            before = status(setup)
            g0, b0, t0 = cpu_seconds(pid), cpu_seconds(mosquitto_pid(w.home)), time.monotonic()
            peak_rss = 0.0
            deadline = t0 + args.seconds
            while time.monotonic() < deadline:
                time.sleep(1)
                peak_rss = max(peak_rss, rss_mb(pid)[0])
            g1, b1, t1 = cpu_seconds(pid), cpu_seconds(mosquitto_pid(w.home)), time.monotonic()
            after = status(setup)
            acked = devices.stop()
            _, hwm = rss_mb(pid)

        stored = after["stats"]["accepted"] - before["stats"]["accepted"]
        deliveries = after["stats"]["deliveries"] - before["stats"]["deliveries"]
        seconds = t1 - t0
        commits = after["commits"]["commits"] - before["commits"]["commits"]
        commit_s = after["commits"]["seconds"] - before["commits"]["seconds"]
        gateway_cpu = g1 - g0
        broker_cpu = b1 - b0
        per_k = 1000 * 1000 / max(deliveries, 1)  # ms per 1,000 readings, from seconds
        ratio = gateway_cpu / max(broker_cpu, 1e-9)
        lines = [
            ("devices", f"{n_devices} ({args.beds} beds, {args.buttons} buttons, {args.wearables} wearables)"),
            ("measured", f"{seconds:.0f} s after {args.warmup:.0f} s warm-up"),
            ("payloads in / stored", f"{deliveries} / {stored} messages ({deliveries / seconds:.0f} per s)"),
            ("gateway RSS", f"idle {idle_rss:.1f} MB, loaded max {peak_rss:.1f} MB, VmHWM {hwm:.1f} MB (target 80)"),
            ("gateway CPU", f"{gateway_cpu * per_k:.1f} ms per 1,000 readings ({gateway_cpu / seconds:.1%} of a core)"),
            ("gateway CPU idle", f"{idle_cpu:.1%} of a core"),
            (
                "home broker CPU (baseline)",
                f"{broker_cpu * per_k:.1f} ms per 1,000 readings; gateway/broker {ratio:.1f}",
            ),
            (
                "store commits",
                f"{commits} ({commits / seconds:.0f} per s), mean {commit_s / max(commits, 1) * 1000:.2f} ms,"
                f" max {after['commits']['max_seconds'] * 1000:.1f} ms, fsync included",
            ),
            ("queue at the end", f"alarm {after['queue']['alarm']}, telemetry {after['queue']['telemetry']}"),
            ("dropped", str(after["dropped"])),
            ("falls on walking data", str(after["stats"]["falls"])),
            ("device rounds late", str(devices.late_rounds)),
            ("acknowledged to devices", str(len(acked.messages))),
        ]
        for name, value in lines:
            print(f"{name:28} {value}")


if __name__ == "__main__":
    main()
