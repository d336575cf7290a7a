"""The credit score (信用分) formula: pure, versioned, every term written out.

    score = max(0, 100 - sum of deductions),  each deduction = min(cap, weight x excess)

A home whose score is below :data:`THRESHOLD` is blacklisted: its subsidy claims are flagged for a
person to check (``institution_flags``). The terms, their inputs and their weights are stored with each
score, so a score can be explained line by line long after the formula has changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERSION = "2026.1"
BASE = 100.0
THRESHOLD = 60.0

SUBSIDY_POINTS = {"minor": 2.0, "major": 5.0, "critical": 15.0}
INSPECTION_POINTS = {"pass": 0.0, "minor_issues": 5.0, "serious_issues": 15.0, "fail": 30.0}


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the formula reads about one home and period (see ``credit.gather``)."""

    alarms_for_people: int
    p90_s_to_acknowledge: float | None
    p90_s_to_attend: float | None
    unacknowledged_over_5_min: int
    open_at_end: int
    falls: int
    beds: int
    device_online_rate: float | None
    subsidy_findings: dict[str, int] = field(default_factory=dict)  # severity -> count
    inspections: dict[str, int] = field(default_factory=dict)  # outcome -> count


@dataclass(frozen=True, slots=True)
class Term:
    term: str
    inputs: dict[str, Any]
    rule: str
    weight: float
    cap: float
    excess: float  # how far past the target, in the rule's unit

    @property
    def deduction(self) -> float:
        return round(min(self.cap, self.weight * max(0.0, self.excess)), 2)


@dataclass(frozen=True, slots=True)
class Result:
    terms: list[Term]
    score: float
    blacklisted: bool
    version: str = VERSION
    base: float = BASE
    threshold: float = THRESHOLD


def _over(value: float | None, target: float) -> float:
    return 0.0 if value is None else max(0.0, value - target)


def terms(x: Inputs) -> list[Term]:
    falls_rate = x.falls * 100.0 / x.beds if x.beds else 0.0
    online_gap = 0.0 if x.device_online_rate is None else max(0.0, 0.95 - x.device_online_rate) * 100
    subsidy_points = sum(SUBSIDY_POINTS[k] * n for k, n in x.subsidy_findings.items())
    inspection_points = sum(INSPECTION_POINTS[k] * n for k, n in x.inspections.items())
    return [
        Term(
            "acknowledge_p90",
            {"p90_s_to_acknowledge": x.p90_s_to_acknowledge, "alarms_for_people": x.alarms_for_people},
            "0.1 point per second the 90th percentile time to acknowledge is over 60 s (no alarms: 0)",
            0.1,
            20,
            _over(x.p90_s_to_acknowledge, 60),
        ),
        Term(
            "attend_p90",
            {"p90_s_to_attend": x.p90_s_to_attend},
            "1 point per minute the 90th percentile time to reach the bedside is over 5 minutes",
            1 / 60,
            10,
            _over(x.p90_s_to_attend, 300),
        ),
        Term(
            "unacknowledged_over_5_min",
            {"unacknowledged_over_5_min": x.unacknowledged_over_5_min},
            "2 points per alarm for people left unacknowledged for more than 5 minutes",
            2,
            20,
            float(x.unacknowledged_over_5_min),
        ),
        Term(
            "unresolved_alarms",
            {"open_at_end": x.open_at_end},
            "2 points per alarm still open at the end of the period, more than an hour after it was raised",
            2,
            10,
            float(x.open_at_end),
        ),
        Term(
            "falls_per_100_beds",
            {"falls": x.falls, "beds": x.beds, "falls_per_100_beds": round(falls_rate, 3)},
            "1 point per confirmed fall (fall alarm resolved, not cancelled) per 100 beds",
            1,
            10,
            falls_rate,
        ),
        Term(
            "device_online",
            {"device_online_rate": x.device_online_rate},
            "0.5 point per percentage point the device online rate is below 95%",
            0.5,
            10,
            online_gap,
        ),
        Term(
            "subsidy_findings",
            {"findings": dict(sorted(x.subsidy_findings.items())), "points": SUBSIDY_POINTS},
            "subsidy verification findings not dismissed: 2 points (minor), 5 (major), 15 (critical)",
            1,
            30,
            subsidy_points,
        ),
        Term(
            "inspection_results",
            {"inspections": dict(sorted(x.inspections.items())), "points": INSPECTION_POINTS},
            "random inspections: 0 (pass), 5 (minor issues), 15 (serious issues), 30 (fail)",
            1,
            30,
            inspection_points,
        ),
    ]


def score(x: Inputs) -> Result:
    found = terms(x)
    value = round(max(0.0, BASE - sum(t.deduction for t in found)), 2)
    return Result(terms=found, score=value, blacklisted=value < THRESHOLD)
