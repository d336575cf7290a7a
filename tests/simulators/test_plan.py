"""The world's plan, without the platform: codes, ages, places, beds, devices and staff, and its determinism."""

from __future__ import annotations

import dataclasses
import statistics
from datetime import date

import pytest

from eldercare.devices import codes
from eldercare.simulators.errors import SimError
from eldercare.simulators.world import people, visits
from eldercare.simulators.world.model import WorldPlan, plan_json
from eldercare.simulators.world.plan import PlanOptions, make_plan
from eldercare.simulators.world.regions import counties, distance_km

AS_OF = date(2026, 3, 15)


@pytest.fixture(scope="module")
def plan() -> WorldPlan:
    return make_plan(PlanOptions(region="4205", institutions=12, households=30, seed=11, as_of=AS_OF))


def test_same_seed_same_plan_and_another_seed_another() -> None:
    options = PlanOptions(region="4205", institutions=3, households=3, seed=5, as_of=AS_OF, beds_min=8, beds_max=16)
    first, again = make_plan(options), make_plan(options)
    assert plan_json(first) == plan_json(again)
    other = make_plan(dataclasses.replace(options, seed=6))
    assert plan_json(other) != plan_json(first)


def test_the_plan_does_not_depend_on_the_date_but_for_dates() -> None:
    """Homes, beds, people and devices stay the same on another as-of date (scenarios name rooms and
    residents); only birth and admission dates move with it."""
    a = make_plan(PlanOptions(region="4205", institutions=2, households=2, seed=38, as_of=date(2026, 3, 15)))
    b = make_plan(PlanOptions(region="4205", institutions=2, households=2, seed=38, as_of=date(2025, 2, 28)))
    assert [i.code for i in a.institutions] == [i.code for i in b.institutions]
    assert [[bed.key for bed in i.beds] for i in a.institutions] == [
        [bed.key for bed in i.beds] for i in b.institutions
    ]
    assert [[(p.key, p.name, p.age, p.bed) for p in i.persons] for i in a.institutions] == [
        [(p.key, p.name, p.age, p.bed) for p in i.persons] for i in b.institutions
    ]


def test_institution_codes_regions_and_places(plan: WorldPlan) -> None:
    known = {c.code: c for c in counties("4205")}
    assert len({i.code for i in plan.institutions}) == len(plan.institutions)
    for inst in plan.institutions:
        assert codes.validate_uscc(inst.code) == inst.code
        assert inst.code[2:8] == inst.region_code
        county = known[inst.region_code]
        assert county.contains(inst.lon, inst.lat), (inst.key, inst.lon, inst.lat)
        assert inst.address.startswith(f"湖北省宜昌市{county.name}")
        assert 0 <= inst.star_grade <= 5 and 0 < inst.price_min <= inst.price_max
        for household in inst.households:
            assert distance_km(county.lon, county.lat, household.lon, household.lat) <= county.radius_km + 1e-9
    assert len({i.region_code for i in plan.institutions}) > 3, "homes spread over the city's counties"
    assert [i.kind for i in plan.institutions].count("home_care_provider") == 2  # 30 households, 25 a provider


def test_beds_rooms_and_nursing_share(plan: WorldPlan) -> None:
    for inst in plan.institutions:
        assert len({b.key for b in inst.beds}) == len(inst.beds)
        if inst.kind == "home_care_provider":
            assert len(inst.beds) == len(inst.households) and all(not b.room for b in inst.beds)
            continue
        assert 30 <= len(inst.beds) <= 120
        share = sum(b.kind == "nursing" for b in inst.beds) / len(inst.beds)
        assert 0.49 <= share <= 0.76, (inst.key, share)
        rooms: dict[str, int] = {}
        for bed in inst.beds:
            rooms[bed.room_key] = rooms.get(bed.room_key, 0) + 1
        assert max(rooms.values()) <= 3
    homes = [i for i in plan.institutions if i.kind == "residential_home"]
    overall = sum(b.kind == "nursing" for i in homes for b in i.beds) / sum(len(i.beds) for i in homes)
    assert 0.55 <= overall <= 0.70


