"""Direct mode: the simulator plays each home's gateway and speaks contract v1 straight to the platform.

One :class:`~eldercare.simulators.uplink.SimUplink` per gateway (its own broker login, TLS), through a
:class:`~eldercare.simulators.run.relay.Relay` that an uplink outage cuts. What a gateway does besides
forwarding is done here on the simulated clock: fall detection on wearables' streams with the gateway's
own detector and model (``eldercare.gateway.pipeline.FallService``), and device supervision
(:mod:`~eldercare.simulators.run.supervise`). Messages are framed per lane (alarm frames of at most 50
messages, telemetry frames of at most 500), and held while the link is down, then sent in order: nothing
is lost, as a gateway's store would keep it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from eldercare.devices import messages as m
from eldercare.simulators.errors import SimError
from eldercare.simulators.run.devices import Said
from eldercare.simulators.run.relay import Relay
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.supervise import Supervision
from eldercare.simulators.uplink import SimUplink

log = logging.getLogger(__name__)
HEARTBEAT_S = 15.0
ALARM_FRAME = 50
TELEMETRY_FRAME = 500


@dataclass(frozen=True, slots=True)
class Target:
    """The platform's broker as a gateway reaches it."""

    host: str
    port: int
    ca_file: str | None


class _Link:
    def __init__(self, *, institution: str, gateway: str, password: str, target: Target) -> None:
        self.relay = Relay(target_host=target.host, target_port=target.port)
        self.relay.restore()
        self.uplink = SimUplink(
            institution=institution,
            gateway=gateway,
            password=password,
            host=self.relay.host,
            port=self.relay.port,
            ca_file=None if target.ca_file is None else Path(target.ca_file),
        )
        self.held: deque[tuple[bool, list[m.DeviceMessage]]] = deque()
        self.last_heartbeat = 0.0
        self.down = False  # the simulated link is cut


class Direct:
    name = "direct"

    def __init__(
        self, scene: Scene, target: Target, *, start: int, bed_sample_s: float, detect_falls: bool = True
    ) -> None:
        self.scene = scene
        self._links: dict[str, _Link] = {}
        for inst in scene.world.plan.institutions:
            issued = scene.world.issued.institutions[inst.key]
            self._links[inst.gateway_id] = _Link(
                institution=inst.code, gateway=inst.gateway_id, password=issued.gateway_password, target=target
            )
        self._supervision = Supervision(list(scene.devices.values()), start=start, bed_sample_s=bed_sample_s)
        self._falls = None
        if detect_falls:
            from eldercare.gateway.fall import model as fall_model
            from eldercare.gateway.pipeline import FallService

            self._falls = FallService(fall_model.load(), suppress_s=10.0)
        self.falls_detected: list[m.Fall] = []

    def start(self) -> None:
        for gateway, link in self._links.items():
            try:
                link.uplink.connect(timeout=30)
            except TimeoutError as exc:
                raise SimError(f"gateway {gateway} could not reach the platform's broker: {exc}") from exc

    def deliver(self, said: list[Said]) -> None:
        per_gateway: dict[str, list[m.DeviceMessage]] = defaultdict(list)
        for item in said:
            out = per_gateway[item.gateway]
            message = item.message
            out.extend(self._supervision.observe(message))
            out.append(message)
            if isinstance(message, m.AccelSamples) and self._falls is not None:
                falls = self._falls.feed(message)
                self.falls_detected.extend(falls)
                out.extend(falls)
        for gateway, messages in per_gateway.items():
            self._send(gateway, messages)

    def tick(self, sim_now: int) -> None:
        faults = self._supervision.tick(sim_now)
        if faults:
            per_gateway: dict[str, list[m.DeviceMessage]] = defaultdict(list)
            for fault in faults:
                per_gateway[self.scene.devices[fault.dev].gateway].append(fault)
            for gateway, messages in per_gateway.items():
                self._send(gateway, messages)
        self._flush()
        now = time.monotonic()
        for link in self._links.values():
            if link.down or not link.uplink.connected:
                continue
            if now - link.last_heartbeat >= HEARTBEAT_S:
                link.last_heartbeat = now
                link.uplink.heartbeat()

    def _flush(self) -> None:
        for link in self._links.values():
            if link.down or not link.uplink.connected:
                continue
            while link.held:
                alarm, batch = link.held.popleft()
                link.uplink.send(batch, alarm=alarm)

    def _send(self, gateway: str, messages: list[m.DeviceMessage]) -> None:
        link = self._links[gateway]
        alarms = [x for x in messages if m.is_alarm_class(x)]
        telemetry = [x for x in messages if not m.is_alarm_class(x)]
        batches = [(True, alarms[i : i + ALARM_FRAME]) for i in range(0, len(alarms), ALARM_FRAME)]
        batches += [(False, telemetry[i : i + TELEMETRY_FRAME]) for i in range(0, len(telemetry), TELEMETRY_FRAME)]
        for alarm, batch in batches:
            if link.down or link.held or not link.uplink.connected:
                link.held.append((alarm, batch))
            else:
                link.uplink.send(batch, alarm=alarm)

    def cut(self, gateway: str) -> None:
        link = self._links[gateway]
        link.down = True
        link.relay.cut()

    def restore(self, gateway: str) -> None:
        link = self._links[gateway]
        link.down = False
        link.relay.restore()

    def backlog(self) -> int:
        return sum(link.uplink.unacknowledged() + len(link.held) for link in self._links.values())

    def close(self) -> None:
        deadline = time.monotonic() + 20
        for link in self._links.values():
            link.down = False
            link.relay.restore()
        while time.monotonic() < deadline and any(link.held for link in self._links.values()):
            self._flush()
            time.sleep(0.1)
        while time.monotonic() < deadline and self.backlog() > 0:
            time.sleep(0.1)
        for link in self._links.values():
            try:
                link.uplink.close()
            except (OSError, RuntimeError) as exc:
                log.warning("closing %s: %s", link.uplink.gateway, exc)
            link.relay.close()
