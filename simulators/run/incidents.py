"""Happenings: what is injected into the simulated world, by chance (per home and day) or by a scenario.

Rates per elder and day at multiplier 1 (``--incidents normal``), chosen to match what homes report:
call-button presses 1/12 (cancelled at the bedside by the carer 1-10 min later) and accidental presses 1/25
(cancelled within 3-30 s), four in five between 07:00 and 21:30; falls 1.6 a year at high fall risk, 0.8 at
medium, 0.3 at low (about 1.5 falls per bed and year in nursing homes; bedridden elders x0.2), half of them on
night toilet trips; a wander-risk elder with a wristband walks off about once a month (20-90 min, 300-1500 m);
a household's smoke sensor sees cooking smoke once in four months; a device goes silent once in 500 days
(20 min to 12 h, median 2 h); a gateway's uplink drops every two weeks (2-30 min). Wearers also move about six
times a day (replayed SisFall activities), which is where a detector's false alarms come from. Every draw is a
pure function of (seed, institution, day), so a resumed run injects what the uninterrupted one would have.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable
from typing import Any

import msgspec

from eldercare.simulators.run import noise
from eldercare.simulators.run.clock import DAY, HOUR, MINUTE, day_start, local_day
from eldercare.simulators.run.life import Body, Interval, night, night_of
from eldercare.simulators.run.scene import Elder, Scene
from eldercare.simulators.run.sisfall import Recordings, duration_ms

FOREVER = 2**62
KINDS = ("press", "fall", "activity", "wander", "smoke", "silent", "outage", "hospital", "death", "ghost", "twin")
# Happenings during which the elder is not in bed.
_ABSENT = {"fall", "wander", "hospital", "death", "ghost"}


class Happening(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    kind: str
    t: int  # when it starts (the impact of a fall, the press of a button)
    until: int | None = None  # when it ends (cancel, back in bed, link back, ...)
    institution: str  # key
    person: str | None = None
    device: str | None = None
    gateway: str | None = None
    origin: str = "random"  # random | scenario:<name>
    detail: dict[str, Any] = {}

    def absent(self) -> Interval | None:
        """When this keeps the elder out of bed."""
        if self.kind not in _ABSENT or self.person is None:
            return None
        if self.kind == "fall":
            return (self.t - int(self.detail.get("before_s", 60)) * 1000, self.until or self.t)
        return (self.t, self.until if self.until is not None else FOREVER)


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """How often things happen: multipliers of the rates above for what happens to elders (presses, falls,
    wandering, smoke) and to the equipment (silent devices, uplink outages), and whether wearers move about."""

    multiplier: float = 1.0
    faults: float = 1.0
    activities: bool = True


PROFILES = {
    "quiet": Profile(multiplier=0.0, faults=0.0, activities=False),
    "normal": Profile(),
    "busy": Profile(multiplier=30.0, faults=5.0),
    "demo": Profile(multiplier=600.0, faults=10.0),
}


class Incidents:
    """The random happenings of every day (drawn when first asked) and a scenario's, indexed."""

    def __init__(
        self, scene: Scene, *, profile: Profile, recordings: Recordings | None, scripted: Iterable[Happening] = ()
    ) -> None:
        self.scene = scene
        self.profile = profile
        self.recordings = recordings
        self._days: dict[int, list[Happening]] = {}
        self.scripted = sorted(scripted, key=lambda h: h.t)
        self._bodies: dict[str, Body] = {}

    # --- queries ------------------------------------------------------------------------------------

    def body(self, person: str) -> Body:
        body = self._bodies.get(person)
        if body is None:
            elder = self.scene.elders[person]
            body = self._bodies[person] = Body(
                seed=self.scene.seed, profile=elder.profile, absences=lambda a, b: self.absences(person, a, b)
            )
        return body

    def between(self, begin: int, end: int) -> list[Happening]:
        """Every happening overlapping [begin, end), in order of start."""
        out = [h for h in self.scripted if h.t < end and (h.until if h.until is not None else h.t) >= begin]
        for day in range(local_day(begin) - 1, local_day(max(begin, end - 1)) + 1):
            out.extend(h for h in self._day(day) if h.t < end and (h.until if h.until is not None else h.t) >= begin)
        return sorted(out, key=lambda h: (h.t, h.kind, h.device or "", h.person or ""))

    def started(self, begin: int, end: int) -> list[Happening]:
        return [h for h in self.between(begin, end) if begin <= h.t < end]

    def absences(self, person: str, begin: int, end: int) -> list[Interval]:
        out: list[Interval] = []
        for h in self._raw_between(begin, end):
            if h.person == person:
                span = h.absent()
                if span is not None and span[0] < end and span[1] > begin:
                    out.append(span)
        return out

    def _raw_between(self, begin: int, end: int) -> list[Happening]:
        # Absences are asked for while a day is being drawn (falls need the night's trips, not its absences),
        # so this must not draw days whose draw depends on the elder's presence.
        out = [h for h in self.scripted if h.t < end and (h.until or h.t) >= begin - DAY]
        for day in range(local_day(begin) - 1, local_day(max(begin, end - 1)) + 1):
            out.extend(self._day(day))
        return out

    def gone(self, person: str, t: int) -> bool:
        """Dead, in hospital or a ghost (never there) at ``t``: no incidents for them."""
        return any(
            h.person == person and h.kind in ("death", "hospital", "ghost") and h.t <= t < (h.until or FOREVER)
            for h in self.scripted
        )

    # --- random draws -------------------------------------------------------------------------------

    def _day(self, day: int) -> list[Happening]:
        cached = self._days.get(day)
        if cached is None:
            cached = []
            for inst in self.scene.world.plan.institutions:
                cached.extend(self._draw(inst.key, inst.gateway_id, day))
            self._days[day] = cached
            if len(self._days) > 6:
                self._days.pop(min(self._days))
        return cached

    def _draw(self, inst: str, gateway: str, day: int) -> list[Happening]:
        rng = noise.rng(self.scene.seed, inst, "day", day)
        m, faults = self.profile.multiplier, self.profile.faults
        midnight = day_start(day)
        out: list[Happening] = []
        if rng.random() < faults / 14:
            t = midnight + int(rng.random() * DAY)
            out.append(
                Happening(kind="outage", t=t, until=t + rng.randint(2, 30) * MINUTE, institution=inst, gateway=gateway)
            )
        for device in (d for d in self.scene.devices.values() if d.institution == inst):
            if rng.random() < faults / 500:
                t = midnight + int(rng.random() * DAY)
                length = min(12 * HOUR, max(20 * MINUTE, int(math.exp(rng.gauss(math.log(2 * HOUR), 0.8)))))
                out.append(Happening(kind="silent", t=t, until=t + length, institution=inst, device=device.code))
        for elder in (e for e in self.scene.elders.values() if e.institution == inst):
            out.extend(self._elder(rng, elder, midnight=midnight, m=m))
        return [h for h in out if h.person is None or not self.gone(h.person, h.t)]

    def _elder(self, rng: random.Random, elder: Elder, *, midnight: int, m: float) -> list[Happening]:
        out: list[Happening] = []
        button = elder.devices.get("button")
        for accidental, rate in ((False, 1 / 12), (True, 1 / 25)):
            for _ in range(noise.poisson(rng, m * rate)):
                # Four presses in five come while people are up (07:00-21:30), the rest at night.
                awake = rng.random() < 0.8
                t = midnight + (
                    7 * HOUR + int(rng.random() * 14.5 * HOUR)
                    if awake
                    else (int(rng.random() * 9.5 * HOUR) + 21 * HOUR + 30 * MINUTE) % DAY
                )
                wait = rng.randint(3, 30) * 1000 if accidental else rng.randint(60, 600) * 1000
                out.append(
                    Happening(
                        kind="press",
                        t=t,
                        until=t + wait,
                        institution=elder.institution,
                        person=elder.key,
                        device=button,
                        detail={"accidental": accidental},
                    )
                )
        yearly = {"high": 1.6, "medium": 0.8, "low": 0.3}[elder.profile.fall_risk]
        if elder.profile.bedridden:
            yearly *= 0.2
        falls = noise.poisson(rng, m * yearly / 365)
        out.extend(self.fall(rng, elder, midnight + int(rng.random() * DAY)) for _ in range(falls))
        wristband = elder.devices.get("wristband")
        if wristband is not None and rng.random() < m / 30:
            t = midnight + 9 * HOUR + int(rng.random() * 7 * HOUR)
            out.append(
                self.wander(rng, elder, t, length=rng.randint(20, 90) * MINUTE, distance_m=rng.uniform(300, 1500))
            )
        smoke = elder.devices.get("smoke")
        if smoke is not None and rng.random() < m / 120:
            t = midnight + 10 * HOUR + int(rng.random() * 9 * HOUR)
            out.append(self.smoke(rng, elder, t, length=rng.randint(3, 15) * MINUTE))
        wearable = elder.devices.get("wearable")
        if wearable is not None and self.profile.activities and self.recordings is not None:
            for _ in range(noise.poisson(rng, 6)):
                t = midnight + 7 * HOUR + int(rng.random() * 13.5 * HOUR)
                trial = self.recordings.pick(fall=False, u=rng.random())
                out.append(
                    Happening(
                        kind="activity",
                        t=t,
                        until=t + duration_ms(len(self.recordings.samples(trial))),
                        institution=elder.institution,
                        person=elder.key,
                        device=wearable,
                        detail={"trial": trial},
                    )
                )
        return out

    # --- builders shared with scenarios -------------------------------------------------------------

    def fall(
        self, rng: random.Random, elder: Elder, t: int, *, source: str | None = None, origin: str = "random"
    ) -> Happening:
        """A fall near ``t``: at night on a toilet trip if there is one, by day while up. Seen by the
        wearable while worn (07:00-21:00), else by the room's radar, else by nothing."""
        local = (t - day_start(local_day(t))) / HOUR
        if origin == "random" and (local >= 21 or local < 6) and not elder.profile.bedridden:
            trips = night(self.scene.seed, elder.profile, night_of(t)).trips
            if trips:
                begin, finish = trips[int(rng.random() * len(trips))]
                t = begin + int(rng.random() * max(1, finish - begin))
                local = (t - day_start(local_day(t))) / HOUR
        wearable, radar = elder.devices.get("wearable"), elder.devices.get("fall_radar")
        worn = wearable is not None and 7 <= local < 21 and self.recordings is not None
        chosen = source or ("wearable" if worn else "radar" if radar else "none")
        lie = rng.randint(3, 20) * MINUTE
        detail: dict[str, Any] = {"source": chosen, "before_s": 60}
        device: str | None = None
        if chosen == "wearable" and wearable is not None and self.recordings is not None:
            trial = (
                str(rng.choice(self.recordings.falls))
                if origin == "random"
                else self.recordings.pick(fall=True, u=rng.random())
            )
            impact = self.recordings.impact(trial)
            detail |= {"trial": trial, "stream_start": t - impact * 20}
            device = wearable
        elif chosen == "radar" and radar is not None:
            detail["confidence"] = round(rng.uniform(0.7, 0.98), 2)
            device = radar
        else:
            detail["source"] = "none"
        return Happening(
            kind="fall",
            t=t,
            until=t + lie,
            institution=elder.institution,
            person=elder.key,
            device=device,
            origin=origin,
            detail=detail,
        )

    @staticmethod
    def wander(rng: random.Random, elder: Elder, t: int, *, length: int, distance_m: float) -> Happening:
        return Happening(
            kind="wander",
            t=t,
            until=t + length,
            institution=elder.institution,
            person=elder.key,
            device=elder.devices.get("wristband"),
            detail={"bearing_deg": round(rng.uniform(0, 360), 1), "distance_m": round(distance_m)},
        )

    @staticmethod
    def smoke(rng: random.Random, elder: Elder, t: int, *, length: int) -> Happening:
        return Happening(
            kind="smoke",
            t=t,
            until=t + length,
            institution=elder.institution,
            person=elder.key,
            device=elder.devices.get("smoke"),
            detail={"peak_pct": round(rng.uniform(8, 25), 1)},
        )


def silent_spans(happenings: Iterable[Happening], device: str) -> list[Interval]:
    return sorted((h.t, h.until or FOREVER) for h in happenings if h.kind == "silent" and h.device == device)


def inside(spans: list[Interval], t: int) -> bool:
    i = bisect.bisect_right([s[0] for s in spans], t) - 1
    return i >= 0 and t < spans[i][1]
