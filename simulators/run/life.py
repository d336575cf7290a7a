"""An elder's day and night: when they are in bed, asleep, and what their heart and breathing do.

A **night** runs from local noon to the next noon and holds the afternoon nap (about half of the days,
13:00 +- 20 min, 40-90 min), the time they go to bed (20:30 +- 40 min, elders go early), the time they get
up (06:00 +- 35 min) and their **toilet trips** (nocturia is the rule at this age): a Poisson number with mean
1.0 under 75, 1.6 from 75, 2.2 from 85 (x0.6 for elders who need help walking), each 2-20 min (median 6)
between 40 min after going to bed and 30 min before getting up. Bedridden elders (capability ``disabled``)
stay in bed. **Absences** (hospital, death, wandering, lying on the floor after a fall) take precedence.

**Vital signs** at rest are per person (heart 72 +- 7 bpm, breathing 16 +- 1.8 /min, drawn in the plan); on top
of that a circadian rhythm (+-4 bpm, +-0.8 /min, lowest at 04:00), sleep (x0.88 heart, x0.92 breathing once
asleep: 20 min after going to bed, 8 min after a trip, 10 min into a nap), a rise after walking back to bed
(+8 bpm decaying over 4 min) and measurement noise. Everything is a pure function of (seed, person, time).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from eldercare.simulators.run import noise
from eldercare.simulators.run.clock import DAY, HOUR, MINUTE, day_start, local_day

Interval = tuple[int, int]
Absences = Callable[[int, int], list[Interval]]  # absences overlapping [start, end)


@dataclass(frozen=True, slots=True)
class Profile:
    key: str
    age: int
    capability: str
    fall_risk: str
    heart_rate: float
    resp_rate: float

    @property
    def bedridden(self) -> bool:
        return self.capability == "disabled"


@dataclass(frozen=True, slots=True)
class Night:
    n: int
    start: int  # local noon
    end: int  # next local noon
    bed_at: int
    up_at: int
    nap: Interval | None
    trips: tuple[Interval, ...]
    in_bed: tuple[Interval, ...]  # before absences


def night_of(t: int) -> int:
    """The night (noon to noon) holding ``t``: the local day index of its first noon."""
    return local_day(t - 12 * HOUR)


def _clip(value: float, low: float, high: float) -> int:
    return int(min(high, max(low, value)))


@lru_cache(maxsize=65536)
def night(seed: int, profile: Profile, n: int) -> Night:
    start = day_start(n) + 12 * HOUR
    end = start + DAY
    if profile.bedridden:
        return Night(n, start, end, start, end, None, (), ((start, end),))
    rng = noise.rng(seed, profile.key, "night", n)
    nap: Interval | None = None
    if rng.random() < 0.55:
        nap_at = day_start(n) + 13 * HOUR + int(rng.gauss(0, 20) * MINUTE)
        nap = (nap_at, nap_at + rng.randint(40, 90) * MINUTE)
    bed_at = _clip(
        day_start(n) + 20.5 * HOUR + rng.gauss(0, 40) * MINUTE, day_start(n) + 19.5 * HOUR, day_start(n) + 23 * HOUR
    )
    up_at = _clip(
        day_start(n + 1) + 6 * HOUR + rng.gauss(0, 35) * MINUTE,
        day_start(n + 1) + 4.5 * HOUR,
        day_start(n + 1) + 8 * HOUR,
    )
    mean = 1.0 if profile.age < 75 else (1.6 if profile.age < 85 else 2.2)
    if profile.capability == "partly_disabled":
        mean *= 0.6
    count = noise.poisson(rng, mean)
    first, last = bed_at + 40 * MINUTE, up_at - 30 * MINUTE
    trips: list[Interval] = []
    for at in sorted(rng.uniform(first, last) for _ in range(count)) if last > first else []:
        length = min(20.0, max(2.0, math.exp(rng.gauss(math.log(6), 0.45)))) * MINUTE
        begin = int(at)
        if trips and begin < trips[-1][1] + 10 * MINUTE:
            continue  # too close to the last trip: one trip
        if begin + length > last + 30 * MINUTE - 5 * MINUTE:
            continue
        trips.append((begin, begin + int(length)))
    in_bed: list[Interval] = []
    if nap is not None:
        in_bed.append(nap)
    cursor = bed_at
    for begin, back in trips:
        in_bed.append((cursor, begin))
        cursor = back
    in_bed.append((cursor, up_at))
    return Night(n, start, end, bed_at, up_at, nap, tuple(trips), tuple(in_bed))


def _subtract(spans: tuple[Interval, ...], holes: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for begin, finish in spans:
        pieces = [(begin, finish)]
        for h0, h1 in holes:
            nxt: list[Interval] = []
            for p0, p1 in pieces:
                if h1 <= p0 or h0 >= p1:
                    nxt.append((p0, p1))
                    continue
                if p0 < h0:
                    nxt.append((p0, h0))
                if h1 < p1:
                    nxt.append((h1, p1))
            pieces = nxt
        out.extend(pieces)
    return sorted(p for p in out if p[1] > p[0])


class Body:
    """One elder, in simulated time."""

    def __init__(self, *, seed: int, profile: Profile, absences: Absences) -> None:
        self.seed = seed
        self.profile = profile
        self._absences = absences
        self._cache: dict[int, tuple[list[Interval], list[int]]] = {}

    def night(self, n: int) -> Night:
        return night(self.seed, self.profile, n)

    def spans(self, n: int) -> list[Interval]:
        """Intervals of night ``n`` during which the elder is in bed (absences removed)."""
        cached = self._cache.get(n)
        if cached is None:
            plan = self.night(n)
            spans = _subtract(plan.in_bed, self._absences(plan.start, plan.end))
            cached = (spans, [s[0] for s in spans])
            if len(self._cache) > 8:
                self._cache.pop(min(self._cache))
            self._cache[n] = cached
        return cached[0]

    def forget(self) -> None:
        """Absences changed (a scenario added one): recompute the nights."""
        self._cache.clear()

    def _span_at(self, t: int) -> Interval | None:
        n = night_of(t)
        self.spans(n)
        spans, starts = self._cache[n]
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and spans[i][0] <= t < spans[i][1]:
            return spans[i]
        return None

    def in_bed(self, t: int) -> bool:
        return self._span_at(t) is not None

    def changes(self, begin: int, end: int) -> list[tuple[int, bool]]:
        """(t, in bed after t) for each change of presence in [begin, end)."""
        out: list[tuple[int, bool]] = []
        for n in range(night_of(begin), night_of(end - 1) + 1):
            plan = self.night(n)
            spans = self.spans(n)
            for s0, s1 in spans:
                # A span touching the night's edges continues from / into the next night: no change there.
                joined_before = s0 == plan.start and self._joined(n - 1, plan.start)
                joined_after = s1 == plan.end and self._joined(n + 1, plan.end)
                if begin <= s0 < end and not joined_before:
                    out.append((s0, True))
                if begin <= s1 < end and not joined_after:
                    out.append((s1, False))
        return sorted(out)

    def _joined(self, n: int, edge: int) -> bool:
        return any(s0 <= edge <= s1 for s0, s1 in self.spans(n))

    def asleep(self, t: int) -> bool:
        span = self._span_at(t)
        if span is None:
            return False
        plan = self.night(night_of(t))
        if self.profile.bedridden:
            local = (t - day_start(local_day(t))) / HOUR
            return local >= 21 or local < 6 or 13 <= local < 14.5
        if plan.nap is not None and plan.nap[0] <= t < plan.nap[1]:
            return t - max(span[0], plan.nap[0]) > 10 * MINUTE
        latency = 20 * MINUTE if span[0] <= plan.bed_at else 8 * MINUTE
        return t - span[0] > latency

    def vitals(self, t: int, device: str) -> tuple[float, float, float]:
        """(heart rate, respiration rate, movement 0-1) measured by the bed sensor ``device`` at ``t`` (in bed)."""
        p = self.profile
        hours = (t - day_start(local_day(t))) / HOUR
        circadian = math.cos(2 * math.pi * (hours - 16) / 24)  # 1 at 16:00, -1 at 04:00
        asleep = self.asleep(t)
        span = self._span_at(t)
        plan = self.night(night_of(t))
        bump = 0.0
        if span is not None and not p.bedridden and span[0] not in (plan.bed_at, plan.nap[0] if plan.nap else -1):
            bump = 8.0 * math.exp(-(t - span[0]) / (4 * MINUTE))
        hr = p.heart_rate * (0.88 if asleep else 1.0) + 4.0 * circadian + bump + 1.5 * noise.gauss(device, t, "hr")
        rr = p.resp_rate * (0.92 if asleep else 1.0) + 0.8 * circadian + 0.6 * noise.gauss(device, t, "rr")
        u = noise.unit(device, t, "mv")
        move = 0.02 + 0.1 * u if asleep else 0.15 + 0.35 * u
        if asleep and u > 0.97:
            move = 0.3  # turning over
        return round(hr, 1), round(rr, 1), round(move, 2)
