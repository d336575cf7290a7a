"""Scenario files: the shipped ones are valid and fit their world; bad ones are refused at their line."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.simulators.support import SISFALL, offline_world, registered_as_if, small_plan

from eldercare.simulators.errors import ScenarioError, SimError
from eldercare.simulators.run.clock import from_iso, month_end
from eldercare.simulators.run.incidents import PROFILES, Incidents
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.sisfall import Recordings
from eldercare.simulators.scenario import model as sm
from eldercare.simulators.scenario import session
from eldercare.simulators.scenario.claims import Month, make_claims
from eldercare.simulators.scenario.findings import resolve as resolve_findings
from eldercare.simulators.scenario.marks import load as load_yaml
from eldercare.simulators.scenario.resolve import Resolver

REQUIRED = {
    "night-fall",
    "evening-uplink-outage",
    "death-at-home",
    "empty-bed-claims",
    "claimed-by-two-homes",
    "hospital-half-month",
    "device-fails-before-close",
}


def test_the_issue_scenarios_are_shipped_and_valid() -> None:
    shipped = session.shipped()
    assert set(shipped) >= REQUIRED
    for name, path in shipped.items():
        loaded = session.load(str(path))
        assert loaded.scenario.scenario == name, "the file is named after its scenario"
        assert loaded.scenario.version >= 1
        assert loaded.scenario.expect or loaded.scenario.expect_claim_findings, f"{name} says what to notice"


@pytest.mark.parametrize("name", sorted(session.shipped()))
def test_shipped_scenarios_fit_their_world(name: str) -> None:
    """Every target exists in the scenario's world (its plan, as the world command would make it); the
    subsidy scenarios' claims bear out the findings they expect."""
    loaded = session.load(name)
    spec = loaded.scenario.world
    plan = small_plan(seed=spec.seed)
    assert (spec.region, spec.institutions, spec.households, spec.beds) == ("4205", 2, 2, "5-7")
    world = offline_world(plan)
    scene = Scene.of(world)
    incidents = Incidents(scene, profile=PROFILES["quiet"], recordings=Recordings(SISFALL))
    start = from_iso("2026-02-01T00:00:00+08:00")
    end = month_end(start)
    happenings = Resolver(loaded.scenario, loaded.marked, scene, incidents).happenings(start=start, end=end)
    assert len(happenings) == len(loaded.scenario.inject)
    if loaded.scenario.claims is None:
        return
    registered = registered_as_if(world, happenings)
    month = Month(start)
    claims = make_claims(world, loaded.scenario, happenings, registered, month)
    assert claims and all(c.month == "2026-02" and 0 < c.days <= 28 for c in claims)
    found = resolve_findings(
        loaded.scenario, world, happenings=happenings, registered=registered, claims=claims, month=month
    )
    assert {f["finding"] for f in found} == {f.finding for f in loaded.scenario.expect_claim_findings}


GOOD = """\
scenario: tiny
version: 1
title: a press
world: {seed: 38}
run:
  duration: 10m
inject:
  - id: p
    kind: press
    at: "12:30"
    home: 1
expect:
  - {alarm: button, for: p, within_s: 5}
"""


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        sm.validate(load_yaml(text, "t.yaml"))
    return caught.value


def test_a_good_file_and_times_of_day_stay_text() -> None:
    scenario = sm.validate(load_yaml(GOOD, "t.yaml"))
    assert scenario.inject[0].at == "12:30"  # not YAML 1.1's base-60 integer 750


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (("    kind: press", "    kind: pres"), 9, "kind 'pres' is not one of"),
        (("    home: 1", "    home: 1\n    flavour: mint"), 12, "unknown key"),
        (("  duration: 10m", "  duration: ten minutes"), 6, "not a duration"),
        (("{alarm: button, for: p,", "{alarm: button, for: q,"), 13, "'q' is neither an injection's id"),
        (("    home: 1", "    home: 0"), 11, "greater than or equal to 1"),
        (("  duration: 10m", "  duration: 10m\n  speed: fast"), 7, "a number of simulated seconds per real second"),
        (("version: 1", "version: 1\nversion: 2"), 3, "'version' is given twice"),
        (("  - id: p", "  - id: p\n  - [oops"), 10, "not valid YAML"),  # where the parser notices
        (("within_s: 5}", "within_s: 5, within_sim: soon}"), 13, "not a duration"),
    ],
)
def test_bad_files_are_refused_at_their_line(change: tuple[str, str], line: int, reason: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    error = _error(text)
    assert error.line == line, str(error)
    assert reason in str(error)
    assert str(error).startswith(f"t.yaml:{line}")


def test_a_target_that_is_not_in_the_world_is_refused_at_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("    home: 1", "    home: 1\n    room: 9-999")
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    loaded = session.load(str(path))
    world = offline_world(small_plan())
    scene = Scene.of(world)
    incidents = Incidents(scene, profile=PROFILES["quiet"], recordings=None)
    with pytest.raises(ScenarioError) as caught:
        Resolver(loaded.scenario, loaded.marked, scene, incidents).happenings(start=0, end=10**12)
    assert caught.value.line == 8 and "no resident" in str(caught.value)


def test_unknown_scenario_names_say_which_exist() -> None:
    with pytest.raises(SimError, match="night-fall"):
        session.load("no-such-scenario")
