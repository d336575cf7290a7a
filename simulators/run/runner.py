"""Put a run together from its state: world, bodies and devices, incidents, transport, truth, registry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

from eldercare.simulators.errors import SimError
from eldercare.simulators.run.clock import day_of_date, day_start
from eldercare.simulators.run.devices import Devices
from eldercare.simulators.run.direct import Direct, Target
from eldercare.simulators.run.engine import Engine, Outcome, Transport
from eldercare.simulators.run.incidents import PROFILES, Happening, Incidents
from eldercare.simulators.run.registry import Registrar
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.sisfall import Recordings, default_path
from eldercare.simulators.run.state import RunState
from eldercare.simulators.run.truth import Truth
from eldercare.simulators.run.via_gateway import ViaGateways
from eldercare.simulators.world import model as world_model

log = logging.getLogger(__name__)


def recordings(path: Path | None = None) -> Recordings | None:
    """The SisFall recordings, or None (with a warning) when they are not on this machine."""
    try:
        return Recordings(path or default_path())
    except SimError as exc:
        log.warning("%s: wearables will not replay falls or activities", exc)
        return None


def run_folder(state_path: Path) -> Path:
    return state_path.with_name(state_path.name.removesuffix(".json") + ".run")


def execute(
    state: RunState,
    *,
    state_path: Path,
    target: Target,
    scripted: Iterable[Happening] = (),
    first_records: list[dict[str, Any]] | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
    progress_s: float = 10.0,
    on_truth: Callable[[dict[str, Any]], None] | None = None,
    sisfall: Path | None = None,
) -> Outcome:
    """Run (or go on with) the run described by ``state`` until its end or a stop request."""
    world = world_model.load(Path(state.world))
    scene = Scene.of(world)
    if state.incidents not in PROFILES:
        raise SimError(f"--incidents {state.incidents!r}: one of {', '.join(PROFILES)}")
    incidents = Incidents(scene, profile=PROFILES[state.incidents], recordings=recordings(sisfall), scripted=scripted)
    as_of = day_start(day_of_date(date.fromisoformat(world.plan.as_of)))
    devices = Devices(scene, incidents, bed_sample_s=state.bed_sample_s, reference=as_of)
    transport: Transport
    if state.via == "direct":
        transport = Direct(
            scene, target, start=state.position_ms, bed_sample_s=state.bed_sample_s, detect_falls=state.detect_falls
        )
    elif state.via == "gateway":
        transport = ViaGateways(scene, target, folder=run_folder(state_path), bed_sample_s=state.bed_sample_s)
    else:
        raise SimError(f"--via {state.via!r}: direct or gateway")
    resumed = state.truth_lines > 0 or state.position_ms > state.start_ms
    truth = Truth(Path(state.truth), keep_lines=state.truth_lines if resumed else None)
    registrar = Registrar(scene, base=state.api) if state.api else None
    engine = Engine(
        scene=scene,
        state=state,
        state_path=state_path,
        transport=transport,
        incidents=incidents,
        devices=devices,
        truth=truth,
        registrar=registrar,
        stop=stop or threading.Event(),
        progress=progress,
        progress_s=progress_s,
        on_truth=on_truth,
    )
    try:
        return engine.run(first_records=None if resumed else first_records)
    finally:
        truth.close()
        if registrar is not None:
            registrar.close()
