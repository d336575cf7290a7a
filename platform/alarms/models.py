"""The alarm as the API shows it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


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


class OutcomeCode(StrEnum):
    """How a closed alarm ended, kept in clear beside the sealed outcome text (migration 0015, which says what each
    means): what kind of ending, nothing about the person, so every reader sees it and the figures count it. A false
    alarm is an alarm for a person closed as false_alarm, accidental_press or device_issue (``alarm_outcome_false``
    in SQL, the one definition)."""

    REAL_EVENT = "real_event"
    FALSE_ALARM = "false_alarm"
    ACCIDENTAL_PRESS = "accidental_press"
    DEVICE_ISSUE = "device_issue"
    OTHER = "other"


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
    outcome: str | None = Field(
        description="how it ended, as staff or the device said; health data: *** for regulators"
    )
    outcome_code: OutcomeCode | None = Field(
        description="how it ended as a code (real_event, false_alarm, accidental_press, device_issue, other); not"
        " personal data, shown to every reader; null while open, and when not known"
    )
    repeat_count: int
    detail: dict[str, Any] = Field(
        description="what the device or the rule saw; health data: values *** for regulators"
    )


class AlarmChange(BaseModel):
    at: datetime
    actor: str = Field(description="system, device, or the user's name; a family sees staff instead of the name")
    from_state: State | None
    to_state: State
    note: str = Field(description="health data: *** for regulators; a family is shown none")
