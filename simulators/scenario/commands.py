"""``eldercare simulate scenario NAME``: validate, run on the scenario's world (made once), check."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from eldercare.simulators.errors import SimError
from eldercare.simulators.run import commands as run_commands
from eldercare.simulators.run import state as run_state
from eldercare.simulators.run import truth as truth_log
from eldercare.simulators.scenario import session
from eldercare.simulators.scenario.check import check
from eldercare.simulators.scenario.model import Scenario
from eldercare.simulators.world import commands as world_commands
from eldercare.simulators.world import model as world_model


def world_for(scenario: Scenario, folder: Path, *, api: str, admin: str, password: Callable[[], str]) -> Path:
    """The scenario's own world: made through the API the first time, then reused from ``folder``."""
    path = folder / "world.json"
    if path.exists():
        return path
    spec = scenario.world
    options = world_commands.options(
        region=spec.region,
        institutions=spec.institutions,
        households=spec.households,
        seed=spec.seed,
        beds=spec.beds,
        as_of=None,
        anchors=None,
    )
    world_commands.make_world(options, api=api, admin=admin, password=password(), out=path)
    return path


def new_state(
    loaded: session.Loaded, args: argparse.Namespace, *, world: Path, folder: Path, api: str
) -> run_state.RunState:
    spec = loaded.scenario.run
    speed = args.speed or (spec.speed if isinstance(spec.speed, str) else f"{spec.speed:g}")
    return run_commands.new_state(
        world=world,
        truth=folder / "truth.jsonl",
        api=api,
        speed=speed,
        duration=args.duration or spec.duration,
        start=args.start or spec.start,
        via=args.via or spec.via,
        incidents=args.incidents or spec.incidents,
        bed_sample_s=args.bed_sample_s or spec.bed_sample_s,
        detect_falls=not args.no_fall_detector,
        scenario=loaded.path,
        claims=folder / "claims.csv" if loaded.scenario.claims is not None else None,
    )


def scenario(args: argparse.Namespace, *, api: str, password: Callable[[], str]) -> int:
    run_commands.quiet_http_logs()
    if args.list:
        for name, path in sorted(session.shipped().items()):
            loaded = session.load(str(path))
            print(f"{name} (v{loaded.scenario.version}): {loaded.scenario.title}")
        return 0
    if not args.name:
        raise SimError("give a scenario file or the name of a shipped one (--list shows them)")
    loaded = session.load(args.name)
    if args.validate:
        print(
            f"{loaded.path}: valid ({len(loaded.scenario.inject)} injections, {len(loaded.scenario.expect)} alarm"
            f" expectations, {len(loaded.scenario.expect_claim_findings)} claim findings)"
        )
        return 0
    folder = Path(args.out) if args.out else Path(loaded.scenario.scenario)
    folder.mkdir(parents=True, exist_ok=True)
    world = (
        Path(args.world)
        if args.world
        else world_for(loaded.scenario, folder, api=api, admin=args.admin, password=password)
    )
    state_path = folder / "state.json"
    if state_path.exists():
        raise SimError(f"{state_path} exists: `eldercare simulate run --resume {state_path}` goes on with it")
    state = new_state(loaded, args, world=world, folder=folder, api=api)
    # Checked before anything runs: a target that does not exist is reported at its line now.
    session.happenings(loaded, world_model.load(world), state, Path(args.sisfall) if args.sisfall else None)
    run_state.save(state, state_path)
    with run_commands.stop_on_signals() as stop:
        outcome = session.run(
            state,
            state_path=state_path,
            target=run_commands.broker_target(),
            stop=stop,
            progress=run_commands.progress,
            progress_s=args.progress_s,
            sisfall=Path(args.sisfall) if args.sisfall else None,
        )
    run_commands.report(outcome, state, state_path)
    if not (args.check and outcome.finished):
        return 0
    verdicts = check(loaded.scenario, world_model.load(world), truth_log.read(Path(state.truth)), base=api)
    for verdict in verdicts:
        print(verdict.line())
    missed = sum(not v.ok for v in verdicts)
    print(f"{len(verdicts) - missed} of {len(verdicts)} expectations met")
    return 1 if missed else 0
