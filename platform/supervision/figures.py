"""The figures of homes and their region over a period (``supervision_figures`` in migration 0006), and
the ranked list of homes that need attention, each with its reasons."""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from eldercare.platform.auth.service import AsyncConn

NURSING_TARGET = 0.60  # nursing-type beds at least 60% of beds (seeds 000 line 68)
TIMEZONE = "Asia/Shanghai"


class Figures(BaseModel):
    """One home's figures, or the region's (``institution_id`` 0, no code or name)."""

    institution_id: int
    institution_code: str | None
    institution_name: str | None
    region_code: str | None
    device_minutes_expected: float | None
    device_minutes_online: float | None
    device_online_rate: float | None
    alarms: int
    alarms_by_kind: dict[str, int]
    alarms_by_priority: dict[str, int]
    alarms_for_people: int
    median_s_to_acknowledge: float | None
    p90_s_to_acknowledge: float | None
    median_s_to_attend: float | None
    p90_s_to_attend: float | None
    unacknowledged_over_5_min: int
    falls: int
    closed_with_code: int = Field(default=0, description="alarms for people closed with an outcome code")
    false_alarms: int = Field(
        default=0, description="of those, closed as false_alarm, accidental_press or device_issue (migration 0015)"
    )
    false_alarm_rate: float | None = Field(
        default=None, description="false_alarms / closed_with_code; null when none has a code"
    )
    open_at_end: int
    beds: int
    nursing_beds: int
    nursing_share: float | None
    nursing_target: float = NURSING_TARGET
    nursing_target_met: bool | None = None
    occupancy: float | None
    in_bed_share: float | None
    residents: int
    residents_without_emergency_contact: int
    floors: int
    nights: int
    night_rounds: int
    night_round_coverage: float | None


class FiguresReport(BaseModel):
    start: date
    end: date
    timezone: str
    region: Figures
    homes: list[Figures]


async def figures(conn: AsyncConn, *, homes: list[int], start: date, end: date) -> FiguresReport:
    """Figures of ``homes`` (ids already checked against the caller's scope) over local days [start, end]."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM supervision_figures(%s::bigint[], %s, %s, %s)", (homes, start, end, TIMEZONE))
        rows: list[dict[str, Any]] = await cur.fetchall()
        # beside the figures' function, whose columns the Grafana reader's function is bound to (migration 0015)
        await cur.execute("SELECT * FROM supervision_false_alarms(%s::bigint[], %s, %s)", (homes, start, end))
        false_alarms = {row["institution_id"]: row for row in await cur.fetchall()}
    parsed = [_figures(row, false_alarms.get(row["institution_id"])) for row in rows]
    region = next(f for f in parsed if f.institution_id == 0)
    return FiguresReport(
        start=start, end=end, timezone=TIMEZONE, region=region, homes=[f for f in parsed if f.institution_id != 0]
    )


def _figures(row: dict[str, Any], false_alarms: dict[str, Any] | None) -> Figures:
    share = row["nursing_share"]
    coded, false = (false_alarms["coded"], false_alarms["false_alarms"]) if false_alarms else (0, 0)
    return Figures(
        **row,
        nursing_target_met=None if share is None else share >= NURSING_TARGET,
        closed_with_code=coded,
        false_alarms=false,
        false_alarm_rate=false / coded if coded else None,
    )