def test_residents_ages_id_numbers_and_one_bed_each(plan: WorldPlan) -> None:
    as_of = date.fromisoformat(plan.as_of)
    cities = {c.code for c in counties("4205")}
    ages = []
    for inst in plan.institutions:
        beds = [p.bed for p in inst.persons]
        assert len(beds) == len(set(beds)), "no two residents in one bed"
        assert set(beds) <= {b.key for b in inst.beds}
        for p in inst.persons:
            parsed = codes.parse_id_number(p.id_number, today=as_of)
            assert parsed.birth_date.isoformat() == p.birth_date
            assert parsed.age_on(as_of) == p.age
            assert parsed.sex == p.sex
            assert parsed.region_code in cities
            assert 60 <= p.age <= 100
            assert p.admitted_at is not None and p.admitted_at[:10] <= plan.as_of
            assert people.age_on(parsed.birth_date, date.fromisoformat(p.admitted_at[:10])) >= 60
            assert p.contacts and all(c.phone for c in p.contacts)
            ages.append(p.age)
    assert len(ages) > 300
    assert 78 <= statistics.mean(ages) <= 83, "most residents are in their eighties"
    in_80s = sum(80 <= a < 90 for a in ages) / len(ages)
    assert 0.35 <= in_80s <= 0.51


def test_devices_staff_and_rosters(plan: WorldPlan) -> None:
    for inst in plan.institutions:
        kinds = {d.code: d.kind for d in inst.devices}
        assert len(kinds) == len(inst.devices)
        for bed in inst.beds:
            watching = {d.kind for d in inst.devices if d.bed == bed.key}
            assert {"bed_sensor", "button"} <= watching
            if inst.kind == "home_care_provider":
                assert "smoke" in watching
        for p in inst.persons:
            worn = {d.kind for d in inst.devices if d.person == p.key}
            if p.wander_risk and inst.kind == "residential_home":
                assert "wristband" in worn
            assert "wearable" not in worn or (p.fall_risk == "high" and p.capability != "disabled")
        assert inst.gateway_id == f"GW-{inst.code[-6:]}"
        assert inst.staff[0].role == "head" and all(s.role == "staff" for s in inst.staff[1:])
        for day in range(1, 8):
            for shift in ("白班", "中班", "夜班"):
                assert any(day in s.weekdays for m in inst.staff[1:] for s in m.shifts if s.name == shift)
    vendors = {d.vendor for i in plan.institutions for d in i.devices}
    assert vendors == {"acme", "lianke"}


def test_bad_options_are_refused() -> None:
    with pytest.raises(SimError, match="no anchor"):
        make_plan(PlanOptions(region="4201", institutions=1, households=0, seed=1, as_of=AS_OF))
    with pytest.raises(SimError, match="not an administrative division"):
        make_plan(PlanOptions(region="9999", institutions=1, households=0, seed=1, as_of=AS_OF))
    with pytest.raises(SimError, match="--beds"):
        make_plan(PlanOptions(region="4205", institutions=1, households=0, seed=1, as_of=AS_OF, beds_min=9, beds_max=3))


def test_elders_live_alone_at_home_only_and_are_visited_by_the_plan() -> None:
    """About 40 % of the home-care providers' elders live alone (none of a residential home's), on the visit list
    since a past day, visited after it and before the as-of date; from 6 households two providers share them, the
    first visiting every elder in every month (key) or year (general), the second missing some."""
    plan = make_plan(PlanOptions(region="4205", institutions=4, households=200, seed=3, as_of=AS_OF))
    alone = [p for i in plan.institutions for p in i.persons if p.lives_alone_since]
    assert all(i.kind == "home_care_provider" for i in plan.institutions if any(p.lives_alone_since for p in i.persons))
    assert 0.3 <= len(alone) / 200 <= 0.5
    for person in alone:
        since = date.fromisoformat(person.lives_alone_since or "")
        days = [date.fromisoformat(v.visited_at[:10]) for v in person.visits]
        assert since < AS_OF and days == sorted(days) and all(since <= d < AS_OF for d in days)
    small = make_plan(PlanOptions(region="4205", institutions=1, households=9, seed=3, as_of=AS_OF))
    on_time, late = (i for i in small.institutions if i.kind == "home_care_provider")
    assert (len(on_time.persons), len(late.persons)) == (5, 4)
    for person in (p for p in on_time.persons if p.lives_alone_since):
        since = date.fromisoformat(person.lives_alone_since or "")
        months = (AS_OF.year - since.year) * 12 + AS_OF.month - since.month + 1
        assert len(person.visits) == (months if visits.is_key(person, AS_OF) else AS_OF.year - since.year + 1)
        assert all(v.outcome != "not_found_home" for v in person.visits)
    assert any(p.lives_alone_since for p in late.persons)
