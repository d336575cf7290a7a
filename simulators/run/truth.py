"""The ground truth: every injected happening, written as one JSON object per line with the codes involved.

Each line has ``kind``, ``t`` (ms, simulated) and ``time`` (local ISO), ``until``/``until_time`` for what
lasts, ``origin`` (``random`` or ``scenario:<name>``), the platform's codes (``institution``, ``gateway``,
``device``, ``device_kind``, ``bed``, ``bed_label``, ``room``, ``person``, ``household``), ``detail`` and
``sent_ms``: the real time at which the devices' messages about it were handed to the gateway or broker (for
delays). Lines of kind ``run`` mark the start, stop, resume and end of a run; ``expect`` lines are a
scenario's expectations with their codes filled in. ``n`` numbers the lines from 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from eldercare.simulators.errors import SimError
from eldercare.simulators.run.clock import iso


class Truth:
    def __init__(self, path: Path, *, keep_lines: int | None) -> None:
        """Open ``path`` for appending; ``keep_lines`` (on resume) cuts it back to the lines a saved state
        counted, dropping anything written after the last save."""
        self.path = path
        self.lines = 0
        if keep_lines is not None and path.exists():
            kept = path.read_text(encoding="utf-8").splitlines(keepends=True)[:keep_lines]
            path.write_text("".join(kept), encoding="utf-8")
            self.lines = len(kept)
        elif keep_lines is None and path.exists() and path.stat().st_size:
            raise SimError(f"{path} exists: give another --truth file, or --resume a stopped run")
        self._handle: IO[str] = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        self.lines += 1
        line = {"n": self.lines, **record}
        if isinstance(line.get("t"), int):
            line["time"] = iso(line["t"])
        if isinstance(line.get("until"), int):
            line["until_time"] = iso(line["until"])
        self._handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        return line

    def flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self.flush()
        self._handle.close()


def read(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise SimError(f"cannot read the ground truth {path}: {exc}") from exc
