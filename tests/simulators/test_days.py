"""Days in a world, without the platform: nights, vitals, batteries, what devices say and that it does not
depend on how simulated time is cut into turns (what makes stop and resume exact)."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date

import pytest
from tests.simulators.support import SISFALL, offline_world, small_plan

from eldercare.devices import messages as m
from eldercare.simulators.run.battery import Batteries
from eldercare.simulators.run.clock import DAY, HOUR, MINUTE, day_of_date, day_start, from_iso, local_day
from eldercare.simulators.run.devices import Devices, Note, Said
from eldercare.simulators.run.incidents import PROFILES, Happening, Incidents
from eldercare.simulators.run.life import night
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.sisfall import Recordings

START = from_iso("2026-03-10T12:00:00+08:00")


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene.of(offline_world(small_plan()))


@pytest.fixture(scope="module")
def recordings() -> Recordings:
    assert SISFALL.is_file(), f"the shared SisFall data is missing: {SISFALL}"
    return Recordings(SISFALL)


def _devices(
    scene: Scene, recordings: Recordings | None, profile: str = "busy", scripted: tuple[Happening, ...] = ()
) -> Devices:
    incidents = Incidents(scene, profile=PROFILES[profile], recordings=recordings, scripted=scripted)
    return Devices(scene, incidents, bed_sample_s=30, reference=day_start(day_of_date(date(2026, 3, 15))))


def _said(devices: Devices, begin: int, end: int, step: int) -> tuple[list[Said], list[Note]]:
    said: list[Said] = []
    notes: list[Note] = []
    t = begin
    while t < end:
        s, n = devices.window(t, min(end, t + step))
        said += s
        notes += n
        t += step
    return said, notes


def test_the_same_day_whatever_the_turns(scene: Scene, recordings: Recordings) -> None:
    """A day said in 5-minute turns, in 37-second turns, and by a fresh simulator (a resumed run): the same
    messages and the same truth, to the millisecond."""
    end = START + DAY
    elder = next(e for e in scene.elders.values() if "wearable" in e.devices)
    fall_at = START + 9 * HOUR + 5_000  # its stream starts before the turn that holds the impact
    fall = Happening(
        kind="fall",
        t=fall_at,
        until=fall_at + 5 * MINUTE,
        institution=elder.institution,
        person=elder.key,
        device=elder.devices["wearable"],
        origin="scenario:t",
        detail={
            "source": "wearable",
            "trial": "F01_SA03_R02",
            "stream_start": fall_at - recordings.impact("F01_SA03_R02") * 20,
        },
    )
    coarse = _said(_devices(scene, recordings, scripted=(fall,)), START, end, 5 * MINUTE)
    fine = _said(_devices(scene, recordings, scripted=(fall,)), START, end, 37_000)
    first_half = _said(_devices(scene, recordings, scripted=(fall,)), START, START + 9 * HOUR, 5 * MINUTE)
    second_half = _said(_devices(scene, recordings, scripted=(fall,)), START + 9 * HOUR, end, 5 * MINUTE)
    streamed = [s.message for s in coarse[0] if isinstance(s.message, m.AccelSamples) and s.message.dev == fall.device]
    around = sum(len(a.xyz) for a in streamed if fall_at - 20_000 < a.ts < fall_at + 20_000)
    assert around >= len(recordings.samples("F01_SA03_R02"))

    def key(said: list[Said]) -> list[tuple[int, str, bytes]]:
        return sorted((s.ts, s.gateway, m.encode(s.message)) for s in said)

    assert key(coarse[0]) == key(fine[0]) == key(first_half[0] + second_half[0])
    assert (
        sorted(map(repr, coarse[1])) == sorted(map(repr, fine[1])) == sorted(map(repr, first_half[1] + second_half[1]))
    )
    kinds = Counter(type(s.message).__name__ for s in coarse[0])
    assert {"BedSample", "BedExit", "Battery", "Button", "AccelSamples", "Location", "EnvReading"} <= set(kinds)


def test_nights_and_bed_exits(scene: Scene) -> None:
    devices = _devices(scene, None, profile="quiet")
    said, notes = devices.window(START, START + DAY)
    for elder in scene.elders.values():
        plan = night(scene.seed, elder.profile, local_day(START))
        body = devices.incidents.body(elder.key)
        code = elder.devices["bed_sensor"]
        exits = [s.message for s in said if isinstance(s.message, m.BedExit) and s.message.dev == code]
        samples = [s.message for s in said if isinstance(s.message, m.BedSample) and s.message.dev == code]
        assert len(samples) == DAY // (30 * 1000)
        if elder.profile.bedridden:
            assert not exits and all(x.presence for x in samples)
            continue
        assert (
            day_start(local_day(START)) + 19 * HOUR + 30 * MINUTE
            <= plan.bed_at
            <= day_start(local_day(START)) + 23 * HOUR
        )
        # in and out alternate, and every sample agrees with the last change before it
        assert all(a.back != b.back for a, b in itertools.pairwise(exits))
        for sample in samples:
            assert sample.presence == body.in_bed(sample.ts)
            if sample.presence:
                assert (
                    sample.hr is not None and 40 <= sample.hr <= 110 and sample.rr is not None and 8 <= sample.rr <= 26
                )
        trips = [n for n in notes if n.kind == "bed_exit" and n.device == code and n.detail["why"] == "toilet"]
        at_night = [t for t in plan.trips if not 6 <= (t[0] - day_start(local_day(t[0]))) / HOUR < 21]
        assert [(n.t, n.until) for n in trips] == at_night


def test_sleep_lowers_the_heart_rate(scene: Scene) -> None:
    devices = _devices(scene, None, profile="quiet")
    elder = next(e for e in scene.elders.values() if not e.profile.bedridden)
    body = devices.incidents.body(elder.key)
    plan = body.night(local_day(START))
    asleep = [
        body.vitals(t, "x")[0] for t in range(plan.bed_at + HOUR, plan.bed_at + 3 * HOUR, 60_000) if body.in_bed(t)
    ]
    awake = [body.vitals(t, "x")[0] for t in range(plan.bed_at, plan.bed_at + 15 * MINUTE, 30_000) if body.in_bed(t)]
    assert sum(asleep) / len(asleep) < sum(awake) / len(awake) - 4


def test_batteries_drain_and_are_recharged(scene: Scene) -> None:
    batteries = Batteries(seed=scene.seed, reference=START)
    wearable = next(d for d in scene.devices.values() if d.kind == "wearable")
    morning = day_start(local_day(START) + 1) + 7 * HOUR
    levels = [batteries.level(wearable.code, "wearable", morning + h * HOUR) for h in range(0, 14)]
    assert levels == sorted(levels, reverse=True) and levels[0] - levels[-1] > 30
    button = next(d for d in scene.devices.values() if d.kind == "button")
    assert batteries.level(button.code, "button", START) > batteries.level(button.code, "button", START + 30 * DAY)
    assert batteries.level("FR-X", "fall_radar", START) == 100.0


def test_injected_happenings_reach_their_devices(scene: Scene, recordings: Recordings) -> None:
    elder = next(e for e in scene.elders.values() if "wearable" in e.devices)
    inst = elder.institution
    fall_at = START + 2 * HOUR
    trial = "F01_SA03_R02"
    impact = recordings.impact(trial)
    scripted = (
        Happening(
            kind="fall",
            t=fall_at,
            until=fall_at + 10 * MINUTE,
            institution=inst,
            person=elder.key,
            device=elder.devices["wearable"],
            detail={"source": "wearable", "trial": trial, "stream_start": fall_at - impact * 20},
        ),
        Happening(
            kind="press",
            t=START + HOUR,
            until=START + HOUR + 8000,
            institution=inst,
            person=elder.key,
            device=elder.devices["button"],
            detail={"accidental": True},
        ),
        Happening(
            kind="silent",
            t=START + 3 * HOUR,
            until=START + 5 * HOUR,
            institution=inst,
            device=elder.devices["bed_sensor"],
        ),
        Happening(kind="hospital", t=START + 6 * HOUR, until=START + 30 * HOUR, institution=inst, person=elder.key),
    )
    said, _ = _devices(scene, recordings, profile="quiet", scripted=scripted).window(START, START + DAY)
    accel = [s.message for s in said if isinstance(s.message, m.AccelSamples)]
    assert sum(len(a.xyz) for a in accel) == len(recordings.samples(trial))
    assert min(a.ts for a in accel) == fall_at - impact * 20
    presses = [s.message for s in said if isinstance(s.message, m.Button)]
    assert [(p.ts, p.action) for p in presses] == [(START + HOUR, "press"), (START + HOUR + 8000, "cancel")]
    bed = [s.message for s in said if s.message.dev == elder.devices["bed_sensor"]]
    assert not [x for x in bed if START + 3 * HOUR <= x.ts < START + 5 * HOUR], "silent"
    in_hospital = [x for x in bed if isinstance(x, m.BedSample) and START + 6 * HOUR <= x.ts < START + 24 * HOUR]
    assert in_hospital and not any(x.presence for x in in_hospital)


def test_a_run_that_stops_for_good_sends_what_its_devices_still_owe(scene: Scene) -> None:
    """``owed(end)``: for every bed whose resident is out of bed at ``end``, the return to bed the next
    window would have sent (same time, same message), and nothing for the others; a press still being pressed
    gets its cancel. Checked at ends all through a day, early mornings included (the demo's month ends at 06:00,
    when residents are getting up)."""
    end0 = START + DAY
    press = Happening(
        kind="press", t=end0 + 23 * MINUTE - 20_000, until=end0 + 23 * MINUTE + 40_000,
        institution=next(iter(scene.elders.values())).institution, person=None,
        device=next(d.code for d in scene.devices.values() if d.kind == "button"), origin="scenario:p",
    )  # fmt: skip
    devices = _devices(scene, None, profile="quiet", scripted=(press,))
    until, button = end0 + 23 * MINUTE + 40_000, str(press.device)
    seen_out = pressed = 0
    told, _ = devices.window(end0, end0 + 2 * DAY)  # what devices say does not depend on the turns (above)
    for end in range(end0, end0 + DAY, 23 * MINUTE):
        owed = devices.owed(end)
        assert all(s.ts >= end for s in owed)
        later = [s for s in told if end <= s.ts < end + DAY]
        for device in (d for d in scene.devices.values() if d.kind == "bed_sensor" and d.bed is not None):
            person = next((e for e in scene.elders.values() if e.bed == device.bed), None)
            mine = [s.message for s in owed if s.message.dev == device.code]
            if person is None:
                assert mine == []
                continue
            body = devices.incidents.body(person.key)
            returns = [s.message for s in later if isinstance(s.message, m.BedExit) and s.message.dev == device.code]
            if body.in_bed(end) or not returns or not returns[0].back:
                assert mine == [], (end, device.code)
            else:
                seen_out += 1
                assert mine == [returns[0]], (end, device.code)
        cancels = [s.message for s in owed if isinstance(s.message, m.Button)]
        pressing = press.t < end <= until
        pressed += pressing
        assert cancels == ([m.Button(dev=button, ts=until, action=m.ButtonAction.CANCEL)] if pressing else [])
    assert seen_out > 0 and pressed == 1  # the day had residents out of bed at some of the ends
