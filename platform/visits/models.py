"""The visits' request and response models."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from eldercare.platform.registry.types import Note, When

KEY_TARGET = 1.0  # 重点对象月探访率 100% (seeds 002 line 378)
GENERAL_TARGET = 1.0  # 一般对象年探访率 100%


class Mode(StrEnum):
    IN_PERSON = "in_person"
    PHONE = "phone"
    VIDEO = "video"


class Outcome(StrEnum):
    WELL = "well"
    NEEDS_FOLLOW_UP = "needs_follow_up"
    NOT_FOUND_HOME = "not_found_home"  # recorded, but not counted as a visit


class Kind(StrEnum):
    KEY = "key"  # 重点对象: aged 80 or more, or not self-caring; visited every calendar month
    GENERAL = "general"  # 一般对象: visited every calendar year


class VisitIn(BaseModel):
    visited_at: When = Field(description="when the visit (or call) took place; not in the future")
    mode: Mode
    outcome: Outcome
    note: Annotated[Note, Field(description="health data: stored encrypted, masked for regulators")] = ""


class Visit(BaseModel):
    id: int
    resident_id: int
    visited_at: datetime
    visited_by: str | None = Field(description="the visitor's name; none for a family")
    mode: Mode
    outcome: Outcome
    counts: bool = Field(description="whether it counts as a visit (someone was met)")
    note: str | None = Field(description="in clear for the home's staff, *** for regulators, none for a family")
    created_at: datetime


class Due(BaseModel):
    resident_id: int
    institution_id: int
    person_code: str
    name: str
    kind: Kind
    lives_alone_since: date
    last_visit: date | None = Field(description="local day of the last visit that counts")
    due: date = Field(description="the last local day by which the next visit is due")
    days_overdue: int


class Coverage(BaseModel):
    """One home's visit coverage over a period, or the region's (``institution_id`` 0, no code or name)."""

    institution_id: int
    institution_code: str | None
    institution_name: str | None
    living_alone: int = Field(description="residents on the visit list at the period's end")
    key_subjects: int
    general_subjects: int
    key_visited_monthly: int = Field(description="key subjects visited in every calendar month they were on the list")
    general_visited_yearly: int = Field(description="general subjects visited in the period's year, up to its end")
    key_coverage: float | None
    general_coverage: float | None
    key_target: float = KEY_TARGET
    general_target: float = GENERAL_TARGET


class CoverageReport(BaseModel):
    start: date
    end: date
    timezone: str
    region: Coverage
    homes: list[Coverage]
