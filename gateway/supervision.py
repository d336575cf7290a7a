"""Which devices the gateway serves, and whether they are alive and charged.

Offline. Each device class has an expected heartbeat (any message counts). A device unheard for two
heartbeats plus a margin raises one ``fault`` (``offline``, active); its next message clears it (active
false). Low battery likewise: one event below the class's threshold, cleared once the level is back above
threshold plus a hysteresis; both carry the level of the reading that raised or cleared them. Active faults
are kept in the store, so a restart neither repeats nor forgets them.

What must not become one alarm per device:

- the uplink being down: supervision does not depend on it at all (devices talk to the gateway);
- the gateway restarting: every device starts with a full grace period, as if just heard from;
- a southbound source being down (the home's MQTT broker): its devices are not judged until it is back,
  and then get a full grace period;
- the gateway itself stalling (suspended, clock jump): time the supervisor did not run is not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from eldercare.devices import messages as m
from eldercare.gateway.config import DeviceClass, DevicesConfig, SupervisionConfig
from eldercare.gateway.mapping import CLASS_OF_MESSAGE

log = logging.getLogger(__name__)

TICK_S: Final = 1.0
STALL_S: Final = 5.0  # a tick this late means the gateway was not running in between


class DeviceBook:
    """The devices the gateway serves: the configured list, or whatever speaks up (auto-discovery)."""

    def __init__(self, config: DevicesConfig, discovered: dict[str, str]) -> None:
        self.auto = config.auto_discover
        self.classes: dict[str, DeviceClass] = {}
        if self.auto:
            self.classes.update({dev: DeviceClass(cls) for dev, cls in discovered.items()})
        self.classes.update({d.code: d.device_class for d in config.known})

    def resolve(self, message: m.DeviceMessage, hint: DeviceClass | None) -> tuple[DeviceClass | None, bool]:
        """``(class, new)``: the device's class (None: unknown, refuse) and whether it was just discovered."""
        known = self.classes.get(message.dev)
        if known is not None or not self.auto:
            return known, False
        tag = type(message).__struct_config__.tag
        guessed = hint or CLASS_OF_MESSAGE.get(str(tag))
        if guessed is None and isinstance(message, m.EnvReading | m.EnvAlarm):
            guessed = DeviceClass(message.kind)
        if guessed is None:
            return None, False  # a battery reading alone does not say what the device is; wait for more
        self.classes[message.dev] = guessed
        return guessed, True


@dataclass(slots=True)
class _Watch:
    device_class: DeviceClass
    last_seen: float
    source: str | None = None
    offline: bool = False
    low_battery: bool = False


Fault = m.DeviceFault


class Supervisor:
    def __init__(
        self,
        *,
        config: SupervisionConfig,
        devices: dict[str, DeviceClass],
        active: Iterable[tuple[str, str]],
        now: float,
        clock_ms: Callable[[], int],
    ) -> None:
        self._config = config
        self._clock_ms = clock_ms
        self._watch = {dev: _Watch(cls, now) for dev, cls in devices.items()}
        for dev, fault in active:
            watch = self._watch.get(dev)
            if watch is not None:
                watch.offline |= fault == m.FaultKind.OFFLINE
                watch.low_battery |= fault == m.FaultKind.LOW_BATTERY
        self._down: set[str] = set()
        self._last_tick = now

    def timeout(self, device_class: DeviceClass) -> float:
        return 2 * self._config.for_class(device_class).heartbeat_s + self._config.margin_s

    def _fault(self, dev: str, kind: m.FaultKind, *, active: bool, level: int | None = None) -> Fault:
        """``level``: a low battery's level, from the reading that raised or cleared it (staff see how low)."""
        log.info("device %s: %s %s", dev, kind.value, "raised" if active else "cleared")
        return m.DeviceFault(dev=dev, ts=self._clock_ms(), fault=kind, active=active, level=level)

    def observe(self, message: m.DeviceMessage, device_class: DeviceClass, *, source: str, now: float) -> list[Fault]:
        """A message from a device: it is alive; a battery reading may raise or clear low battery."""
        watch = self._watch.get(message.dev)
        if watch is None:
            watch = self._watch[message.dev] = _Watch(device_class, now)
        watch.last_seen = now
        watch.source = source
        out: list[Fault] = []
        if watch.offline:
            watch.offline = False
            out.append(self._fault(message.dev, m.FaultKind.OFFLINE, active=False))
        if isinstance(message, m.Battery):
            limit = self._config.for_class(watch.device_class).low_battery_pct
            if not watch.low_battery and message.level < limit:
                watch.low_battery = True
                out.append(self._fault(message.dev, m.FaultKind.LOW_BATTERY, active=True, level=message.level))
            elif watch.low_battery and message.level >= limit + self._config.battery_hysteresis_pct:
                watch.low_battery = False
                out.append(self._fault(message.dev, m.FaultKind.LOW_BATTERY, active=False, level=message.level))
        return out

    def tick(self, now: float) -> list[Fault]:
        """Devices that have just gone silent for too long."""
        late = now - self._last_tick - TICK_S
        self._last_tick = now
        if late > STALL_S:
            log.warning("supervision did not run for %.0f s; not counting that time against devices", late)
            for watch in self._watch.values():
                watch.last_seen += late
        out: list[Fault] = []
        for dev, watch in self._watch.items():
            if watch.offline or (watch.source in self._down if watch.source is not None else bool(self._down)):
                continue  # its source is down (or, never heard from, it may be behind the source that is)
            if now - watch.last_seen > self.timeout(watch.device_class):
                watch.offline = True
                out.append(self._fault(dev, m.FaultKind.OFFLINE, active=True))
        return out

    def source_down(self, source: str) -> None:
        self._down.add(source)

    def source_up(self, source: str, now: float) -> None:
        """The source is back: its devices get a full grace period before they are judged again."""
        if source not in self._down:
            return
        self._down.discard(source)
        for watch in self._watch.values():
            if watch.source in {source, None}:
                watch.last_seen = max(watch.last_seen, now)

    def active(self, dev: str, fault: m.FaultKind) -> bool:
        """Whether the supervisor holds ``fault`` raised on ``dev`` now (for faults it raises itself)."""
        watch = self._watch.get(dev)
        if watch is None:
            return False
        if fault is m.FaultKind.OFFLINE:
            return watch.offline
        return fault is m.FaultKind.LOW_BATTERY and watch.low_battery

    def offline(self) -> list[str]:
        return sorted(dev for dev, w in self._watch.items() if w.offline)
