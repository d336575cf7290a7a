"""The alarm as the API shows it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Priority(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"
    TECHNICAL = "technical"


class State(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    ATTENDING = "attending"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


OPEN_STATES = (State.RAISED, State.ACKNOWLEDGED, State.ATTENDING)


class Alarm(BaseModel):
    id: int
    institution_code: str
    kind: str
    priority: Priority
    state: State
    device_code: str | None
    bed_code: str | None
    person_code: str | None
    occurred_at: datetime
    raised_at: datetime
    acknowledged_at: datetime | None
    attending_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    repeat_count: int
    detail: dict[str, Any]


class AlarmChange(BaseModel):
    at: datetime
    actor: str
    from_state: State | None
    to_state: State
    note: str
