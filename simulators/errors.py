"""The simulators' exceptions: each carries what a person needs to fix the cause."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class SimError(Exception):
    """Anything the simulators refuse or cannot do; the message says why."""


class ApiError(SimError):
    """The platform's API answered with an error: the request, the status and each field's reason."""

    def __init__(self, *, method: str, path: str, status: int, detail: str, fields: Sequence[tuple[str, str]]) -> None:
        reasons = "; ".join(f"{f}: {r}" for f, r in fields)
        super().__init__(f"{method} {path} -> {status} {detail}" + (f" ({reasons})" if reasons else ""))
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.fields = list(fields)


class ScenarioError(SimError):
    """A scenario file that cannot be used, with the place of the problem (line and column are 1-based)."""

    def __init__(self, path: Path | str, line: int | None, reason: str, *, column: int | None = None) -> None:
        where = f"{path}:{line}" + (f":{column}" if column is not None else "") if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = reason
