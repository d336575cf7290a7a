"""What each simulated device says in a stretch of simulated time, as contract messages with their times.

- bed sensor: a sample every ``bed_sample_s`` (presence; heart rate, breathing and movement when someone is
  in bed) and a bed exit / return at every change of presence;
- call button: a keep-alive with its battery at 0.8 of its heartbeat (16 min); presses and the bedside
  cancel of ``press``;
- fall radar (mains): a keep-alive (100 %) at 0.8 of its heartbeat; a fall of ``fall`` with source radar;
- wearable: a keep-alive at 0.8 of its heartbeat; while its wearer moves (``activity``) or falls, the
  replayed SisFall samples in chunks of 0.5 s (the gateway, or in direct mode the same detector in-process,
  decides falls);
- wristband: a position every 300 s (every 30 s while away) near the home, along an out-and-back path while
  its wearer wanders (``wander``); its battery at 0.8 of its heartbeat;
- smoke sensor: a reading every 1200 s (every 30 s during ``smoke``), its own alarm raised above 5 % and
  cleared below; its battery at 0.8 of its heartbeat.

A device silent (``silent``, or a worn device whose battery is empty) says nothing. Each periodic message
has a phase of its own (from the device code), so devices do not all speak at the same instant.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from eldercare.devices import messages as m
from eldercare.simulators.run import noise
from eldercare.simulators.run.battery import Batteries
from eldercare.simulators.run.clock import DAY, HOUR, SECOND, day_start, iso, local_day
from eldercare.simulators.run.incidents import FOREVER, Happening, Incidents
from eldercare.simulators.run.life import night_of
from eldercare.simulators.run.scene import Device, Scene
from eldercare.simulators.run.sisfall import Recordings
from eldercare.simulators.world.regions import offset

SMOKE_ALARM_PCT = 5.0
LOW_BATTERY_PCT = 20.0  # the gateway's default threshold


@dataclass(frozen=True, slots=True)
class Said:
    """One message a device sends, and through which gateway, in which vendor's format."""

    ts: int
    gateway: str
    vendor: str
    message: m.DeviceMessage


@dataclass(frozen=True, slots=True)
class Note:
    """Something that happened in ordinary life or to a device by itself (a night's sleep, a bed exit, a battery
    running low), for the ground truth."""

    t: int
    kind: str
    device: str
    detail: dict[str, Any]
    until: int | None = None
    person: str | None = None


def _presses(code: str, own: list[Happening], begin: int, end: int) -> list[tuple[int, m.DeviceMessage]]:
    out: list[tuple[int, m.DeviceMessage]] = []
    for h in own:
        if h.kind != "press":
            continue
        if begin <= h.t < end:
            out.append((h.t, m.Button(dev=code, ts=h.t, action=m.ButtonAction.PRESS)))
        if h.until is not None and begin <= h.until < end:
            out.append((h.until, m.Button(dev=code, ts=h.until, action=m.ButtonAction.CANCEL)))
    return out


def _radar_falls(code: str, own: list[Happening], begin: int, end: int) -> list[tuple[int, m.DeviceMessage]]:
    return [
        (h.t, m.Fall(dev=code, ts=h.t, source="radar", confidence=float(h.detail.get("confidence", 0.9))))
        for h in own
        if h.kind == "fall" and begin <= h.t < end
    ]


def _keepalive(device: Device) -> int:
    """A battery device (and a radar) reports its battery at 0.8 of its heartbeat, so it is never late."""
    return int(0.8 * device.heartbeat_s) * SECOND


def _ticks(code: str, period: int, begin: int, end: int) -> range:
    """Multiples of ``period`` shifted by the device's phase, in [begin, end)."""
    phase = int(noise.unit(code, "phase", period) * period)
    first = begin + (phase - begin) % period
    return range(first, end, period)


