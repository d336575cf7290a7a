"""The state file of a run: enough to stop it and go on later exactly where it stopped.

Everything the devices say is a pure function of (world, seed, scenario, simulated time), so the state is
small: the options, how far simulated time got, how many ground-truth lines were written by then, and
which registry actions were done (with the ids the platform gave them). It is written atomically (a
temporary file renamed over the old one) after the truth it counts is on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

from eldercare.simulators.errors import SimError

FORMAT: Final = "eldercare-run/1"


class RunState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: str = FORMAT
    world: str
    scenario: str | None = None
    truth: str
    claims: str | None = None
    api: str
    via: str  # direct | gateway
    speed: float | None  # None: as fast as the platform takes it
    incidents: str
    bed_sample_s: float
    detect_falls: bool = True
    start_ms: int
    end_ms: int | None
    position_ms: int
    truth_lines: int = 0
    messages: int = 0
    done: dict[str, int] = {}  # registry action key -> id it got (0 if none)
    finished: bool = False
    # At its end, send what devices still owe (:meth:`Devices.owed`): a run followed by another time.
    settle: bool = False


def save(state: RunState, path: Path) -> None:
    data = msgspec.json.format(msgspec.json.encode(state), indent=1)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def load(path: Path) -> RunState:
    try:
        state = msgspec.json.decode(path.read_bytes(), type=RunState)
    except OSError as exc:
        raise SimError(f"cannot read the run state {path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise SimError(f"{path} is not a run state of this version: {exc}") from exc
    if state.format != FORMAT:
        raise SimError(f"{path}: format {state.format!r}, this simulator reads {FORMAT!r}")
    return state
