"""The elders of a planned home: who lies in which bed, since when, their families and their care needs.

Occupancy is 55-95 % per home (nursing beds fuller); an elder's ID number is issued in the home's county (80 %)
or another county of the city; admissions follow an exponential stay of mean 900 days, never before 60.
Every home with elders who walk has one with dementia who may wander and one at high fall risk.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

import msgspec

from eldercare.devices import codes
from eldercare.simulators.world import people
from eldercare.simulators.world.model import BedPlan, ContactPlan, FamilyUserPlan, PersonPlan
from eldercare.simulators.world.regions import County

CHINA = timezone(timedelta(hours=8))


def at(day: date, hour: int, minute: int = 0) -> str:
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA).isoformat()


def region_of_origin(rng: random.Random, county: County, places: list[County]) -> str:
    return county.code if rng.random() < 0.8 or len(places) == 1 else rng.choice(places).code


def person_plan(
    rng: random.Random,
    as_of: date,
    *,
    key: str,
    region6: str,
    bed: BedPlan,
    since: date,
    family: str,
) -> PersonPlan:
    elder = people.elder(rng, as_of=as_of, region6=region6, nursing_bed=bed.kind == "nursing")
    born = elder.birth_date
    sixty = people.add_years(born, 60)
    stay = min(int(rng.expovariate(1 / 900)), 3650) + 1
    admitted = max(as_of - timedelta(days=stay), sixty, since - timedelta(days=3650))
    contacts = _contacts(rng, elder)
    family_user = None
    if rng.random() < 0.3:
        family_user = FamilyUserPlan(username=family, display_name=contacts[0].name, relation=contacts[0].relation)
    heart = round(min(92.0, max(56.0, rng.gauss(72, 7))), 1)
    breath = round(min(22.0, max(11.0, rng.gauss(16, 1.8))), 1)
    return PersonPlan(
        key=key,
        name=elder.name,
        id_number=elder.id_number,
        sex=elder.sex,
        birth_date=born.isoformat(),
        age=elder.age,
        capability=elder.capability,
        fall_risk=elder.fall_risk,
        wander_risk=elder.wander_risk,
        heart_rate=heart,
        resp_rate=breath,
        # The registry's default range (50-110, 10-25) would alarm on an elder who rests low and sleeps lower:
        # the nurse sets the lower bound under the sleeping rate, as homes do.
        heart_rate_min=float(min(50, int(heart * 0.88 - 10))),
        resp_rate_min=float(min(10, int(breath * 0.92 - 3))),
        bed=bed.key,
        admitted_at=at(admitted, rng.randint(9, 16), rng.randint(0, 59)),
        contacts=contacts,
        family_user=family_user,
    )


def _contacts(rng: random.Random, elder: people.Elder) -> list[ContactPlan]:
    family = elder.name[0] if elder.sex == "male" else people.surname(rng)
    out: list[ContactPlan] = []
    child_sex: codes.Sex = rng.choice(("male", "female"))
    out.append(
        ContactPlan(
            name=people.young_name(rng, child_sex, family),
            phone=people.mobile(rng),
            relation="儿子" if child_sex == "male" else "女儿",
            kind="family",
            priority=1,
        )
    )
    if elder.age < 85 and rng.random() < 0.4:
        spouse: codes.Sex = "female" if elder.sex == "male" else "male"
        out.append(
            ContactPlan(
                name=people.elder_name(rng, spouse),
                phone=people.mobile(rng),
                relation="配偶",
                kind="family",
                priority=2,
            )
        )
    elif rng.random() < 0.6:
        other: codes.Sex = rng.choice(("male", "female"))
        out.append(
            ContactPlan(
                name=people.young_name(rng, other, family),
                phone=people.mobile(rng),
                relation="儿子" if other == "male" else "女儿",
                kind="family",
                priority=2,
            )
        )
    if rng.random() < 0.3:
        out.append(
            ContactPlan(
                name=people.young_name(rng, "male"),
                phone=people.mobile(rng),
                relation="侄子",
                kind="emergency",
                priority=3,
            )
        )
    return out


def residents_of(
    rng: random.Random,
    as_of: date,
    seed: int,
    *,
    key: str,
    county: County,
    places: list[County],
    beds: list[BedPlan],
    since: date,
) -> list[PersonPlan]:
    occupancy = rng.uniform(0.55, 0.95)
    persons: list[PersonPlan] = []
    for bed in beds:
        if rng.random() >= min(1.0, occupancy + (0.1 if bed.kind == "nursing" else -0.1)):
            continue
        n = len(persons) + 1
        persons.append(
            person_plan(
                rng,
                as_of,
                key=f"{key}/R{n:03d}",
                region6=region_of_origin(rng, county, places),
                bed=bed,
                since=since,
                family=f"fam-{key.lower()}-{n:03d}-{seed}",
            )
        )
    return _guarantee(persons)


def _guarantee(persons: list[PersonPlan]) -> list[PersonPlan]:
    """Every home with elders who walk has one with dementia who may wander and one at high fall risk (so every
    kind of device and incident exists in every home, also in small worlds)."""
    walking = [i for i, p in enumerate(persons) if p.capability != "disabled"]
    if walking and not any(persons[i].wander_risk for i in walking):
        persons[walking[-1]] = msgspec.structs.replace(persons[walking[-1]], wander_risk=True)
    if walking and not any(persons[i].fall_risk == "high" for i in walking):
        persons[walking[0]] = msgspec.structs.replace(persons[walking[0]], fall_risk="high")
    return persons
