"""Homes that need attention, ranked: each reason is a figure past its threshold, weighed by how far past.

The weights put life-safety first (alarms left unanswered, slow answers), then the watch over residents
(devices offline, night rounds, emergency contacts), then the regulated targets (nursing beds), and add a
fixed weight for a home flagged by its credit score. The rules are data (:data:`RULES`) so that the list,
the documentation and the tests read the same thresholds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from eldercare.platform.supervision.figures import NURSING_TARGET, Figures


class Reason(BaseModel):
    code: str
    message: str
    value: float
    threshold: float
    weight: float


class HomeAttention(BaseModel):
    rank: int
    institution_id: int
    institution_code: str
    institution_name: str
    priority: float
    reasons: list[Reason]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    threshold: float
    value: Callable[[Figures], float | None]
    # weight from the value; called only when the value is past the threshold
    weight: Callable[[float], float]
    message: Callable[[float], str]
    above: bool  # past the threshold means above it (else below)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


RULES: tuple[Rule, ...] = (
    Rule(
        "unacknowledged_over_5_min",
        0,
        lambda f: f.unacknowledged_over_5_min,
        lambda v: 3 * v,
        lambda v: f"{v:.0f} alarm(s) left unacknowledged over 5 minutes",
        above=True,
    ),
    Rule(
        "alarms_open_at_end",
        0,
        lambda f: f.open_at_end,
        lambda v: 2 * v,
        lambda v: f"{v:.0f} alarm(s) still open more than an hour after they were raised",
        above=True,
    ),
    Rule(
        "slow_acknowledgement",
        60,
        lambda f: f.p90_s_to_acknowledge,
        lambda v: (v - 60) / 10,
        lambda v: f"90% of alarms acknowledged within {v:.0f} s (target 60 s)",
        above=True,
    ),
    Rule(
        "slow_attendance",
        300,
        lambda f: f.p90_s_to_attend,
        lambda v: (v - 300) / 60,
        lambda v: f"90% of alarms attended within {v / 60:.1f} min (target 5 min)",
        above=True,
    ),
    Rule(
        "devices_offline",
        0.95,
        lambda f: f.device_online_rate,
        lambda v: (0.95 - v) * 100,
        lambda v: f"devices online {_pct(v)} of the time (target 95%)",
        above=False,
    ),
    Rule(
        "night_rounds_missing",
        0.9,
        lambda f: f.night_round_coverage,
        lambda v: (0.9 - v) * 20,
        lambda v: f"night rounds covered {_pct(v)} of floor-nights (target 90%)",
        above=False,
    ),
    Rule(
        "residents_without_emergency_contact",
        0,
        lambda f: f.residents_without_emergency_contact,
        lambda v: v,
        lambda v: f"{v:.0f} resident(s) without an emergency contact",
        above=True,
    ),
    Rule(
        "nursing_share_below_target",
        NURSING_TARGET,
        lambda f: f.nursing_share,
        lambda v: (NURSING_TARGET - v) * 50,
        lambda v: f"nursing-type beds {_pct(v)} of beds (target {_pct(NURSING_TARGET)})",
        above=False,
    ),
)

FLAG_WEIGHT = 10.0


def reasons(f: Figures, *, flagged: bool) -> list[Reason]:
    found: list[Reason] = []
    for rule in RULES:
        value = rule.value(f)
        if value is None:
            continue
        past = value > rule.threshold if rule.above else value < rule.threshold
        if past:
            weight = round(rule.weight(float(value)), 2)
            found.append(Reason(code=rule.code, message=rule.message(float(value)), value=float(value),
                                threshold=rule.threshold, weight=weight))  # fmt: skip
    if flagged:
        found.append(
            Reason(
                code="credit_blacklisted",
                message="credit score below the blacklist threshold: subsidy claims checked by hand",
                value=1,
                threshold=0,
                weight=FLAG_WEIGHT,
            )
        )
    return sorted(found, key=lambda r: -r.weight)


def rank(homes: list[Figures], *, flagged: set[int]) -> list[HomeAttention]:
    """Homes with at least one reason, highest priority (sum of weights) first; ties by institution code."""
    scored = []
    for f in homes:
        why = reasons(f, flagged=f.institution_id in flagged)
        if why:
            scored.append((round(sum(r.weight for r in why), 2), f, why))
    scored.sort(key=lambda t: (-t[0], t[1].institution_code or ""))
    return [
        HomeAttention(
            rank=n,
            institution_id=f.institution_id,
            institution_code=f.institution_code or "",
            institution_name=f.institution_name or "",
            priority=p,
            reasons=why,
        )
        for n, (p, f, why) in enumerate(scored, start=1)
    ]
