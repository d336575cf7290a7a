"""Direct mode's supervision on the simulated clock raises and clears a low battery with the level read, as the
gateway's does."""

from __future__ import annotations

from eldercare.devices import messages as m
from eldercare.simulators.run.scene import Device
from eldercare.simulators.run.supervise import Supervision

T0 = 1_763_775_000_000


def test_a_low_battery_carries_the_level_read() -> None:
    button = Device(
        code="BTN-1",
        kind="button",
        vendor="contract",
        institution="I",
        gateway="GW-1",
        bed=None,
        person=None,
        heartbeat_s=300,
        battery=True,
    )
    s = Supervision([button], start=T0, bed_sample_s=60)

    def battery(level: int, at: int) -> list[tuple[m.FaultKind, bool, int | None]]:
        return [(f.fault, f.active, f.level) for f in s.observe(m.Battery(dev="BTN-1", ts=at, level=level))]

    assert battery(40, T0 + 1000) == []
    assert battery(19, T0 + 2000) == [(m.FaultKind.LOW_BATTERY, True, 19)]
    assert battery(5, T0 + 3000) == []
    assert battery(24, T0 + 4000) == []  # not yet at 25 %
    assert battery(25, T0 + 5000) == [(m.FaultKind.LOW_BATTERY, False, 25)]
    [offline] = s.tick(T0 + 5000 + 2 * 300_000 + 30_001)
    assert (offline.fault, offline.active, offline.level) == (m.FaultKind.OFFLINE, True, None)
