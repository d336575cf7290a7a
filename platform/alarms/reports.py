"""Response times: per alarm (the ``alarm_response`` view), per institution and per shift, in scope.

A report counts every alarm of a home, whoever it was about, so it is for the home's staff and for its
regulators, never for families (they see their own residents' alarms): ``Action.READ_ALARM_REPORTS``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from psycopg import sql
from psycopg.rows import class_row
from pydantic import BaseModel

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
        " count(*) FILTER (WHERE r.escalation_level > 0)::int AS escalated"
        " FROM alarm_response r JOIN institutions i ON i.id = r.institution_id"
        " WHERE {scope} AND r.priority <> 'technical' AND r.raised_at >= %(since)s AND r.raised_at < %(until)s"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(shift=shift, scope=institution_filter(principal, sql.SQL("r.institution_id")))
    async with conn.cursor(row_factory=class_row(ResponseRow)) as cur:
        await cur.execute(query, {"since": since, "until": until})
        return await cur.fetchall()
