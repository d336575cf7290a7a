"""``eldercare simulate run``: options to a run state, signals to a stop request, progress to stderr."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from eldercare.simulators.errors import SimError
from eldercare.simulators.run import state as run_state
from eldercare.simulators.run.clock import format_duration, iso, month_end, parse_duration, parse_start, real_ms
from eldercare.simulators.run.direct import Target
from eldercare.simulators.run.engine import Outcome
from eldercare.simulators.run.runner import execute
from eldercare.simulators.run.state import RunState

DEFAULT_SPEED, DEFAULT_START, DEFAULT_VIA, DEFAULT_INCIDENTS, DEFAULT_BED_SAMPLE_S = (
    "1",
    "now",
    "gateway",
    "normal",
    30.0,
)


def quiet_http_logs() -> None:
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise SimError(f"--speed {text!r}: a number of simulated seconds per real second, or max") from None
    if not 0.01 <= speed <= 100_000:
        raise SimError("--speed must be between 0.01 and 100000, or max")
    return speed


def broker_target() -> Target:
    """The platform's TLS listener, as the local stack's settings give it."""
    from eldercare.platform.config import BrokerSettings

    broker = BrokerSettings()
    return Target(broker.mqtt_host, broker.mqtt_port, str(broker.mqtt_ca_file) if broker.mqtt_ca_file else None)


def new_state(
    *,
    world: Path,
    truth: Path,
    api: str,
    speed: str,
    duration: str | None,
    start: str,
    via: str,
    incidents: str,
    bed_sample_s: float,
    detect_falls: bool = True,
    scenario: Path | None = None,
    claims: Path | None = None,
    settle: bool = False,
) -> RunState:
    start_ms = parse_start(start, now=real_ms())
    if not 1 <= bed_sample_s <= 3600:
        raise SimError("--bed-sample-s must be between 1 and 3600")
    return RunState(
        world=str(world.resolve()),
        scenario=str(scenario) if scenario else None,
        truth=str(truth.resolve()),
        claims=str(claims.resolve()) if claims else None,
        api=api,
        via=via,
        speed=parse_speed(speed),
        incidents=incidents,
        bed_sample_s=bed_sample_s,
        detect_falls=detect_falls,
        start_ms=start_ms,
        end_ms=None
        if duration is None
        else month_end(start_ms)
        if duration == "month"
        else start_ms + parse_duration(duration),
        position_ms=start_ms,
        settle=settle,
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) ask the run to stop at the end of its turn (a second SIGINT
    is not needed)."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        print(f"\nstopping ({signal.Signals(signum).name}): saving the state ...", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report(outcome: Outcome, state: RunState, state_path: Path) -> None:
    done = format_duration(outcome.position_ms - state.start_ms)
    if outcome.finished:
        print(
            f"run finished at {iso(outcome.position_ms)} ({done} simulated): {outcome.messages} messages;"
            f" ground truth in {state.truth}"
        )
    else:
        print(
            f"run stopped at {iso(outcome.position_ms)} ({done} simulated): {outcome.messages} messages;"
            f" go on with: eldercare simulate run --resume {state_path}"
        )


def run(args: argparse.Namespace, *, api: str) -> int:
    quiet_http_logs()
    if args.resume:
        state_path = Path(args.resume)
        state = run_state.load(state_path)
        if state.finished:
            raise SimError(f"the run of {state_path} has finished; start a new one")
    else:
        if not args.world:
            raise SimError("give --world FILE (or --resume STATE)")
        world = Path(args.world)
        stem = world.with_suffix("")
        state_path = Path(args.state) if args.state else stem.with_name(stem.name + ".state.json")
        if state_path.exists():
            raise SimError(f"{state_path} exists: --resume it, or give another --state file")
        state = new_state(
            world=world,
            truth=Path(args.truth) if args.truth else stem.with_name(stem.name + ".truth.jsonl"),
            api=api,
            speed=args.speed or DEFAULT_SPEED,
            duration=args.duration,
            start=args.start or DEFAULT_START,
            via=args.via or DEFAULT_VIA,
            incidents=args.incidents or DEFAULT_INCIDENTS,
            bed_sample_s=args.bed_sample_s or DEFAULT_BED_SAMPLE_S,
            detect_falls=not args.no_fall_detector,
        )
        run_state.save(state, state_path)
    sisfall = Path(args.sisfall) if args.sisfall else None
    with stop_on_signals() as stop:
        if state.scenario is not None:
            from eldercare.simulators.scenario import session

            outcome = session.run(
                state,
                state_path=state_path,
                target=broker_target(),
                stop=stop,
                progress=progress,
                progress_s=args.progress_s,
                sisfall=sisfall,
            )
        else:
            outcome = execute(
                state,
                state_path=state_path,
                target=broker_target(),
                stop=stop,
                progress=progress,
                progress_s=args.progress_s,
                sisfall=sisfall,
            )
    report(outcome, state, state_path)
    return 0
