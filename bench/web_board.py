"""The staff board: button press published by a gateway -> alarm shown on the board in a real browser.

Runs a throwaway stack, `eldercare ingest` and `eldercare serve`, one home of ``--beds`` beds whose gateway
sends a bed sample per bed every ``--reading-interval`` seconds, and ``--boards`` boards open in headless
Chromium (Debian's package, driven by Playwright). For each press it measures, in the same run:

- baseline: publish -> the alarm event on a raw SSE client of the same stream (what the page listens to);
- board: publish -> the bed's tile showing the alarm, stamped in each page by a MutationObserver (the
  browser's clock and ours are the same machine's).

Then the board endpoint (every bed's state, computed in SQL) against the cheapest authenticated call
(``/api/v1/auth/me``) as its baseline, under the same telemetry.

    .venv/bin/python bench/web_board.py [--beds 40] [--boards 3] [--presses 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_stack_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.web.support import Gateway

from eldercare.devices import messages as m
from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.db.migrate import migrate
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack import service
from eldercare.simulators.seed import SeededHome, seed_home
from eldercare.simulators.uplink import SimUplink, now_ms

PASSWORD = "bench-password-1"
OBSERVER = """
window.__seenAt = {};
new MutationObserver(() => {
  for (const tile of document.querySelectorAll('.tile[data-alarm-id]')) {
    const code = tile.dataset.bedCode;
    if (!(code in window.__seenAt)) window.__seenAt[code] = Date.now();
  }
  for (const code of Object.keys(window.__seenAt)) {
    if (!document.querySelector('.tile[data-alarm-id][data-bed-code="' + code + '"]')) delete window.__seenAt[code];
  }
}).observe(document.getElementById('tiles'), { childList: true, subtree: true, attributes: true });
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<44} n={len(values):<4} p50={statistics.median(values):7.1f} ms"
        f"  p99={pct(values, 0.99):7.1f} ms  max={max(values):7.1f} ms"
    )


class Telemetry:
    """A bed sample per bed every ``interval`` seconds, spread over the interval, until stopped."""

    def __init__(self, gateway: Gateway, sensors: list[str], interval: float) -> None:
        self.gateway, self.sensors, self.interval = gateway, sensors, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(1)
        while not self.stop.is_set():
            started = time.monotonic()
            for i in range(0, len(self.sensors), 10):
                batch: list[m.DeviceMessage] = [
                    m.BedSample(dev=s, ts=now_ms(), presence=True, hr=70 + rng.random() * 5, rr=16.0, move=0.1)
                    for s in self.sensors[i : i + 10]
                ]
                self.gateway.send(batch, alarm=False)
                self.stop.wait(self.interval * 10 / max(1, len(self.sensors)))
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


