"""Elders living alone at home and the visits made to them (独居老人巡访), planned for a home-care provider's elders.

40 % of a provider's elders live alone (``LIVES_ALONE_SHARE``, rounded; at least one in every provider), on the
visit list since a day 60-720 days before the as-of date. The platform's rules (migration 0031) decide the schedule:
a key subject (80 or over, or not self-caring, as on the as-of date) is visited once every calendar month, a general
one once a year, up to the day before the as-of date. Providers take turns: the first, third, ... keep to it; the
others miss a visit now and then (``MISSED``; half of those are a call at the door with nobody home, recorded but not
counted), and their first elder on the list has not been seen for the last two months (key) or years (general), so
that their staff's due list has someone overdue and the regulators' coverage of their home is below the target.
Drawn from a generator of its own, so that planning visits leaves the rest of the world as it was.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import msgspec

from eldercare.simulators.world import people
from eldercare.simulators.world.model import PersonPlan, VisitPlan
from eldercare.simulators.world.residents import at

LIVES_ALONE_SHARE = 0.4
MISSED = 0.2
_MODES = (("in_person", 0.7), ("phone", 0.25), ("video", 0.05))
_FOLLOW_UP = 0.15
_NOTES_FOLLOW_UP = (
    "血压偏高，已提醒按时服药",
    "膝盖疼痛加重，建议社区医院复查",
    "冰箱内食物过期，已协助清理",
    "情绪低落，已联系子女",
)
_NOTES_WELL = ("精神状态良好", "饮食起居正常", "家中安全隐患已排查", "")


def is_key(person: PersonPlan, day: date) -> bool:
    """A key subject (重点对象) on ``day``, as the platform's ``visit_kind`` says."""
    return people.age_on(date.fromisoformat(person.birth_date), day) >= 80 or person.capability != "self_care"


def living_alone(rng: random.Random, persons: list[PersonPlan], *, as_of: date, diligent: bool) -> list[PersonPlan]:
    """``persons`` (a provider's elders) with those who live alone marked, and their visits."""
    count = max(1, round(LIVES_ALONE_SHARE * len(persons))) if persons else 0
    alone = sorted(rng.sample(range(len(persons)), count))
    out = list(persons)
    for n, i in enumerate(alone):
        since = as_of - timedelta(days=rng.randint(60, 720))
        neglected = not diligent and n == 0
        if neglected and not is_key(persons[i], as_of):  # two years without a visit: on the list before last year
            since = min(since, date(as_of.year - 1, 1, 1) - timedelta(days=rng.randint(1, 300)))
        visits = _visits(rng, persons[i], since=since, as_of=as_of, diligent=diligent, neglected=neglected)
        out[i] = msgspec.structs.replace(persons[i], lives_alone_since=since.isoformat(), visits=visits)
    return out


def _windows(since: date, as_of: date, *, key: bool) -> list[tuple[date, date]]:
    """The calendar months (key) or years (general) from ``since``'s to ``as_of``'s, each cut to [since, as_of): a
    visit of as-of day itself could be later than the moment the world is registered. On the 1st (of January) the
    last window is the as-of day alone, visited just after midnight."""
    out: list[tuple[date, date]] = []
    first = date(since.year, since.month if key else 1, 1)
    while first <= as_of:
        following = (
            date(first.year + (first.month == 12), first.month % 12 + 1, 1) if key else date(first.year + 1, 1, 1)
        )
        start, end = max(first, since), min(following, as_of) - timedelta(days=1)
        out.append((start, max(start, end)))
        first = following
    return out


def _visits(
    rng: random.Random, person: PersonPlan, *, since: date, as_of: date, diligent: bool, neglected: bool
) -> list[VisitPlan]:
    windows = _windows(since, as_of, key=is_key(person, as_of))
    out: list[VisitPlan] = []
    for n, (start, end) in enumerate(windows):
        if neglected and n >= len(windows) - 2:
            continue
        day = start + timedelta(days=rng.randint(0, (end - start).days))
        when = at(day, 0, 5) if day == as_of else at(day, rng.randint(9, 17), rng.randint(0, 59))
        mode = rng.choices([m for m, _ in _MODES], weights=[w for _, w in _MODES])[0]
        if not diligent and rng.random() < MISSED:
            if rng.random() < 0.5:
                out.append(VisitPlan(visited_at=when, mode="in_person", outcome="not_found_home", note="敲门无人应答"))
            continue
        if rng.random() < _FOLLOW_UP:
            out.append(
                VisitPlan(visited_at=when, mode=mode, outcome="needs_follow_up", note=rng.choice(_NOTES_FOLLOW_UP))
            )
        else:
            out.append(VisitPlan(visited_at=when, mode=mode, outcome="well", note=rng.choice(_NOTES_WELL)))
    return out
