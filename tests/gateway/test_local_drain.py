"""The local command at its limits: an emergency never waits for a command to end, even with every slot taken;
at shutdown each command running is given its own time, and those still waiting for a slot are not started
(see :mod:`eldercare.gateway.local`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from tests.gateway.test_local_priority import until

from eldercare.devices import messages as m
from eldercare.gateway import local
from eldercare.gateway.config import LocalConfig
from eldercare.gateway.local import MAX_COMMANDS, AlarmHub, CommandPriority, CommandSlots, LocalAlarm
from eldercare.gateway.stats import Stats

T0 = 1_763_775_000_000

# The nurse-call relay: notes when a call starts and ends; a "SLOW" device's call lasts until its gate file is
# there, any other's the seconds it is given. A test that fails before it opens the gates leaves no relay behind:
# one ends after 60 s, or once the test's folder is gone.
RELAY = """\
line=$(cat)
dev=$(printf '%s\\n' "$line" | sed -e 's/.*"dev": *"\\([^"]*\\)".*/\\1/')
echo "start $dev" >> "$1"
case "$dev" in
    SLOW*) n=0; while [ -d "$3" ] && [ ! -e "$3/$dev" ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done ;;
    *) sleep "$2" ;;
esac
echo "end $dev" >> "$1"
"""


class Relay:
    def __init__(self, folder: Path, *, seconds: float) -> None:
        self.script, self.log, self.gates = folder / "relay.sh", folder / "calls.log", folder / "gates"
        self.script.write_text(RELAY)
        self.gates.mkdir()
        self.command = ["/bin/sh", str(self.script), str(self.log), str(seconds), str(self.gates)]

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def started(self) -> list[str]:
        return [c.removeprefix("start ") for c in self.calls() if c.startswith("start ")]

    def ended(self) -> list[str]:
        return [c.removeprefix("end ") for c in self.calls() if c.startswith("end ")]

    def open_gates(self) -> None:
        for dev in self.started():
            (self.gates / dev).touch()


def hub_for(relay: Relay, *, timeout_s: float, stats: Stats | None = None) -> AlarmHub:
    config = LocalConfig(command=relay.command, command_timeout_s=timeout_s)
    return AlarmHub(config, institution="524205024154895658", gateway="GW-1", stats=stats or Stats())


def alarms(*messages: m.DeviceMessage) -> list[LocalAlarm]:
    return [LocalAlarm(x, m.encode(x)) for x in messages]


def press(dev: str, n: int = 0) -> m.Button:
    return m.Button(dev=dev, ts=T0 + n, action=m.ButtonAction.PRESS)


def fault(dev: str, n: int = 0) -> m.DeviceFault:
    return m.DeviceFault(dev=dev, ts=T0 + n, fault=m.FaultKind.LOW_BATTERY, active=True)


def test_a_press_runs_at_once_while_every_slot_is_held_the_last_by_an_emergency(tmp_path: Path) -> None:
    relay = Relay(tmp_path, seconds=0)

    async def body() -> AlarmHub:
        hub = hub_for(relay, timeout_s=60)
        hub.publish(alarms(*(fault(f"SLOW-{i}", i) for i in range(MAX_COMMANDS - 1)), press("SLOW-P", 9)))
        await until(lambda: len(relay.started()) == MAX_COMMANDS, 10)  # every slot taken by a relay that hangs
        hub.publish(alarms(fault("BT-5", 10), press("BT-9", 11)))
        await until(lambda: "BT-9" in relay.ended(), 5)  # before, it waited for one of them to end
        await asyncio.sleep(0.2)
        assert "BT-5" not in relay.started(), "a fault still waits for a slot"
        relay.open_gates()
        await until(lambda: hub.commands_run == MAX_COMMANDS + 2, 20)
        await hub.drain()
        return hub

    hub = asyncio.run(body())
    assert relay.started()[MAX_COMMANDS:] == ["BT-9", "BT-5"]
    assert hub.commands_failed == 0


def test_emergencies_over_the_slots_are_bounded_and_the_next_waits_first_in_line() -> None:
    async def body() -> list[str]:
        slots = CommandSlots(1, over=1)
        ran: list[str] = []
        release: dict[str, asyncio.Event] = {}

        async def hold(name: str, priority: int) -> None:
            release[name] = asyncio.Event()
            async with slots.held(priority):
                ran.append(name)
                await release[name].wait()

        tasks = [asyncio.create_task(hold("fault", CommandPriority.TECHNICAL))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold("press 1", CommandPriority.EMERGENCY)))  # over the slot
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold("bed exit", CommandPriority.URGENT)))  # waits for the slot
        tasks.append(asyncio.create_task(hold("press 2", CommandPriority.EMERGENCY)))  # past the bound: waits
        await asyncio.sleep(0.05)
        assert ran == ["fault", "press 1"]
        release["press 1"].set()  # its leave goes to the press waiting, not to the bed exit
        await until(lambda: ran == ["fault", "press 1", "press 2"], 1)
        release["fault"].set()
        await until(lambda: ran[-1] == "bed exit", 1)
        for event in release.values():
            event.set()
        await asyncio.gather(*tasks)
        async with asyncio.timeout(1):  # nothing lost on the way: the slot and the leave are free again
            async with slots.held(CommandPriority.TECHNICAL), slots.held(CommandPriority.EMERGENCY):
                ran.append("after")
        return ran

    assert asyncio.run(body()) == ["fault", "press 1", "press 2", "bed exit", "after"]


def test_a_leave_to_run_over_the_slots_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    async def body() -> list[str]:
        slots = CommandSlots(1, over=1)
        ran: list[str] = []

        async def wait_and_run(name: str) -> None:
            async with slots.held(CommandPriority.EMERGENCY):
                ran.append(name)

        async with slots.held(CommandPriority.TECHNICAL), slots.held(CommandPriority.EMERGENCY):  # over the slot
            first, second, third = (asyncio.create_task(wait_and_run(n)) for n in ("first", "second", "third"))
            await asyncio.sleep(0)  # all three wait
        # The press over the slot left first: its leave went to "first", the slot then to "second"; "first" is
        # cancelled before it could run, and its leave goes on to "third".
        first.cancel()
        await asyncio.wait_for(asyncio.gather(second, third), 5)
        with contextlib.suppress(asyncio.CancelledError):
            await first
        return ran

    assert sorted(asyncio.run(body())) == ["second", "third"]


def test_at_shutdown_a_command_that_starts_late_is_given_its_own_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six presses with room for five at once: the sixth starts when the first ends, 2.5 s in, and takes 2.5 s
    of its 4. Before, drain waited 4 s in all and returned with it still ringing (killed with the event loop)."""
    monkeypatch.setattr(local, "EMERGENCIES_OVER", 1)
    relay = Relay(tmp_path, seconds=2.5)
    stats = Stats()

    async def body() -> tuple[AlarmHub, float]:
        hub = hub_for(relay, timeout_s=4, stats=stats)
        hub.publish(alarms(*(press(f"BT-{i}", i) for i in range(MAX_COMMANDS + 2))))
        await until(lambda: len(relay.started()) == MAX_COMMANDS + 1, 5)
        started = time.monotonic()
        await hub.drain()
        return hub, time.monotonic() - started

    hub, took = asyncio.run(body())
    assert sorted(relay.ended()) == [f"BT-{i}" for i in range(MAX_COMMANDS + 2)], relay.calls()
    assert (hub.commands_run, hub.commands_failed) == (MAX_COMMANDS + 2, 0), stats.last_error
    assert took < 8, took


