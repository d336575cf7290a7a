"""The local command's slots go to emergencies first: a press never waits behind a backlog of faults and bed
exits (it runs over the slots when they are all taken), and what waits goes by priority."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from eldercare.devices import messages as m
from eldercare.gateway.config import LocalConfig
from eldercare.gateway.local import (
    EMERGENCY_SLOTS,
    MAX_COMMANDS,
    AlarmHub,
    CommandPriority,
    CommandSlots,
    LocalAlarm,
    command_priority,
)
from eldercare.gateway.stats import Stats

T0 = 1_763_775_000_000

# The nurse-call relay: notes the alarm when it starts; a "SLOW" device's call lasts until its gate file is there.
RELAY = """\
import json, os, sys, time
log, gates = sys.argv[1], sys.argv[2]
alarm = json.load(sys.stdin)
with open(log, "a") as out:
    out.write(f"{alarm['t']} {alarm['dev']}\\n")
if alarm["dev"].startswith("SLOW"):
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(gates, alarm["dev"])) and time.monotonic() < deadline:
        time.sleep(0.01)
"""


async def until(check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s")
        await asyncio.sleep(0.02)
    return result


def alarm(message: m.DeviceMessage) -> LocalAlarm:
    return LocalAlarm(message, m.encode(message))


def test_emergencies_never_wait_and_what_waits_goes_by_priority(tmp_path: Path) -> None:
    script, log, gates = tmp_path / "relay.py", tmp_path / "calls.log", tmp_path / "gates"
    script.write_text(RELAY)
    gates.mkdir()
    fault, low = m.FaultKind.OFFLINE, m.FaultKind.LOW_BATTERY
    # the slot kept for emergencies taken by one too, so that every slot is held
    holders: list[m.DeviceMessage] = [
        m.DeviceFault(dev=f"SLOW-{i}", ts=T0 + i, fault=fault, active=True) for i in range(MAX_COMMANDS - 1)
    ]
    holders.append(m.Button(dev=f"SLOW-{MAX_COMMANDS - 1}", ts=T0 + 9, action=m.ButtonAction.PRESS))
    queued: list[m.DeviceMessage] = [
        m.DeviceFault(dev="BT-1", ts=T0 + 10, fault=low, active=True),
        m.BedExit(dev="BS-1", ts=T0 + 11, back=False),
        m.DeviceFault(dev="BS-2", ts=T0 + 12, fault=fault, active=True),
        m.EnvAlarm(dev="WL-1", ts=T0 + 13, kind="water", active=True),
        m.BedExit(dev="BS-3", ts=T0 + 14, back=False),
        m.Sos(dev="WB-1", ts=T0 + 15),
        m.DeviceFault(dev="WR-2", ts=T0 + 16, fault=low, active=True),
        m.EnvAlarm(dev="SM-1", ts=T0 + 17, kind="smoke", active=True),
        m.Fall(dev="WR-1", ts=T0 + 18, source="wearable", confidence=0.97),
        m.Button(dev="BT-9", ts=T0 + 19, action=m.ButtonAction.PRESS),  # the last one queued
    ]
    # Emergencies, then bed exits and the leak, then faults; in the order they came within each.
    expected = [
        "sos WB-1",
        "env_alarm SM-1",
        "fall WR-1",
        "button BT-9",
        "bed_exit BS-1",
        "env_alarm WL-1",
        "bed_exit BS-3",
        "fault BT-1",
        "fault BS-2",
        "fault WR-2",
    ]

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    async def body() -> AlarmHub:
        stats = Stats()
        config = LocalConfig(command=[sys.executable, "-I", str(script), str(log), str(gates)], command_timeout_s=60)
        hub = AlarmHub(config, institution="524205024154895658", gateway="GW-1", stats=stats)
        hub.publish([alarm(x) for x in holders])
        await until(lambda: len(calls()) == MAX_COMMANDS, 10)  # every slot taken by a slow relay
        hub.publish([alarm(x) for x in queued])
        # The emergencies run at once, over the slots (before, they waited for one to free); the rest wait.
        await until(lambda: len(calls()) == MAX_COMMANDS + 4 and hub.commands_run == 4, 20)
        (gates / "SLOW-0").touch()  # one slot frees: it is kept for emergencies, the rest still wait
        await until(lambda: hub.commands_run == 5, 20)
        await asyncio.sleep(0.2)
        assert len(calls()) == MAX_COMMANDS + 4
        (gates / "SLOW-1").touch()  # a second one frees: the rest run through it
        await until(lambda: len(calls()) == MAX_COMMANDS + len(queued) and hub.commands_run == len(queued) + 2, 20)
        for i in range(2, MAX_COMMANDS):
            (gates / f"SLOW-{i}").touch()
        await hub.drain()
        assert stats.last_error is None, stats.last_error
        return hub

    hub = asyncio.run(body())
    # Before the slots went by priority, the press rang after nine other alarms; the emergencies start together.
    assert sorted(calls()[MAX_COMMANDS : MAX_COMMANDS + 4]) == sorted(expected[:4])
    assert calls()[MAX_COMMANDS + 4 :] == expected[4:]
    assert (hub.commands_run, hub.commands_failed) == (MAX_COMMANDS + len(queued), 0)


def test_the_priority_of_an_alarm_is_its_kind_and_a_clearing_waits_with_what_it_clears() -> None:
    press = m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.PRESS)
    cancel = m.Button(dev="BT-1", ts=T0 + 1, action=m.ButtonAction.CANCEL)
    assert command_priority(press) == command_priority(cancel) == CommandPriority.EMERGENCY
    for kind in ("smoke", "gas"):
        raised, cleared = (m.EnvAlarm(dev="SM-1", ts=T0, kind=kind, active=a) for a in (True, False))
        assert command_priority(raised) == command_priority(cleared) == CommandPriority.EMERGENCY
    assert command_priority(m.EnvAlarm(dev="WL-1", ts=T0, kind="water", active=True)) == CommandPriority.URGENT
    assert command_priority(m.BedExit(dev="BS-1", ts=T0, back=True)) == CommandPriority.URGENT
    for fault in m.FaultKind:
        assert (
            command_priority(m.DeviceFault(dev="BT-1", ts=T0, fault=fault, active=False)) == CommandPriority.TECHNICAL
        )


def test_a_waiter_cancelled_as_it_was_handed_a_slot_passes_it_on() -> None:
    """At shutdown waiting commands may be cancelled; a slot handed to one of them must not be lost with it."""

    async def body() -> list[str]:
        slots = CommandSlots(1)
        ran: list[str] = []

        async def wait_and_run(name: str, priority: int) -> None:
            async with slots.held(priority):
                ran.append(name)

        async with slots.held(CommandPriority.TECHNICAL):
            first = asyncio.create_task(wait_and_run("emergency", CommandPriority.EMERGENCY))
            second = asyncio.create_task(wait_and_run("fault", CommandPriority.TECHNICAL))
            gone = asyncio.create_task(wait_and_run("cancelled", CommandPriority.EMERGENCY))
            await asyncio.sleep(0)  # all three wait
            gone.cancel()  # cancelled while waiting: passed over
            await asyncio.sleep(0)
        # The slot was handed to "emergency", which is cancelled before it could run: it goes on to "fault".
        first.cancel()
        await asyncio.wait_for(second, 5)
        for task in (first, gone):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with asyncio.timeout(1):  # and the slot is free again
            async with slots.held(CommandPriority.TECHNICAL):
                ran.append("after")
        return ran

    assert asyncio.run(body()) == ["fault", "after"]


def test_a_press_runs_at_once_while_relays_hung_on_faults_hold_every_other_slot(tmp_path: Path) -> None:
    script, log, gates = tmp_path / "relay.py", tmp_path / "calls.log", tmp_path / "gates"
    script.write_text(RELAY)
    gates.mkdir()
    hung = [m.DeviceFault(dev=f"SLOW-{i}", ts=T0 + i, fault=m.FaultKind.LOW_BATTERY, active=True) for i in range(6)]

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    async def body() -> list[str]:
        config = LocalConfig(command=[sys.executable, "-I", str(script), str(log), str(gates)], command_timeout_s=60)
        hub = AlarmHub(config, institution="524205024154895658", gateway="GW-1", stats=Stats())
        hub.publish([alarm(x) for x in hung])
        await until(lambda: len(calls()) == MAX_COMMANDS - EMERGENCY_SLOTS, 10)
        await asyncio.sleep(0.2)
        assert len(calls()) == MAX_COMMANDS - EMERGENCY_SLOTS  # the other faults wait, a slot is left free
        hub.publish([alarm(m.Button(dev="BT-1", ts=T0 + 10, action=m.ButtonAction.PRESS))])
        await until(lambda: "button BT-1" in calls(), 5)  # before, it waited for a hung relay's timeout
        for x in hung:
            (gates / x.dev).touch()
        await until(lambda: hub.commands_run == len(hung) + 1, 20)
        return calls()

    ran = asyncio.run(body())
    assert ran[MAX_COMMANDS - EMERGENCY_SLOTS] == "button BT-1"