class StreamListener:
    """The baseline: a raw SSE client of the alarm stream, stamping each alarm event's arrival per bed."""

    def __init__(self, base: str, token: str) -> None:
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(base, token), daemon=True)
        self.thread.start()

    def _run(self, base: str, token: str) -> None:
        try:
            with httpx.stream("GET", f"{base}/api/v1/alarms/stream", params={"token": token}, timeout=None) as reply:
                name = ""
                for line in reply.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                        self.ready.set()
                    elif line.startswith("data: ") and name == "alarm":
                        alarm = json.loads(line[6:])
                        if alarm["state"] == "raised" and alarm["bed_code"] not in self.seen:
                            self.seen[alarm["bed_code"]] = time.time() * 1000
        except httpx.HTTPError:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beds", type=int, default=40)
    parser.add_argument("--boards", type=int, default=3)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--reading-interval", type=float, default=5.0)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    state = Path(tempfile.mkdtemp(prefix="ec-bench-", dir="/tmp"))
    state.chmod(0o711)
    info = service.up(state, free_stack_ports())
    try:
        migrate(info.database_url)
        vault = Vault(SecuritySettings(_env_file=state / "eldercare.env").key_bytes())

        async def seed() -> SeededHome:
            async with await psycopg.AsyncConnection.connect(info.database_url, autocommit=True) as conn:
                return await seed_home(
                    conn,
                    vault=vault,
                    broker=LocalBroker(state),
                    rng=random.Random(11),
                    rooms=max(1, args.beds // 2),
                    beds_per_room=2,
                    staff_password=PASSWORD,
                )

        home = asyncio.run(seed())
        with psycopg.connect(info.database_url, autocommit=True) as conn:  # this gateway sends no heartbeats
            conn.execute("UPDATE alarm_rules SET enabled = false WHERE rule = 'gateway_offline'")
        env = stack_env(info)
        with ExitStack() as stack:
            stack.enter_context(run_eldercare("ingest", ["ingest", "--name", "bench"], env))
            serve = stack.enter_context(run_eldercare("serve", ["serve", "--port", str(info.ports.api)], env))
            base = f"http://127.0.0.1:{info.ports.api}"
            wait_http(f"{base}/healthz", timeout=30)
            serve.wait_for("alarm engine: listening", timeout=30)
            uplink = SimUplink(
                institution=home.institution_code,
                gateway=home.gateway.gateway_id,
                password=home.gateway.password,
                host=info.mqtt_host,
                port=info.ports.mqtt_tls,
                ca_file=info.ca_file,
            )
            uplink.connect()
            gateway = Gateway(uplink)
            sensors = [d.code for d in home.devices if d.kind == "bed_sensor"]
            buttons = [d for d in home.devices if d.kind == "button"]
            telemetry = Telemetry(gateway, sensors, args.reading_interval)
            telemetry.thread.start()
            login = httpx.post(
                f"{base}/api/v1/auth/login", json={"username": home.staff_username, "password": PASSWORD}
            ).json()
            headers = {"Authorization": f"Bearer {login['token']}"}
            listener = StreamListener(base, login["token"])
            listener.ready.wait(10)

            board_ms: list[float] = []
            stream_ms: list[float] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                pages = []
                for _ in range(args.boards):
                    context = browser.new_context(viewport={"width": 1920, "height": 1080})
                    context.add_init_script(
                        f"localStorage.setItem('eldercare.session', JSON.stringify({json.dumps(login)}));"
                    )
                    page = context.new_page()
                    page.goto(f"{base}/board")
                    page.wait_for_selector("body[data-ready='true']", timeout=30000)
                    page.evaluate(OBSERVER)
                    pages.append(page)
                time.sleep(2)
                for n in range(args.presses):
                    button = buttons[n % len(buttons)]
                    assert button.bed_code is not None
                    pressed = time.time() * 1000
                    gateway.send([m.Button(dev=button.code, ts=now_ms(), action=m.ButtonAction.PRESS)], alarm=True)
                    deadline = time.monotonic() + 10
                    stamps: list[float] = []
                    while time.monotonic() < deadline:
                        stamps = [p.evaluate(f"window.__seenAt[{json.dumps(button.bed_code)}] || 0") for p in pages]
                        if all(stamps) and button.bed_code in listener.seen:
                            break
                        time.sleep(0.02)
                    if not all(stamps):
                        print(f"press {n}: not on every board within 10 s", flush=True)
                        return 1
                    board_ms += [s - pressed for s in stamps]
                    stream_ms.append(listener.seen.pop(button.bed_code) - pressed)
                    open_ = httpx.get(f"{base}/api/v1/alarms", params={"open": "true"}, headers=headers).json()
                    for alarm in open_:
                        if alarm["bed_code"] == button.bed_code:
                            httpx.post(
                                f"{base}/api/v1/alarms/{alarm['id']}/resolve",
                                json={"outcome": "bench"},
                                headers=headers,
                            )
                    time.sleep(1.0)
                browser.close()

            def timed(path: str, n: int = 50) -> list[float]:
                spent = []
                with httpx.Client(headers=headers) as client:
                    for _ in range(n):
                        started = time.perf_counter()
                        assert client.get(base + path).status_code == 200
                        spent.append((time.perf_counter() - started) * 1000)
                return spent

            me = timed("/api/v1/auth/me")
            board = timed(f"/api/v1/institutions/{home.institution_id}/board")
            telemetry.stop.set()
            uplink.close()

        print(f"\n{args.beds} beds, a sample per bed every {args.reading_interval} s, {args.boards} boards open")
        print(summary("baseline: publish -> SSE alarm event", stream_ms))
        print(summary("publish -> tile on the board (every board)", board_ms))
        print(f"  board p50 / stream p50 = {statistics.median(board_ms) / statistics.median(stream_ms):.2f}")
        print(f"  target: every board within 2000 ms: {'met' if max(board_ms) < 2000 else 'NOT met'}")
        print(summary("baseline: GET /api/v1/auth/me", me))
        print(summary(f"GET /board ({args.beds} beds)", board))
        print(f"  board endpoint p50 / auth/me p50 = {statistics.median(board) / statistics.median(me):.2f}")
        return 0
    finally:
        service.down(state)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
