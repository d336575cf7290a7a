"""The demo's last month (simulators/demo_month.py), offline: the scenario it writes for a world is a valid
scenario file whose every target exists, and the claims it makes bear out exactly the findings it plants;
what a world has no room for is left out. (tests/simulators/test_demo.py runs it on the platform.)"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import msgspec
import pytest
from tests.simulators.support import SISFALL, offline_world, registered_as_if

from eldercare.simulators import demo_month
from eldercare.simulators.run.clock import from_iso, month_end
from eldercare.simulators.run.incidents import PROFILES, Incidents
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.sisfall import Recordings
from eldercare.simulators.scenario import session
from eldercare.simulators.scenario.claims import Month, make_claims
from eldercare.simulators.scenario.findings import resolve as resolve_findings
from eldercare.simulators.scenario.resolve import Resolver
from eldercare.simulators.world.model import World
from eldercare.simulators.world.plan import PlanOptions, make_plan

START = from_iso("2026-10-01T00:00:00+08:00")


def _world(seed: int, *, institutions: int = 3) -> World:
    options = PlanOptions(
        region="4205", institutions=institutions, households=3, seed=seed, as_of=date(2026, 11, 23),
        beds_min=8, beds_max=16,
    )  # fmt: skip
    return offline_world(make_plan(options))


def _bears_out(world: World, tmp_path: Path) -> list[str]:
    """The planted findings, after checking the scenario against the world and its claims."""
    made = demo_month.scenario_for(world, START)
    assert made is not None
    text, planted = made
    path = tmp_path / "month.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = session.load(str(path))
    assert [f.finding for f in loaded.scenario.expect_claim_findings] == planted
    assert loaded.scenario.run.start == "2026-10-01T00:00:00.000+08:00"
    scene = Scene.of(world)
    incidents = Incidents(scene, profile=PROFILES["quiet"], recordings=Recordings(SISFALL))
    end = month_end(START) + demo_month.MORNING_AFTER
    happenings = Resolver(loaded.scenario, loaded.marked, scene, incidents).happenings(start=START, end=end)
    registered = registered_as_if(world, happenings)
    month = Month(START)
    claims = make_claims(world, loaded.scenario, happenings, registered, month)
    found = resolve_findings(
        loaded.scenario, world, happenings=happenings, registered=registered, claims=claims, month=month
    )
    assert sorted(f["finding"] for f in found) == sorted(planted)
    assert all(f["claims"] for f in found), found
    return planted


@pytest.mark.parametrize("seed", range(12))
def test_the_month_fits_the_world_it_is_written_for(seed: int, tmp_path: Path) -> None:
    # three homes of 8-16 beds have room for all four
    assert _bears_out(_world(seed), tmp_path) == [
        "absent_in_hospital", "unverifiable_days", "never_present", "empty_bed_claimed"
    ]  # fmt: skip


def test_a_full_home_gets_no_ghost_and_no_empty_bed_claimed(tmp_path: Path) -> None:
    world = _world(3, institutions=1)
    plan = world.plan
    homes = []
    for inst in plan.institutions:
        taken = {p.bed for p in inst.persons}
        homes.append(msgspec.structs.replace(inst, beds=[b for b in inst.beds if b.key in taken]))
    full = msgspec.structs.replace(world, plan=msgspec.structs.replace(plan, institutions=homes))
    planted = _bears_out(full, tmp_path)
    assert "never_present" not in planted and "empty_bed_claimed" not in planted
    assert "absent_in_hospital" in planted


def test_a_world_of_households_only_has_no_month() -> None:
    world = _world(5)
    providers = [i for i in world.plan.institutions if i.kind != "residential_home"]
    assert providers
    only = msgspec.structs.replace(world, plan=msgspec.structs.replace(world.plan, institutions=providers))
    assert demo_month.scenario_for(only, START) is None
