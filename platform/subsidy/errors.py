"""Errors of the subsidy services, each with its structured fields; the API shows them in its one shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eldercare.platform.api.errors import FieldError, Problem


@dataclass(frozen=True, slots=True)
class LineError:
    """A problem with one line of a claim or register: the row (file) or index (body), the column, why."""

    where: str  # "rows[3]" for a file's row 3, "lines[0]" for the body's first line
    column: str
    reason: str

    @property
    def field(self) -> str:
        return f"{self.where}.{self.column}"


class SubsidyError(Exception):
    """Base of the subsidy errors."""


class Rejected(SubsidyError):  # noqa: N818 - a verdict on a whole submission, carrying every reason
    """A claim or register file with bad lines: nothing of it was stored."""

    def __init__(self, errors: Sequence[LineError]) -> None:
        super().__init__(f"{len(errors)} problem(s)")
        self.errors = list(errors)

    def problem(self) -> Problem:
        return Problem(
            422,
            f"nothing was stored: {len(self.errors)} problem(s)",
            [FieldError(field=e.field, reason=e.reason) for e in self.errors],
        )


def conflict(field: str, reason: str) -> Problem:
    return Problem(409, reason, [FieldError(field=field, reason=reason)])


def forbidden(what: str) -> Problem:
    return Problem(403, what)
