"""Response times and false alarms: per alarm (the ``alarm_response`` view), per institution and per shift, in scope.

False alarms are counted by the outcome codes (migration 0015: ``false_alarm``, ``accidental_press`` and
``device_issue``: nothing happened to the resident), their rate over the alarms closed with a code; alarms without one
(closed before the codes, or without a code) are in neither.

A report counts every alarm of a home, whoever it was about, so it is for the home's staff and for its
regulators, never for families (they see their own residents' alarms): ``Action.READ_ALARM_REPORTS``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from psycopg import sql
from psycopg.rows import class_row
from pydantic import BaseModel, Field

from eldercare.platform.alarms.models import OutcomeCode
from eldercare.platform.auth.scope import Action, Principal, institution_filter, require
from eldercare.platform.auth.service import AsyncConn

By = Literal["institution", "shift"]


class ResponseRow(BaseModel):
    institution_code: str
    shift: str | None
    alarms: int
    acknowledged: int
    median_s_to_acknowledge: float | None
    p90_s_to_acknowledge: float | None
    median_s_to_attend: float | None
    p90_s_to_attend: float | None
    unacknowledged_over_5_min: int
    escalated: int
    closed_with_code: int = Field(description="alarms closed with an outcome code")
    false_alarms: int = Field(description="closed as false_alarm, accidental_press or device_issue")
    false_alarm_rate: float | None = Field(description="false_alarms / closed_with_code; null when none has a code")
    alarms_by_outcome: dict[str, int] = Field(description="alarms per outcome code (codes with none left out)")


# code, count (NULL when none: stripped) for each outcome code
_BY_OUTCOME = sql.SQL(", ").join(
    sql.SQL("{code}, nullif(count(*) FILTER (WHERE r.outcome_code = {code}), 0)").format(code=sql.Literal(c.value))
    for c in OutcomeCode
)


async def response_times(
    conn: AsyncConn, *, principal: Principal, since: datetime, until: datetime, by: By
) -> list[ResponseRow]:
    """Technical alarms are left out: response targets are about people calling for help. 403 for families."""
    require(principal, Action.READ_ALARM_REPORTS)
    shift = (
        sql.SQL(
            "(SELECT string_agg(DISTINCT coalesce(nullif(s.name, ''), to_char(s.starts, 'HH24:MI') || '-'"
            " || to_char(s.ends, 'HH24:MI')), ', ') FROM shift_roster s WHERE s.institution_id = r.institution_id"
            " AND s.tier = 1 AND on_shift(s.starts, s.ends, s.weekdays, s.timezone, r.raised_at))"
        )
        if by == "shift"
        else sql.SQL("NULL::text")
    )
    query = sql.SQL(
        "SELECT i.code AS institution_code, {shift} AS shift, count(*)::int AS alarms,"
        " count(r.seconds_to_acknowledge)::int AS acknowledged,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY r.seconds_to_acknowledge) AS median_s_to_acknowledge,"
        " percentile_cont(0.9) WITHIN GROUP (ORDER BY r.seconds_to_acknowledge) AS p90_s_to_acknowledge,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY r.seconds_to_attend) AS median_s_to_attend,"
        " percentile_cont(0.9) WITHIN GROUP (ORDER BY r.seconds_to_attend) AS p90_s_to_attend,"
        # first answered: acknowledged, attending or closed, whichever came first (least() skips NULLs)
        " count(*) FILTER (WHERE coalesce(least(r.seconds_to_acknowledge, r.seconds_to_attend, r.seconds_to_close),"
        "   extract(epoch FROM least(now(), %(until)s) - r.raised_at)) > 300)::int AS unacknowledged_over_5_min,"
        " count(*) FILTER (WHERE r.escalation_level > 0)::int AS escalated,"
        " count(r.outcome_code)::int AS closed_with_code,"
        " count(*) FILTER (WHERE alarm_outcome_false(r.outcome_code))::int AS false_alarms,"
        " count(*) FILTER (WHERE alarm_outcome_false(r.outcome_code))::float8 / nullif(count(r.outcome_code), 0)"
        "   AS false_alarm_rate,"
        " jsonb_strip_nulls(jsonb_build_object({by_outcome})) AS alarms_by_outcome"
        " FROM alarm_response r JOIN institutions i ON i.id = r.institution_id"
        " WHERE {scope} AND r.priority <> 'technical' AND r.raised_at >= %(since)s AND r.raised_at < %(until)s"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(shift=shift, scope=institution_filter(principal, sql.SQL("r.institution_id")), by_outcome=_BY_OUTCOME)
    async with conn.cursor(row_factory=class_row(ResponseRow)) as cur:
        await cur.execute(query, {"since": since, "until": until})
        return await cur.fetchall()
