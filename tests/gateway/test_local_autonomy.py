"""While the home's link to the platform is down, alarms still reach the nurse station (the local page's
event stream and the local command); when it returns, everything reaches the platform with its original
times, and no device is reported offline for the gateway's own trouble."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tests.gateway.support import (
    HomeBroker,
    LinkCutter,
    MqttDevices,
    fleet,
    now_ms,
    register_site,
    stored_bed_times,
    stored_events,
    wait_for,
    write_config,
)
from tests.platform_procs import Proc, run_eldercare, stack_env

from eldercare.devices import messages as m
from eldercare.platform.stack.model import StackInfo


class EventStream:
    """Reads the local page's server-sent events in a thread, as the nurse station's browser does."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        threading.Thread(target=self._read, args=(url,), daemon=True).start()

    def _read(self, url: str) -> None:
        try:
            with httpx.stream("GET", url, timeout=None) as response:
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((event, json.loads(line[6:])))
        except httpx.HTTPError:
            return  # the gateway stopped

    def alarms(self, kind: str = "button") -> list[tuple[str, str, int]]:
        return [(d["t"], d["dev"], d["ts"]) for e, d in list(self.events) if e == "alarm" and d["t"] == kind]

    def uplink(self) -> list[bool]:
        return [d["up"] for e, d in list(self.events) if e == "uplink"]


def test_alarms_reach_the_nurse_station_while_the_link_is_down(
    stack: StackInfo, platform: Proc, home: HomeBroker, tmp_path: Path
) -> None:
    devices = fleet("loc", {"bed_sensor": 3, "button": 2})
    site = register_site(stack, seed=302, devices=devices)
    link = LinkCutter(stack.ports.mqtt_tls)  # not restored yet: the link is down from the start
    calls = tmp_path / "calls.jsonl"
    setup = write_config(
        tmp_path / "gw",
        site=site,
        stack=stack,
        home_port=home.port,
        uplink={"port": link.port, "heartbeat_s": 1.0},
        local={"command": ["sh", "-c", f"cat >> {calls}"], "command_on": "uplink_down"},
        # Offline after 8 s of silence: far less than the outage, so a fault for "link down" would show.
        supervision={"margin_s": 2, "classes": {"bed_sensor": {"heartbeat_s": 3}, "button": {"heartbeat_s": 3}}},
    )
    beds = [d for d, k in devices.items() if k == "bed_sensor"]
    buttons = [d for d, k in devices.items() if k == "button"]
    t0 = now_ms() - 600_000  # the devices' own clock: everything must arrive with these times
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
        gateway.wait_for("running", timeout=30)
        gateway.wait_for("subscribed to", timeout=30)
        stream = EventStream(f"http://127.0.0.1:{setup.local_port}/events")
        wait_for(lambda: stream.uplink() == [False], 10, "the page to show the uplink down")
        sensors = MqttDevices(home.port)
        sent: dict[str, list[int]] = {d: [] for d in beds}
        presses = []
        try:
            for i in range(8):  # 8 s of readings, heartbeats every 2 s would be missed without them
                for dev in beds:
                    sample = m.BedSample(dev=dev, ts=t0 + i * 1000, presence=True, hr=70.0)
                    sensors.send("acme", sample).wait_for_publish(5)
                    sent[dev].append(sample.ts)
                for dev in buttons:
                    sensors.send("lianke", m.Battery(dev=dev, ts=t0 + i * 1000, level=90)).wait_for_publish(5)
                if i in {2, 5}:
                    press = m.Button(dev=buttons[i % 2], ts=t0 + i * 1000 + 500, action=m.ButtonAction.PRESS)
                    sensors.send("lianke", press).wait_for_publish(5)
                    presses.append(press)
                time.sleep(1)
            expected = [("button", p.dev, p.ts) for p in presses]
            wait_for(lambda: stream.alarms() == expected, 10, "both presses on the local page")
            commands = wait_for(lambda: calls.exists() and calls.read_text().splitlines(), 10, "the local command")
            wait_for(lambda: len(calls.read_text().splitlines()) == 2, 10, "two local commands")
            ran = [json.loads(line) for line in calls.read_text().splitlines()]
            assert sorted((c["t"], c["dev"], c["ts"]) for c in ran) == sorted(expected)
            assert {c["gateway"] for c in ran} == {site.gateway}
            assert stored_events(stack.database_url, site) == []  # nothing reached the platform yet
            status = httpx.get(f"http://127.0.0.1:{setup.local_port}/api/status").json()
            assert status["uplink"]["connected"] is False
            assert status["queue"]["alarm"] == 2
            assert status["offline_devices"] == []

            assert stream.alarms("fault") == []
            restored_at = now_ms()
            link.restore()
            wait_for(lambda: stream.uplink()[-1:] == [True], 30, "the uplink to come back")
            for dev in beds:  # the devices keep sending while the backlog drains
                sample = m.BedSample(dev=dev, ts=t0 + 9000, presence=False)
                sensors.send("acme", sample).wait_for_publish(5)
                sent[dev].append(sample.ts)
            late = m.Button(dev=buttons[0], ts=t0 + 9500, action=m.ButtonAction.CANCEL)
            sensors.send("lianke", late).wait_for_publish(5)
        finally:
            sensors.close()
        # 90 s: the backlog drains through ingest on the shared test broker, slowly on a loaded machine
        expected_beds = {dev: sorted(times) for dev, times in sent.items()}
        wait_for(
            lambda: stored_bed_times(stack.database_url, site) == expected_beds or None, 90, "every bed sample, once"
        )
        events = wait_for(
            lambda: (
                [e for e in stored_events(stack.database_url, site) if e[2] == "button"][2:]
                and stored_events(stack.database_url, site)
            ),
            90,
            "3 events",
        )
        assert [(d, t) for d, t, k, _ in events if k == "button"] == [(p.dev, p.ts) for p in [*presses, late]]
        # Devices that stop sending at the end may be reported offline later; none while the link was down.
        assert [(d, e) for d, t, k, e in events if k == "fault" and t < restored_at] == []
        wait_for(lambda: stream.alarms()[-1:] == [("button", late.dev, late.ts)], 10, "the cancel on the page")
        time.sleep(0.5)
        assert len(calls.read_text().splitlines()) == 2  # uplink_down: no local command once the link is back
        del commands
