"""Device supervision on the simulated clock, for direct mode (where the simulator plays the gateway).

The same rules as the gateway's (``gateway/supervision.py``): a device unheard for two heartbeats plus a
30 s margin raises one ``offline`` fault, its next message clears it; a battery below 20 % raises
``low_battery``, cleared at 25 %, each with the level read. The gateway's own supervisor runs on the real clock
(a run at 60x would see no device silent for long enough), so direct mode judges silence in simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass

from eldercare.devices import messages as m
from eldercare.simulators.run.scene import Device

MARGIN_MS = 30_000
LOW_PCT = 20
HYSTERESIS_PCT = 5


@dataclass(slots=True)
class _Watch:
    timeout: int
    last_seen: int
    offline: bool = False
    low: bool = False


def heartbeat_s(device: Device, *, bed_sample_s: float) -> float:
    """How often the device is heard from at the least: a bed sensor sampling less often than its registered
    heartbeat (coarse runs of a month) is judged by its sampling period."""
    return max(float(device.heartbeat_s), bed_sample_s) if device.kind == "bed_sensor" else float(device.heartbeat_s)


class Supervision:
    def __init__(self, devices: list[Device], *, start: int, bed_sample_s: float) -> None:
        self._watch = {
            d.code: _Watch(int(2 * heartbeat_s(d, bed_sample_s=bed_sample_s) * 1000) + MARGIN_MS, start)
            for d in devices
        }

    def observe(self, message: m.DeviceMessage) -> list[m.DeviceFault]:
        watch = self._watch.get(message.dev)
        if watch is None:
            return []
        watch.last_seen = max(watch.last_seen, message.ts)
        out: list[m.DeviceFault] = []
        if watch.offline:
            watch.offline = False
            out.append(m.DeviceFault(dev=message.dev, ts=message.ts, fault=m.FaultKind.OFFLINE, active=False))
        if isinstance(message, m.Battery):
            low = watch.low
            if not low and message.level < LOW_PCT:
                watch.low = True
            elif low and message.level >= LOW_PCT + HYSTERESIS_PCT:
                watch.low = False
            if watch.low != low:  # raised or cleared, with the level that did it (the board shows how low)
                out.append(
                    m.DeviceFault(
                        dev=message.dev,
                        ts=message.ts,
                        fault=m.FaultKind.LOW_BATTERY,
                        active=watch.low,
                        level=message.level,
                    )
                )
        return out

    def tick(self, now: int) -> list[m.DeviceFault]:
        out: list[m.DeviceFault] = []
        for code, watch in self._watch.items():
            if not watch.offline and now - watch.last_seen > watch.timeout:
                watch.offline = True
                # Dated when the device became overdue, not when this (coarse) tick noticed it.
                at = watch.last_seen + watch.timeout
                out.append(m.DeviceFault(dev=code, ts=at, fault=m.FaultKind.OFFLINE, active=True))
        return out

    def offline(self) -> list[str]:
        return sorted(code for code, w in self._watch.items() if w.offline)
