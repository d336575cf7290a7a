"""``simulate world`` through the real API: the same seed gives the same world on fresh databases, and what the
API returns afterwards keeps the world's invariants (valid codes, ages, bed counts, one bed per resident at a
time, bound devices, one gateway per home whose credentials work on the broker)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from tests.registry.support import (
    ADMIN_PASSWORD,
    Database,
    Server,
    create_database,
    data_key,
    drop_database,
    login,
)
from tests.simulators.support import built_world

from eldercare.devices import codes
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.uplink import SimUplink
from eldercare.simulators.world.dump import canonical, dump
from eldercare.simulators.world.model import World, plan_json
from eldercare.simulators.world.plan import PlanOptions
from eldercare.simulators.world.regions import counties
from eldercare.simulators.world.residents import CHINA

OPTIONS = PlanOptions(
    region="4205",
    institutions=3,
    households=6,  # two home-care providers of three households: one visits its elders living alone on time, one not
    seed=20260301,
    as_of=datetime.now(CHINA).date(),
    beds_min=6,
    beds_max=12,
)


def _build(stack: StackInfo, db: Database) -> tuple[World, dict[str, Any]]:
    with built_world(stack, db, OPTIONS) as (world, server):
        document = asyncio.run(dump(world, base=server.base, admin_username="sim-admin", admin_password=ADMIN_PASSWORD))
    return world, document


@pytest.fixture(scope="module")
def twice(stack: StackInfo) -> Iterator[tuple[tuple[World, dict[str, Any]], tuple[World, dict[str, Any]], Database]]:
    first_db, second_db = create_database(stack, "ec_simw"), create_database(stack, "ec_simw")
    try:
        first = _build(stack, first_db)
        second = _build(stack, second_db)
        yield first, second, second_db
    finally:
        drop_database(stack, first_db)
        drop_database(stack, second_db)


def test_same_seed_same_world_on_fresh_databases(twice: Any) -> None:
    (w1, d1), (w2, d2), _ = twice
    assert plan_json(w1.plan) == plan_json(w2.plan)
    assert canonical(d1) == canonical(d2)
    # what the platform drew itself differs (its codes and secrets), and only that
    assert w1.issued.institutions["H01"].gateway_password != w2.issued.institutions["H01"].gateway_password
    assert list(w1.issued.institutions["H01"].beds) == list(w2.issued.institutions["H01"].beds)


def _overlaps(spans: list[tuple[str, str | None]]) -> bool:
    ordered = sorted((datetime.fromisoformat(a), datetime.fromisoformat(b) if b else None) for a, b in spans)
    return any(prev[1] is None or prev[1] > nxt[0] for prev, nxt in itertools.pairwise(ordered))


def test_the_world_as_the_api_returns_it(stack: StackInfo, twice: Any) -> None:
    _, (world, document), db = twice
    known = {c.code: c for c in counties("4205")}
    with Server(database_url=db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
        for inst in world.plan.institutions:
            issued = world.issued.institutions[inst.key]
            head = login(server.base, inst.staff[0].username, issued.users[inst.staff[0].username][1])
            got = head.ok("GET", f"/api/v1/institutions/{issued.id}")
            assert codes.validate_uscc(got["code"]) == got["code"] == inst.code
            county = known[got["region_code"]]
            assert county.contains(got["lon"], got["lat"])
            beds = head.ok("GET", f"/api/v1/institutions/{issued.id}/beds", params={"limit": 500})
            assert len(beds) == got["capacity"] == len(inst.beds)
            if inst.kind == "residential_home":
                assert 0.49 <= sum(b["kind"] == "nursing" for b in beds) / len(beds) <= 0.76
            residents = head.ok("GET", f"/api/v1/institutions/{issued.id}/residents", params={"limit": 500})
            assert len(residents) == len(inst.persons) == sum(b["occupied"] for b in beds)
            assert len({r["bed_id"] for r in residents}) == len(residents), "one resident per bed"
            for resident in residents:
                assert 60 <= resident["age"] <= 100 and resident["status"] == "admitted"
                history = head.ok("GET", f"/api/v1/residents/{resident['id']}/beds")
                assert not _overlaps([(h["start"], h["end"]) for h in history]), "never in two beds at once"
            for bed in beds:
                history = head.ok("GET", f"/api/v1/beds/{bed['id']}/history")
                assert not _overlaps([(h["start"], h["end"]) for h in history]), "never two residents in a bed"
            sample = residents[0]
            revealed = head.ok("POST", f"/api/v1/residents/{sample['id']}/id-number", json={"reason": "simulator test"})
            parsed = codes.parse_id_number(revealed["id_number"])
            assert parsed.age_on(date.today()) in (sample["age"], sample["age"] + 1, sample["age"] - 1)
            assert parsed.masked == sample["id_number_masked"] and parsed.region_code in known
            devices = head.ok("GET", f"/api/v1/institutions/{issued.id}/devices", params={"limit": 500})
            assert len(devices) == len(inst.devices)
            assert all(d["bed_id"] or d["resident_id"] for d in devices), "every device bound"
            gateways = head.ok("GET", f"/api/v1/institutions/{issued.id}/gateways")
            assert [g["gateway_id"] for g in gateways] == [inst.gateway_id] and gateways[0]["has_credentials"]
            rosters = head.ok("GET", "/api/v1/rosters", params={"institution": inst.code})
            assert {s["name"] for s in rosters} >= {"白班", "中班", "夜班", "院长值守"}
            link = SimUplink(
                institution=inst.code,
                gateway=inst.gateway_id,
                password=issued.gateway_password,
                host=stack.mqtt_host,
                port=stack.ports.mqtt_tls,
                ca_file=stack.ca_file,
            )
            link.connect(timeout=15)  # the issued credentials work on the real broker (TLS, ACL)
            link.close()
    assert document["H01"]["families"] or document["H02"]["families"], "some families have app logins"


def test_elders_live_alone_only_at_home_and_the_visits_cover_some_homes_fully(stack: StackInfo, twice: Any) -> None:
    """Elders living alone are residents of the home-care providers only (never of a residential home), on the list
    since a day in the past, with visits recorded; over the regulators' default period (the last 30 days) the coverage
    is at the target in the provider that visits on time and below it in the one that misses visits, and the
    latter's carer has someone overdue on the due list."""
    _, (world, document), db = twice
    today = datetime.now(CHINA).date()
    kinds = {inst.key: inst.kind for inst in world.plan.institutions}
    providers = [key for key, kind in kinds.items() if kind == "home_care_provider"]
    assert len(providers) == 2
    alone = {key: [r for r in doc["residents"] if r["lives_alone"]] for key, doc in document.items()}
    assert {key for key, rs in alone.items() if rs} == set(providers), "living alone: at home, in every provider"
    for resident in (r for rs in alone.values() for r in rs):
        assert date.fromisoformat(resident["lives_alone_since"]) <= today - timedelta(days=60)
        assert resident["visits"], "a history of visits"
    with Server(database_url=db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
        admin = login(server.base, "sim-admin", ADMIN_PASSWORD)
        period = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
        report = admin.ok("GET", "/api/v1/supervision/visits", params=period)
        ids = {issued.id: key for key, issued in world.issued.institutions.items()}
        homes = {ids[h["institution_id"]]: h for h in report["homes"] if h["institution_id"] in ids}
        for key, kind in kinds.items():
            if kind == "residential_home":
                assert homes[key]["living_alone"] == 0 and homes[key]["key_coverage"] is None
        rates = {
            key: [r for r in (homes[key]["key_coverage"], homes[key]["general_coverage"]) if r is not None]
            for key in providers
        }
        on_time, late = providers  # the first provider keeps to the schedule, the second misses visits
        assert rates[on_time] and all(r == homes[on_time]["key_target"] == 1.0 for r in rates[on_time]), homes
        assert any(r < 1.0 for r in rates[late]), homes
        assert report["region"]["living_alone"] == sum(len(rs) for rs in alone.values())
        overdue = {}
        for key in providers:
            inst, issued = world.institution(key), world.issued.institutions[key]
            carer = inst.staff[1].username
            due = login(server.base, carer, issued.users[carer][1]).ok("GET", "/api/v1/visits/due")
            overdue[key] = [d for d in due if d["days_overdue"] > 0]
        assert not overdue[on_time] and overdue[late], overdue