class Devices:
    def __init__(self, scene: Scene, incidents: Incidents, *, bed_sample_s: float, reference: int) -> None:
        self.scene = scene
        self.incidents = incidents
        self.recordings: Recordings | None = incidents.recordings
        self.batteries = Batteries(seed=scene.seed, reference=reference)
        self.bed_sample = int(bed_sample_s * SECOND)
        self._occupant = {}
        for elder in scene.elders.values():
            if elder.bed is not None:
                self._occupant[elder.bed] = elder.key

    def window(self, begin: int, end: int) -> tuple[list[Said], list[Note]]:
        """Every message of every device with a time in [begin, end), in time order."""
        # A minute ahead too: a fall's accelerometer stream starts some seconds before the impact.
        happenings = self.incidents.between(begin - 2 * 60_000, end + 60_000)
        by_device: dict[str, list[Happening]] = defaultdict(list)
        for h in happenings:
            if h.device is not None:
                by_device[h.device].append(h)
        said: list[Said] = []
        notes: list[Note] = []
        for device in self.scene.devices.values():
            own = by_device.get(device.code, [])
            silent = [(h.t, h.until or FOREVER) for h in own if h.kind == "silent"]
            scripted = any(h.origin != "random" for h in own)
            out: list[tuple[int, m.DeviceMessage]] = []
            self._emit(device, own, begin=begin, end=end, out=out, notes=notes)
            if device.battery:
                self._battery(device, begin, end, out, notes)
            for ts, message in out:
                if any(s0 <= ts < s1 for s0, s1 in silent):
                    continue
                if device.kind in ("wearable", "wristband") and self._empty(device, ts) and not scripted:
                    continue  # a scenario's device works: its target is charged
                said.append(Said(ts, device.gateway, device.vendor, message))
        said.sort(key=lambda s: s.ts)
        return said, notes

    def owed(self, end: int) -> list[Said]:
        """What devices still owe at ``end`` for what began before it, with their own (later) times: the return
        to bed of a resident out of bed at ``end`` (within a day) and the bedside cancel of a press still being
        pressed. A run that stops for good at ``end`` and is followed by another time (the demo's month, then
        today) sends them, so that no one is left out of bed, or calling, for ever in the platform's eyes."""
        owed: list[Said] = []
        happenings = self.incidents.between(end - DAY, end + DAY)
        for device in self.scene.devices.values():
            own = [h for h in happenings if h.device == device.code]
            out: list[tuple[int, m.DeviceMessage]] = []
            if device.kind == "button":
                out.extend(
                    (h.until, m.Button(dev=device.code, ts=h.until, action=m.ButtonAction.CANCEL))
                    for h in own
                    if h.kind == "press" and h.t < end and h.until is not None and h.until >= end
                )
            person = self._occupant.get(device.bed or "") if device.kind == "bed_sensor" else None
            if person is not None:
                body = self.incidents.body(person)
                before = body.changes(end - DAY, end)
                if before and not before[-1][1]:  # the last change before the end was leaving the bed
                    back = next((t for t, b in body.changes(end, end + DAY) if b), None)
                    if back is not None:
                        out.append((back, m.BedExit(dev=device.code, ts=back, back=True)))
            silent = [(h.t, h.until or FOREVER) for h in own if h.kind == "silent"]
            owed.extend(
                Said(ts, device.gateway, device.vendor, message)
                for ts, message in out
                if not any(s0 <= ts < s1 for s0, s1 in silent)
            )
        owed.sort(key=lambda s: s.ts)
        return owed

    def _empty(self, device: Device, ts: int) -> bool:
        return self.batteries.level(device.code, device.kind, ts) <= 0.0

    def _emit(
        self,
        device: Device,
        own: list[Happening],
        *,
        begin: int,
        end: int,
        out: list[tuple[int, m.DeviceMessage]],
        notes: list[Note],
    ) -> None:
        match device.kind:
            case "bed_sensor":
                self._bed(device, begin, end, out, notes)
            case "button":
                out.extend(_presses(device.code, own, begin, end))
            case "fall_radar":
                code = device.code
                out.extend(
                    (t, m.Battery(dev=code, ts=t, level=100)) for t in _ticks(code, _keepalive(device), begin, end)
                )
                out.extend(_radar_falls(code, own, begin, end))
            case "wearable":
                self._accel(device, own, begin, end, out)
            case "wristband":
                self._wristband(device, own, begin, end, out)
            case "smoke":
                self._smoke(device, own, begin, end, out)

    def _bed(
        self, device: Device, begin: int, end: int, out: list[tuple[int, m.DeviceMessage]], notes: list[Note]
    ) -> None:
        code = device.code
        person = self._occupant.get(device.bed or "")
        body = self.incidents.body(person) if person is not None else None
        for ts in _ticks(code, self.bed_sample, begin, end):
            if body is not None and body.in_bed(ts):
                hr, rr, move = body.vitals(ts, code)
                out.append((ts, m.BedSample(dev=code, ts=ts, presence=True, hr=hr, rr=rr, move=move)))
            else:
                out.append((ts, m.BedSample(dev=code, ts=ts, presence=False)))
        if body is None or person is None:
            return
        changes = body.changes(begin, end + DAY)  # returns after the window are needed for the exits' ends
        for i, (ts, back) in enumerate(changes):
            if ts >= end:
                break
            out.append((ts, m.BedExit(dev=code, ts=ts, back=back)))
            local = (ts - day_start(local_day(ts))) / HOUR
            if not back and (local >= 21 or local < 6):
                until = next((t for t, b in changes[i + 1 :] if b), None)
                plan = body.night(night_of(ts))
                why = "toilet" if any(t0 == ts for t0, _ in plan.trips) else "up" if ts == plan.up_at else "other"
                notes.append(Note(ts, "bed_exit", code, {"night": True, "why": why}, until=until, person=person))
        for n in range(night_of(begin), night_of(end - 1) + 1):
            plan = body.night(n)
            if begin <= plan.bed_at < end and not body.profile.bedridden:
                detail: dict[str, Any] = {"toilet_trips": len(plan.trips)}
                if plan.nap is not None:
                    detail["nap_time"], detail["nap_until"] = iso(plan.nap[0]), iso(plan.nap[1])
                notes.append(Note(plan.bed_at, "sleep", code, detail, until=plan.up_at, person=person))

    def _battery(
        self, device: Device, begin: int, end: int, out: list[tuple[int, m.DeviceMessage]], notes: list[Note]
    ) -> None:
        period = _keepalive(device)
        for ts in _ticks(device.code, period, begin, end):
            level = self.batteries.level(device.code, device.kind, ts)
            before = self.batteries.level(device.code, device.kind, ts - period)
            if level < LOW_BATTERY_PCT <= before:
                notes.append(Note(ts, "battery_low", device.code, {"level": round(level, 1)}))
            if before > 0 >= level:
                notes.append(Note(ts, "battery_empty", device.code, {"level": 0.0}))
            if level > 0:
                out.append((ts, m.Battery(dev=device.code, ts=ts, level=max(0, min(100, int(level))))))

    def _accel(
        self, device: Device, own: list[Happening], begin: int, end: int, out: list[tuple[int, m.DeviceMessage]]
    ) -> None:
        if self.recordings is None:
            return
        for h in own:
            if h.kind not in ("fall", "activity") or "trial" not in h.detail:
                continue
            start = int(h.detail.get("stream_start", h.t))
            for ts, samples in self.recordings.chunks(str(h.detail["trial"]), start):
                if begin <= ts < end:
                    out.append((ts, m.AccelSamples(dev=device.code, ts=ts, hz=50, xyz=samples)))

    def _home(self, device: Device) -> tuple[float, float]:
        elder = self.scene.elders.get(device.person or "")
        if elder is not None:
            return elder.home
        inst = self.scene.institution(device.institution)
        return inst.lon, inst.lat

    def _wristband(
        self, device: Device, own: list[Happening], begin: int, end: int, out: list[tuple[int, m.DeviceMessage]]
    ) -> None:
        code = device.code
        lon0, lat0 = self._home(device)
        walks = [h for h in own if h.kind == "wander"]
        times = set(_ticks(code, 300 * SECOND, begin, end))
        for h in walks:
            times.update(t for t in _ticks(code, 30 * SECOND, max(begin, h.t), min(end, h.until or end)))
        for ts in sorted(times):
            east = 20 * (noise.unit(code, ts, "e") - 0.5)
            north = 20 * (noise.unit(code, ts, "n") - 0.5)
            for h in walks:
                if h.t <= ts < (h.until or h.t):
                    phase = (ts - h.t) / max(1, (h.until or h.t) - h.t)
                    away = float(h.detail["distance_m"]) * (phase / 0.4 if phase < 0.4 else (1 - phase) / 0.6)
                    angle = math.radians(float(h.detail["bearing_deg"]))
                    east += away * math.sin(angle)
                    north += away * math.cos(angle)
            lon, lat = offset(lon0, lat0, east_m=east, north_m=north)
            acc = round(5 + 10 * noise.unit(code, ts, "acc"), 1)
            out.append((ts, m.Location(dev=code, ts=ts, lat=round(lat, 6), lon=round(lon, 6), acc=acc)))

    def _smoke(
        self, device: Device, own: list[Happening], begin: int, end: int, out: list[tuple[int, m.DeviceMessage]]
    ) -> None:
        code = device.code
        fires = [h for h in own if h.kind == "smoke"]
        for ts in _smoke_times(code, fires, begin, end):
            value = _smoke_value(code, fires, ts)
            out.append((ts, m.EnvReading(dev=code, ts=ts, kind="smoke", value=value)))
            before = _smoke_times(code, fires, ts - 1200 * SECOND, ts)
            was_active = bool(before) and _smoke_value(code, fires, before[-1]) > SMOKE_ALARM_PCT
            if (value > SMOKE_ALARM_PCT) != was_active:
                out.append((ts, m.EnvAlarm(dev=code, ts=ts, kind="smoke", active=value > SMOKE_ALARM_PCT)))


def _smoke_times(code: str, fires: list[Happening], begin: int, end: int) -> list[int]:
    """Readings every 1200 s, and every 30 s from the start of a smoke until a minute after its end."""
    times = set(_ticks(code, 1200 * SECOND, begin, end))
    for h in fires:
        times.update(_ticks(code, 30 * SECOND, max(begin, h.t), min(end, (h.until or h.t) + 60 * SECOND)))
    return sorted(times)


def _smoke_value(code: str, fires: list[Happening], ts: int) -> float:
    """Obscuration (%) at ``ts``: a little noise, or the rise and fall of a smoke (peak at 30 % of it)."""
    for h in fires:
        if h.t <= ts < (h.until or h.t):
            phase = (ts - h.t) / max(1, (h.until or h.t) - h.t)
            return round(float(h.detail["peak_pct"]) * (phase / 0.3 if phase < 0.3 else (1 - phase) / 0.7), 2)
    return round(0.3 * noise.unit(code, ts, "smoke"), 2)
