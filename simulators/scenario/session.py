"""Load a scenario file, run it on a world, and write what it declares: truth, claims, expected findings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from eldercare.simulators.errors import ScenarioError, SimError
from eldercare.simulators.run import truth as truth_log
from eldercare.simulators.run.clock import iso
from eldercare.simulators.run.direct import Target
from eldercare.simulators.run.engine import Outcome
from eldercare.simulators.run.incidents import PROFILES, Happening, Incidents
from eldercare.simulators.run.runner import execute, recordings
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.state import RunState
from eldercare.simulators.run.truth import Truth
from eldercare.simulators.scenario import claims as claim_file
from eldercare.simulators.scenario import findings, marks
from eldercare.simulators.scenario import model as sm
from eldercare.simulators.scenario.resolve import Resolver
from eldercare.simulators.world import model as world_model


@dataclass(frozen=True)
class Loaded:
    scenario: sm.Scenario
    marked: marks.Marked
    path: Path


def shipped() -> dict[str, Path]:
    folder = resources.files("eldercare.simulators").joinpath("scenarios")
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".yaml")}


def load(name: str) -> Loaded:
    """A scenario file by path, or a shipped one by name; a bad one is a ScenarioError with its line."""
    path = Path(name)
    if not path.is_file():
        known = shipped()
        if name not in known:
            raise SimError(
                f"no scenario file {name!r}, and no shipped scenario of that name ({', '.join(sorted(known))})"
            )
        path = known[name]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(path, None, f"cannot read it: {exc}") from None
    marked = marks.load(text, path)
    return Loaded(sm.validate(marked), marked, path)


def happenings(loaded: Loaded, world: world_model.World, state: RunState, sisfall: Path | None) -> list[Happening]:
    scene = Scene.of(world)
    incidents = Incidents(scene, profile=PROFILES[state.incidents], recordings=recordings(sisfall))
    assert state.end_ms is not None
    return Resolver(loaded.scenario, loaded.marked, scene, incidents).happenings(start=state.start_ms, end=state.end_ms)


def run(
    state: RunState,
    *,
    state_path: Path,
    target: Target,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
    progress_s: float = 10.0,
    sisfall: Path | None = None,
    on_truth: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """Run (or go on with) the scenario of ``state``; at its end write the claims and the expected findings."""
    if state.scenario is None or state.end_ms is None:
        raise SimError("not a scenario run")
    loaded = load(state.scenario)
    world = world_model.load(Path(state.world))
    scripted = happenings(loaded, world, state, sisfall)
    sc = loaded.scenario
    first = [
        {
            "kind": "scenario",
            "t": state.start_ms,
            "origin": f"scenario:{sc.scenario}",
            "detail": {"name": sc.scenario, "version": sc.version, "title": sc.title, "file": str(loaded.path)},
        }
    ]
    outcome = execute(
        state,
        state_path=state_path,
        target=target,
        scripted=scripted,
        first_records=first,
        stop=stop,
        progress=progress,
        progress_s=progress_s,
        on_truth=on_truth,
        sisfall=sisfall,
    )
    if outcome.finished and sc.claims is not None and state.claims is not None:
        _claims(loaded, world, scripted, state)
    return outcome


def _claims(loaded: Loaded, world: world_model.World, scripted: list[Happening], state: RunState) -> None:
    records = truth_log.read(Path(state.truth))
    registered = {
        str(r["detail"]["id"]): r["detail"]
        for r in records
        if r.get("kind") == "registry" and "registered_person" in r["detail"]
    }
    month = claim_file.Month(state.start_ms)
    lines = claim_file.make_claims(world, loaded.scenario, scripted, registered, month)
    assert state.claims is not None
    claim_file.write(lines, Path(state.claims))
    expected = findings.resolve(
        loaded.scenario, world, happenings=scripted, registered=registered, claims=lines, month=month
    )
    truth = Truth(Path(state.truth), keep_lines=len(records))
    try:
        truth.write(
            {
                "kind": "claims",
                "t": month.end,
                "detail": {
                    "file": state.claims,
                    "month": month.label,
                    "lines": len(lines),
                    "from": iso(month.start),
                    "to": iso(month.end),
                },
            }
        )
        for item in expected:
            truth.write(
                {
                    "kind": "expect_claim_finding",
                    "t": month.end,
                    "origin": f"scenario:{loaded.scenario.scenario}",
                    "detail": item,
                }
            )
    finally:
        truth.close()
