"""The gateway killed with SIGKILL mid-stream and restarted, with 500 devices sending: nothing it had
acknowledged to a device is lost (and nothing is stored twice).

    .venv/bin/python bench/gateway_kill.py [--devices 500 --kills 3]

Half the devices post over HTTP (acknowledged by the gateway's 200, sent again by the device otherwise), half
publish to the home broker (acknowledged by it; the gateway acknowledges the broker only after its commit).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.gateway_support import world
from tests.gateway.support import Fleet, bed_difference, expected_beds, now_ms, sorted_stored_beds, write_config
from tests.platform_procs import run_eldercare, stack_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--run-s", type=float, default=8.0, help="time between start and kill")
    parser.add_argument("--dead-s", type=float, default=3.0, help="time the gateway stays dead")
    args = parser.parse_args()
    half = args.devices // 2

    with world(beds=args.devices, buttons=0, wearables=0, seed=503) as w:
        setup = write_config(w.folder / "gw", site=w.site, stack=w.stack, home_port=w.home.port, http=True)
        beds = [d for d, k in w.site.devices.items() if k == "bed_sensor"]
        t0 = now_ms() - 86_400_000
        url = f"http://127.0.0.1:{setup.http_port}/v1/devices"
        http_fleets = [
            Fleet(mqtt_beds=[], http_beds=part, buttons=[], home_port=None, http_url=url, t0=t0)
            for part in (beds[half : half + half // 2], beds[half + half // 2 :])
        ]
        mqtt_fleet = Fleet(mqtt_beds=beds[:half], http_beds=[], buttons=[], home_port=w.home.port, http_url=None, t0=t0)
        env = stack_env(w.stack)
        started = False
        for kill in range(args.kills + 1):
            with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], env) as gateway:
                gateway.wait_for("running", timeout=60)
                gateway.wait_for("subscribed to", timeout=60)
                if not started:
                    for f in (*http_fleets, mqtt_fleet):
                        f.start()
                    started = True
                time.sleep(args.run_s)
                if kill < args.kills:
                    gateway.popen.kill()  # SIGKILL
                    gateway.popen.wait()
                    time.sleep(args.dead_s)
                    continue
                acked_all = [f.stop() for f in (*http_fleets, mqtt_fleet)]
                expected: dict[str, list[int]] = {}
                for acked in acked_all:
                    for dev, times in expected_beds(acked).items():
                        expected.setdefault(dev, []).extend(times)
                n_expected = sum(map(len, expected.values()))
                deadline = time.time() + 300
                while time.time() < deadline:
                    stored = sorted_stored_beds(w.stack.database_url, w.site)
                    have = sum(len(set(times) & set(stored.get(dev, []))) for dev, times in expected.items())
                    if have >= n_expected:
                        break
                    time.sleep(1)
        stored = sorted_stored_beds(w.stack.database_url, w.site)

    lost = sum(len(set(times) - set(stored.get(dev, []))) for dev, times in expected.items())
    doubled = sum(n - 1 for times in stored.values() for n in Counter(times).values() if n > 1)
    failures = sum(f.http_failures for f in http_fleets)
    rows = [
        ("devices", f"{args.devices}: {half} on the home broker, {args.devices - half} over HTTP, 1 reading/s each"),
        ("kills", f"{args.kills} x SIGKILL after {args.run_s:.0f} s, dead {args.dead_s:.0f} s each time"),
        ("acknowledged to devices", str(n_expected)),
        ("HTTP posts refused/failed", f"{failures} (sent again by the devices)"),
        ("acknowledged but lost", str(lost)),
        ("stored twice", str(doubled)),
        ("stored, not acknowledged", f"{sum(map(len, stored.values())) - n_expected + lost} (committed, answer lost)"),
        ("detail", bed_difference({d: sorted(t) for d, t in expected.items()}, stored)),
    ]
    for name, value in rows:
        print(f"{name:26} {value}")


if __name__ == "__main__":
    main()
