"""Device supervision: one offline event, one low-battery event, both cleared; no storm after outages."""

from __future__ import annotations

from eldercare.devices import messages as m
from eldercare.gateway.config import DeviceClass, DevicesConfig, SupervisionConfig
from eldercare.gateway.supervision import DeviceBook, Supervisor

T0 = 1_763_775_000_000
CONFIG = SupervisionConfig.model_validate(
    {
        "margin_s": 5,
        "classes": {"bed_sensor": {"heartbeat_s": 10}, "button": {"heartbeat_s": 100, "low_battery_pct": 20}},
    }
)


def supervisor(
    devices: dict[str, DeviceClass], *, now: float = 0.0, active: set[tuple[str, str]] | None = None
) -> Supervisor:
    return Supervisor(config=CONFIG, devices=devices, active=active or set(), now=now, clock_ms=lambda: T0)


def run(s: Supervisor, start: float, end: float) -> list[m.DeviceFault]:
    """Tick once a second from ``start`` to ``end``; all the faults raised."""
    out: list[m.DeviceFault] = []
    t = start
    while t <= end:
        out += s.tick(t)
        t += 1.0
    return out


def bed(dev: str = "BS-1") -> m.BedSample:
    return m.BedSample(dev=dev, ts=T0, presence=True)


def test_a_silent_device_raises_one_offline_event_and_clears_when_back() -> None:
    s = supervisor({"BS-1": DeviceClass.BED_SENSOR, "BT-1": DeviceClass.BUTTON})
    assert s.timeout(DeviceClass.BED_SENSOR) == 25  # 2 heartbeats + margin
    assert run(s, 1, 25) == []
    raised = run(s, 26, 200)
    assert [(f.dev, f.fault, f.active) for f in raised] == [("BS-1", m.FaultKind.OFFLINE, True)]  # once
    cleared = s.observe(bed(), DeviceClass.BED_SENSOR, source="home", now=201)
    assert [(f.dev, f.fault, f.active) for f in cleared] == [("BS-1", m.FaultKind.OFFLINE, False)]
    assert s.observe(bed(), DeviceClass.BED_SENSOR, source="home", now=202) == []
    assert [f.dev for f in run(s, 203, 400)] == ["BT-1", "BS-1"]  # the button after 205 s, the bed again later


def test_low_battery_raises_once_and_clears_with_hysteresis() -> None:
    s = supervisor({"BT-1": DeviceClass.BUTTON})

    def battery(level: int, now: float) -> list[tuple[m.FaultKind, bool]]:
        msg = m.Battery(dev="BT-1", ts=T0, level=level)
        return [(f.fault, f.active) for f in s.observe(msg, DeviceClass.BUTTON, source="lan", now=now)]

    assert battery(30, 1) == []
    assert battery(19, 2) == [(m.FaultKind.LOW_BATTERY, True)]
    assert battery(15, 3) == []
    assert battery(22, 4) == []  # above 20, not yet above 20 + 5
    assert battery(25, 5) == [(m.FaultKind.LOW_BATTERY, False)]
    assert battery(25, 6) == []


def test_a_low_battery_fault_carries_the_level_that_raised_or_cleared_it() -> None:
    """Staff see how low: the fault carries the reading's level; an offline fault carries none."""
    s = supervisor({"BT-1": DeviceClass.BUTTON})

    def battery(level: int, now: float) -> list[tuple[m.FaultKind, bool, int | None]]:
        msg = m.Battery(dev="BT-1", ts=T0, level=level)
        return [(f.fault, f.active, f.level) for f in s.observe(msg, DeviceClass.BUTTON, source="lan", now=now)]

    assert battery(12, 1) == [(m.FaultKind.LOW_BATTERY, True, 12)]
    assert battery(3, 2) == []  # raised once: lower still is not a new fault
    assert battery(27, 3) == [(m.FaultKind.LOW_BATTERY, False, 27)]
    [offline] = run(s, 4, 300)
    assert (offline.fault, offline.active, offline.level) == (m.FaultKind.OFFLINE, True, None)
    back = s.observe(m.Battery(dev="BT-1", ts=T0, level=0), DeviceClass.BUTTON, source="lan", now=301)
    assert [(f.fault, f.active, f.level) for f in back] == [
        (m.FaultKind.OFFLINE, False, None),
        (m.FaultKind.LOW_BATTERY, True, 0),
    ]


def test_after_a_restart_devices_get_a_grace_period_and_known_faults_are_not_repeated() -> None:
    devices = {"BS-1": DeviceClass.BED_SENSOR, "BS-2": DeviceClass.BED_SENSOR}
    # BS-2 was already offline before the restart (kept in the store).
    s = supervisor(devices, now=1000.0, active={("BS-2", "offline")})
    assert run(s, 1001, 1025) == []  # full grace from the start, whatever happened before
    assert [f.dev for f in run(s, 1026, 1100)] == ["BS-1"]  # BS-2's fault is not raised twice
    back = s.observe(bed("BS-2"), DeviceClass.BED_SENSOR, source="home", now=1101)
    assert [(f.dev, f.active) for f in back] == [("BS-2", False)]  # and it is cleared when it comes back


def test_a_source_outage_is_not_one_alarm_per_device() -> None:
    devices = {f"BS-{i}": DeviceClass.BED_SENSOR for i in range(50)}
    s = supervisor(devices)
    for dev in devices:
        s.observe(bed(dev), DeviceClass.BED_SENSOR, source="home", now=1)
    s.source_down("home")
    assert run(s, 2, 300) == []  # the home broker is down for 5 minutes: nobody is judged
    s.source_up("home", 300)
    assert run(s, 301, 325) == []  # and everyone gets a full grace period
    for dev in list(devices)[1:]:
        s.observe(bed(dev), DeviceClass.BED_SENSOR, source="home", now=326)
    assert [f.dev for f in run(s, 326, 350)] == ["BS-0"]  # only the one that really stays silent


def test_time_the_gateway_did_not_run_is_not_counted() -> None:
    s = supervisor({"BS-1": DeviceClass.BED_SENSOR})
    s.observe(bed(), DeviceClass.BED_SENSOR, source="home", now=0)
    assert s.tick(1) == []
    assert s.tick(3601) == []  # the process was suspended for an hour
    assert run(s, 3602, 3620) == []
    assert [f.dev for f in run(s, 3621, 3700)] == ["BS-1"]


def test_the_device_book() -> None:
    fixed = DeviceBook(DevicesConfig.model_validate({"known": [{"code": "BS-1", "class": "bed_sensor"}]}), {})
    assert fixed.resolve(bed(), None) == (DeviceClass.BED_SENSOR, False)
    assert fixed.resolve(bed("BS-9"), None) == (None, False)
    auto = DeviceBook(DevicesConfig(auto_discover=True), {"WR-1": "wearable"})
    assert auto.resolve(m.Battery(dev="WR-1", ts=T0, level=50), None) == (DeviceClass.WEARABLE, False)
    assert auto.resolve(m.Battery(dev="XX-1", ts=T0, level=50), None) == (None, False)  # what is it? wait
    assert auto.resolve(m.Button(dev="XX-1", ts=T0, action=m.ButtonAction.PRESS), None) == (DeviceClass.BUTTON, True)
    assert auto.resolve(m.EnvAlarm(dev="GS-1", ts=T0, kind="gas", active=True), None) == (DeviceClass.GAS, True)
    assert auto.resolve(m.Battery(dev="XX-1", ts=T0, level=50), None) == (DeviceClass.BUTTON, False)
