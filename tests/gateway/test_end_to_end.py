"""The gateway as it runs (``eldercare gateway --config``) between real devices' formats, a real home broker,
the platform's TLS broker with the gateway's own login, ingest and TimescaleDB."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tests.gateway.support import (
    HomeBroker,
    MqttDevices,
    fleet,
    frames_received,
    now_ms,
    register_site,
    stored_bed_times,
    stored_events,
    wait_for,
    write_config,
)
from tests.platform_procs import Proc, run_eldercare, stack_env

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.gateway import vendorsim
from eldercare.platform.stack.model import StackInfo


class StatusWatcher:
    """A platform-side subscriber to the gateway's status topic (birth, heartbeats, death)."""

    def __init__(self, stack: StackInfo, topic: str) -> None:
        self.messages: queue.Queue[tuple[bool, m.StatusMessage]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(stack.platform_username, stack.platform_password)
        self.client.tls_set(ca_certs=str(stack.ca_file))
        self.client.on_message = lambda _c, _u, msg: self.messages.put(
            (msg.retain, m.decode_status(bytes(msg.payload)))
        )
        self.client.connect(stack.mqtt_host, stack.ports.mqtt_tls)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def next(self, kind: type[m.StatusMessage], timeout: float = 15) -> tuple[bool, Any]:
        while True:
            retained, status = self.messages.get(timeout=timeout)
            if isinstance(status, kind):
                return retained, status

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_devices_of_two_vendors_reach_the_platform_exactly_once(
    stack: StackInfo, platform: Proc, home: HomeBroker, tmp_path: Path
) -> None:
    devices = fleet("e2e", {"bed_sensor": 4, "button": 3})
    site = register_site(stack, seed=301, devices=devices)
    setup = write_config(tmp_path / "gw", site=site, stack=stack, home_port=home.port)
    status_topic = topics.uplink(site.institution, site.gateway, topics.Channel.STATUS)
    watcher = StatusWatcher(stack, status_topic)
    beds = [d for d, k in devices.items() if k == "bed_sensor"]
    buttons = [d for d, k in devices.items() if k == "button"]
    t0 = now_ms() - 60_000
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
        gateway.wait_for("running", timeout=30)
        gateway.wait_for("subscribed to", timeout=30)
        _, birth = watcher.next(m.Birth)
        assert sorted(birth.devices) == sorted(devices)

        sent_beds: dict[str, list[int]] = {d: [] for d in beds}
        sensors = MqttDevices(home.port)
        try:
            for i in range(5):
                for n, dev in enumerate(beds[:3]):
                    sample = m.BedSample(dev=dev, ts=t0 + i * 1000 + n, presence=True, hr=60.0 + i, rr=15.0)
                    sensors.send("acme", sample).wait_for_publish(5)
                    sent_beds[dev].append(sample.ts)
            press = m.Button(dev=buttons[0], ts=t0 + 10_000, action=m.ButtonAction.PRESS)
            sensors.send("lianke", press).wait_for_publish(5)
            # Bad input next to good input: unmappable text, and a device the gateway does not serve.
            sensors.client.publish("lianke/up/BT-x", b"this is not key=value", qos=1).wait_for_publish(5)
            stranger = m.Button(dev="BT-stranger", ts=t0 + 11_000, action=m.ButtonAction.PRESS)
            sensors.send("lianke", stranger).wait_for_publish(5)
        finally:
            sensors.close()

        base = f"http://127.0.0.1:{setup.http_port}/v1/devices"
        over_http = m.BedSample(dev=beds[3], ts=t0 + 20_000, presence=False)
        reply = httpx.post(f"{base}/acme", content=vendorsim.encode("acme", over_http))
        assert reply.status_code == 200, reply.text
        assert reply.json()["stored"] == 1
        sent_beds[beds[3]].append(over_http.ts)
        cancel = m.Button(dev=buttons[1], ts=t0 + 21_000, action=m.ButtonAction.CANCEL)
        reply = httpx.post(f"{base}/contract", content=m.encode(cancel))
        assert reply.status_code == 200, reply.text
        reply = httpx.post(f"{base}/contract", content=m.encode(cancel))  # the device sends it again
        assert reply.json() == {"stored": 0, "repeats": 1, "problems": []}
        bad = httpx.post(f"{base}/acme", content=b'{"deviceId":"BT-e2e-002","type":"call","state":"exploded"}')
        assert bad.status_code == 422
        assert bad.json()["problems"][0]["device"] == "BT-e2e-002"
        assert "exploded" in bad.json()["problems"][0]["reason"]
        assert httpx.post(f"{base}/nobody", content=b"{}").status_code == 404

        wait_for(
            lambda: (
                stored_bed_times(stack.database_url, site) == {d: sorted(t) for d, t in sent_beds.items() if t} or None
            ),
            20,
            "every bed sample stored once",
        )
        events = wait_for(
            lambda: len(stored_events(stack.database_url, site)) >= 2 and stored_events(stack.database_url, site),
            20,
            "two events",
        )
        assert [(d, t, k, e) for d, t, k, e in events] == [
            (buttons[0], press.ts, "button", {"action": "press"}),
            (buttons[1], cancel.ts, "button", {"action": "cancel"}),
        ]
        assert {d: sorted(t) for d, t in stored_bed_times(stack.database_url, site).items()} == sent_beds

        _, beat = watcher.next(m.Heartbeat)
        while beat.unmapped < 3:  # the text, the stranger, the exploded call
            _, beat = watcher.next(m.Heartbeat)
        assert beat.unmapped == 3
        assert beat.devices_seen == 6
        assert beat.queue == m.QueueDepth(alarm=0, telemetry=0)
        assert beat.dropped == 0

        alarms = httpx.get(f"http://127.0.0.1:{setup.local_port}/api/alarms").json()
        assert [(a["t"], a["dev"], a["ts"]) for a in alarms] == [
            ("button", buttons[1], cancel.ts),
            ("button", buttons[0], press.ts),
        ]
    _, death = watcher.next(m.Death)
    assert death.clean is True
    watcher.close()
    lanes = {lane for lane, _, _ in frames_received(stack.database_url, site)}
    assert lanes == {"alarm", "telemetry"}
