"""Shared parts of the gateway benchmarks: a stack of their own with ingest, a registered site, a home
broker, a fleet of devices speaking the vendor formats, and process figures from /proc.

Run the benchmarks from the repository root, e.g. ``.venv/bin/python bench/gateway_load.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from tests.conftest import free_stack_ports, remove_stack, short_state_dir, start_stack  # noqa: E402
from tests.gateway.support import (  # noqa: E402
    GatewaySetup,
    HomeBroker,
    MqttDevices,
    Sent,
    Site,
    fleet,
    home_broker,
    register_site,
    write_config,
)
from tests.platform_procs import Proc, run_eldercare, stack_env  # noqa: E402

from eldercare.devices import messages as m  # noqa: E402
from eldercare.platform.db.migrate import migrate  # noqa: E402
from eldercare.platform.stack.model import StackInfo  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
SISFALL = REPO.parent / "shared" / "data" / "sisfall" / "sisfall_50hz.npz"


@dataclass
class World:
    stack: StackInfo
    ingest: Proc
    home: HomeBroker
    site: Site
    folder: Path


@contextlib.contextmanager
def world(*, beds: int, buttons: int, wearables: int, seed: int) -> Iterator[World]:
    """A stack of its own (database, TLS broker), ingest, a home broker and a registered site."""
    state_dir = short_state_dir("gwbench")
    stack = start_stack(state_dir, free_stack_ports())
    try:
        migrate(stack.database_url)
        devices = fleet(f"b{seed}", {"bed_sensor": beds, "button": buttons, "wearable": wearables})
        site = register_site(stack, seed=seed, devices=devices)
        with (
            run_eldercare("ingest", ["ingest", "--name", "bench"], stack_env(stack)) as ingest,
            home_broker() as home,
            tempfile.TemporaryDirectory(prefix="gwbench-") as folder,
        ):
            ingest.wait_for("subscribed, storing", timeout=60)
            yield World(stack, ingest, home, site, Path(folder))
    finally:
        remove_stack(state_dir)


def gateway_config(w: World, **sections: Any) -> GatewaySetup:  # noqa: ANN401 - configuration sections
    return write_config(w.folder / "gw", site=w.site, stack=w.stack, home_port=w.home.port, http=False, **sections)


def status(setup: GatewaySetup) -> dict[str, Any]:
    reply: dict[str, Any] = httpx.get(f"http://127.0.0.1:{setup.local_port}/api/status", timeout=10).json()
    return reply


# --- process figures ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(value.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def mosquitto_pid(home: HomeBroker) -> int:
    assert home.process is not None
    return home.process.pid


# --- the devices -----------------------------------------------------------------------------------------


def walking_chunks() -> list[np.ndarray]:
    """One-second accelerometer chunks of real walking and jogging (SisFall ADL D01-D04), for wearables."""
    with np.load(SISFALL) as data:
        names = [n for n in data.files if n[:3] in {"D01", "D02", "D03", "D04"}][:8]
        return [data[n][i : i + 50] for n in names for i in range(0, len(data[n]) - 50, 50)]


class SteadyFleet:
    """``beds`` bed sensors (vendor A), ``buttons`` buttons (vendor B battery each second, a press now and
    then) and ``wearables`` wearables (vendor B accelerometer, 1 s chunks at 50 Hz), all once a second through
    the home broker. Acknowledged = the home broker's PUBACK."""

    def __init__(self, w: World, *, t0: int, press_every_s: int = 5) -> None:
        codes = w.site.devices
        self.beds = [d for d, k in codes.items() if k == "bed_sensor"]
        self.buttons = [d for d, k in codes.items() if k == "button"]
        self.wearables = [d for d, k in codes.items() if k == "wearable"]
        self.devices = MqttDevices(w.home.port, client_id=f"steady-{t0}")
        self.t0 = t0
        self.press_every_s = press_every_s
        self.acked = Sent()
        self.sent = 0
        self.rounds = 0
        self.late_rounds = 0
        self._chunks = walking_chunks() if self.wearables else []
        self._pending: list[tuple[mqtt.MQTTMessageInfo, m.DeviceMessage]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Sent:
        self._stop.set()
        self._thread.join(60)
        for info, message in self._pending:
            info.wait_for_publish(60)
            if info.is_published():
                self.acked.add(message)
        self.devices.close()
        return self.acked

    def _send(self, vendor: str, message: m.DeviceMessage) -> None:
        self._pending.append((self.devices.send(vendor, message), message))
        self.sent += 1

    def _run(self) -> None:
        next_round = time.monotonic()
        while not self._stop.is_set():
            n = self.rounds
            ts = self.t0 + n * 1000
            for i, dev in enumerate(self.beds):
                self._send("acme", m.BedSample(dev=dev, ts=ts + i % 997, presence=True, hr=60.0 + n % 30, rr=16.0))
            for i, dev in enumerate(self.buttons):
                self._send("lianke", m.Battery(dev=dev, ts=ts + i % 997, level=90))
            if self.buttons and n % self.press_every_s == 0:
                dev = self.buttons[(n // self.press_every_s) % len(self.buttons)]
                self._send("lianke", m.Button(dev=dev, ts=ts + 998, action=m.ButtonAction.PRESS))
            for i, dev in enumerate(self.wearables):
                chunk = self._chunks[(n * len(self.wearables) + i) % len(self._chunks)]
                xyz = [(int(a), int(b), int(c)) for a, b, c in chunk]
                self._send("lianke", m.AccelSamples(dev=dev, ts=ts + i % 997, hz=50, xyz=xyz))
            still = []
            for info, message in self._pending:
                if info.is_published():
                    self.acked.add(message)
                else:
                    still.append((info, message))
            self._pending = still
            self.rounds += 1
            next_round += 1.0
            wait = next_round - time.monotonic()
            if wait < 0:
                self.late_rounds += 1
            self._stop.wait(max(0.0, wait))
