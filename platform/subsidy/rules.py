"""The thresholds of verification, in one place (``docs/subsidy.md`` explains each).

A night is the local window [night_start_hour, night_end_hour of the next day) in ``timezone``; it belongs
to the date on which it begins. The bed sensor's roll-ups (``bed_hourly``: per UTC hour, the minutes with a
sample and the minutes with a sample showing someone) decide each night of a bed:

* *no evidence* when fewer than ``min_observed_hours`` hours of the window have any sample (the sensor was
  offline or unplugged) - not the same as an empty bed;
* *present* when at least ``min_occupied_share`` of the observed minutes showed someone in the bed;
* *absent* otherwise: the sensor watched the bed and it stayed (mostly) empty.

Hours and shares, not minute counts, so that the rule holds whatever the sensor's sampling interval (a
sensor that reports every 10 minutes observes 6 minutes an hour).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Rules:
    timezone: str = "Asia/Shanghai"
    night_start_hour: int = 22
    night_end_hour: int = 6
    min_observed_hours: int = 4  # of the 8-hour window: half the night watched
    min_occupied_share: float = 0.25  # in bed a quarter of the watched time (two hours of a night)
    offline_tolerance_nights: int = 7  # nights without evidence still paid when the others show presence
    absence_tolerance_nights: int = 3  # absent nights withheld without a manual check (a visit home)
    overclaim_leeway_days: int = 1  # counting conventions: the admission and the discharge day both counted
    allowance_absent_nights: int = 7  # an allowance receiver never in bed on this many watched nights: a check

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if not 12 <= self.night_start_hour <= 23 or not 0 <= self.night_end_hour <= 11:
            raise ValueError("a night starts in the evening (12-23) and ends in the morning (0-11)")
        window = 24 - self.night_start_hour + self.night_end_hour
        if not 0 < self.min_observed_hours <= window:
            raise ValueError(f"min_observed_hours must lie within the {window}-hour night")
        if not 0 < self.min_occupied_share <= 1:
            raise ValueError("min_occupied_share is a share of the observed time, above 0 and at most 1")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def month_days(month: date) -> tuple[date, date, int]:
    """First day, last day and number of days of ``month`` (any day of it)."""
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    last = following - timedelta(days=1)
    return first, last, last.day


def previous_month(month: date) -> date:
    return (month.replace(day=1) - timedelta(days=1)).replace(day=1)
