"""The platform's broker stopped for 2 minutes while 500 devices keep sending: afterwards every reading and
alarm is stored exactly once on the platform, alarms first.

    .venv/bin/python bench/gateway_outage.py [--beds 450 --buttons 50 --outage-s 120]

Prints how much the gateway held during the outage, how long the backlog took to reach the database, what
is missing or doubled (must be nothing), and the order of the backlog's frames (alarms first). The baseline
is the same gateway's steady state before the outage (drain rate vs. arrival rate).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.gateway_support import SteadyFleet, gateway_config, status, world
from tests.gateway.support import (
    bed_difference,
    expected_beds,
    frames_received,
    now_ms,
    sorted_stored_beds,
    stored_events,
)
from tests.platform_procs import run_eldercare, stack_env

from eldercare.devices import messages as m
from eldercare.platform.stack import broker as stack_broker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beds", type=int, default=450)
    parser.add_argument("--buttons", type=int, default=50)
    parser.add_argument("--outage-s", type=float, default=120.0)
    parser.add_argument("--before-s", type=float, default=10.0)
    parser.add_argument("--after-s", type=float, default=20.0)
    args = parser.parse_args()

    with world(beds=args.beds, buttons=args.buttons, wearables=0, seed=502) as w:
        stack = w.stack
        setup = gateway_config(w, uplink={"heartbeat_s": 15.0, "reconnect_max_s": 10.0})
        with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
            gateway.wait_for("running", timeout=60)
            gateway.wait_for("subscribed to", timeout=60)
            devices = SteadyFleet(w, t0=now_ms() - 86_400_000, press_every_s=3)
            devices.start()
            time.sleep(args.before_s)
            stack_broker.stop(stack.state_dir)
            stopped = time.time()
            held_max = 0
            while time.time() - stopped < args.outage_s:
                time.sleep(5)
                s = status(setup)
                held_max = max(held_max, s["queue"]["alarm"] + s["queue"]["telemetry"])
                disk = s["store_bytes"]
            stack_broker.start(
                state_dir=stack.state_dir,
                host=stack.mqtt_host,
                port=stack.ports.mqtt_tls,
                ca_file=stack.ca_file,
                password=stack.platform_password,
            )
            restarted = time.time()
            caught_up = None  # when the gateway's queue is back to less than a second of traffic
            while time.time() - restarted < args.after_s:
                time.sleep(0.5)
                s = status(setup)
                if caught_up is None and s["queue"]["alarm"] + s["queue"]["telemetry"] < args.beds + args.buttons:
                    caught_up = time.time()
            acked = devices.stop()
            expected = expected_beds(acked)
            presses = sorted((x.dev, x.ts) for x in acked.of_type(m.Button))
            n_expected = sum(map(len, expected.values()))
            deadline = time.time() + 120  # devices are silent now: offline faults would start after 150 s
            while time.time() < deadline:
                stored = sorted_stored_beds(stack.database_url, w.site)
                if sum(map(len, stored.values())) >= n_expected:
                    break
                time.sleep(1)
            drained = time.time()
            final = status(setup)
            log_tail = [line for line in gateway.log().splitlines() if "WARNING" in line or "ERROR" in line][-30:]
        stored = sorted_stored_beds(stack.database_url, w.site)
        events = stored_events(stack.database_url, w.site)
        frames = frames_received(stack.database_url, w.site)
        with psycopg.connect(stack.database_url) as conn:
            parked = conn.execute("SELECT kind::text, reason, count(*) FROM parked_messages GROUP BY 1, 2").fetchall()
        seqs = sorted(seq for _, seq, _ in frames)
        holes = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) if seqs else []
        print("final status:", final)
        print("gateway warnings:", *log_tail, sep="\n  ")
        print("parked on the platform:", parked)
        print("sequence holes on the platform:", holes[:20])

    stored_presses = sorted((d, t) for d, t, k, _ in events if k == "button")
    doubled = sum(n - 1 for times in stored.values() for n in Counter(times).values() if n > 1)
    backlog = sorted((seq, lane, at) for lane, seq, at in frames if at >= restarted)
    first_telemetry = min((at for _, lane, at in backlog if lane == "telemetry"), default=None)
    first_alarm = min((at for _, lane, at in backlog if lane == "alarm"), default=None)
    rows = [
        ("devices", f"{args.beds} beds (vendor A) + {args.buttons} buttons (vendor B), 1 message/s each"),
        ("outage", f"{args.outage_s:.0f} s (broker stopped), {args.before_s:.0f} s before, {args.after_s:.0f} s after"),
        ("held by the gateway", f"{held_max} messages at most, store {disk / 1e6:.1f} MB on disk"),
        ("acknowledged to devices", f"{len(acked.messages)} ({n_expected} readings, {len(presses)} presses)"),
        ("stored on the platform", f"{sum(map(len, stored.values()))} readings, {len(stored_presses)} presses"),
        ("readings missing/extra", bed_difference(expected, stored)),
        ("readings stored twice", str(doubled)),
        ("presses exactly once", str(stored_presses == presses)),
        ("other events (faults)", str([k for _, _, k, _ in events if k != "button"])),
        (
            "backlog sent in",
            f"{(caught_up or drained) - restarted:.1f} s after the broker came back"
            f" ({held_max / max((caught_up or drained) - restarted, 1e-9):.0f} messages/s; arrival 500/s)",
        ),
        ("all stored by", f"{drained - restarted:.1f} s after the broker came back (checked after the devices stop)"),
        (
            "alarms first",
            f"first backlog frame: {backlog[0][1] if backlog else '-'} (seq {backlog[0][0] if backlog else '-'});"
            f" first alarm stored {((first_alarm or restarted) - restarted):.2f} s, first telemetry"
            f" {((first_telemetry or restarted) - restarted):.2f} s after the restart",
        ),
        ("dropped (store full)", str(final["dropped"])),
        ("uplink connects", str(final["uplink"]["connects"])),
    ]
    for name, value in rows:
        print(f"{name:26} {value}")


if __name__ == "__main__":
    main()