def test_at_shutdown_alarms_waiting_for_a_slot_are_not_started_but_emergencies(tmp_path: Path) -> None:
    """Three faults ringing (every slot but the one kept for emergencies), two more waiting, and a press: the
    press rings, the two faults are not started (before, they started as the first ended, and drain returned while
    they rang, leaving them to be cancelled with the event loop)."""
    relay = Relay(tmp_path, seconds=1.5)
    stats = Stats()

    async def body() -> AlarmHub:
        hub = hub_for(relay, timeout_s=3, stats=stats)
        hub.publish(alarms(*(fault(f"WR-{i}", i) for i in range(MAX_COMMANDS + 1))))
        await until(lambda: len(relay.started()) == MAX_COMMANDS - 1, 5)
        hub.publish(alarms(press("BT-1", 9)))
        await until(lambda: "BT-1" in relay.started(), 5)
        await hub.drain()
        assert not hub._tasks
        return hub

    hub = asyncio.run(body())
    assert sorted(relay.ended()) == ["BT-1", "WR-0", "WR-1", "WR-2"], relay.calls()
    assert sorted(relay.started()) == ["BT-1", "WR-0", "WR-1", "WR-2"], "the waiting faults are not started"
    assert (hub.commands_run, hub.commands_failed) == (MAX_COMMANDS, 2)
    assert stats.last_error is not None and "2 alarm(s) waiting were not run" in stats.last_error
