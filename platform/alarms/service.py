"""Reading alarms within a principal's scope, and moving them through their states."""

from __future__ import annotations

from datetime import datetime

from psycopg import sql
from psycopg.rows import class_row

from eldercare.platform.alarms import changes
from eldercare.platform.alarms.models import OPEN_STATES, Alarm, AlarmChange, State
from eldercare.platform.api.errors import NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Action, Principal, require, resident_filter
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.notify import outbox
from eldercare.platform.notify.outbox import Event

_SELECT = sql.SQL(
    "SELECT a.id, i.code AS institution_code, a.kind, a.priority::text AS priority, a.state::text AS state,"
    " d.code AS device_code, b.code AS bed_code, r.person_code, a.occurred_at, a.raised_at,"
    " a.acknowledged_at, a.attending_at, a.closed_at, a.outcome, a.repeat_count, a.detail"
    " FROM alarms a JOIN institutions i ON i.id = a.institution_id"
    " LEFT JOIN devices d ON d.id = a.device_id LEFT JOIN beds b ON b.id = a.bed_id"
    " LEFT JOIN residents r ON r.id = a.resident_id"
)


def _scope(principal: Principal) -> sql.Composable:
    return resident_filter(principal, sql.SQL("a.institution_id"), sql.SQL("a.resident_id"))


async def list_alarms(
    conn: AsyncConn,
    *,
    principal: Principal,
    open_only: bool,
    since: datetime | None,
    limit: int,
) -> list[Alarm]:
    query = sql.SQL(
        "{select} WHERE {scope} AND (NOT %(open)s OR a.state = ANY(%(open_states)s::alarm_state[]))"
        " AND (%(since)s::timestamptz IS NULL OR a.raised_at >= %(since)s)"
        " ORDER BY a.priority, a.raised_at DESC LIMIT %(limit)s"
    ).format(select=_SELECT, scope=_scope(principal))
    params = {
        "open": open_only,
        "open_states": [s.value for s in OPEN_STATES],
        "since": since,
        "limit": limit,
    }
    async with conn.cursor(row_factory=class_row(Alarm)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def get_alarm(conn: AsyncConn, *, principal: Principal, alarm_id: int) -> Alarm:
    query = sql.SQL("{select} WHERE a.id = %s AND {scope}").format(select=_SELECT, scope=_scope(principal))
    async with conn.cursor(row_factory=class_row(Alarm)) as cur:
        await cur.execute(query, (alarm_id,))
        alarm = await cur.fetchone()
    if alarm is None:
        raise NotFound("alarm")
    return alarm


async def history(conn: AsyncConn, *, principal: Principal, alarm_id: int) -> list[AlarmChange]:
    await get_alarm(conn, principal=principal, alarm_id=alarm_id)  # scope check
    async with conn.cursor(row_factory=class_row(AlarmChange)) as cur:
        await cur.execute(
            "SELECT at, actor, from_state::text AS from_state, to_state::text AS to_state, note"
            " FROM alarm_changes WHERE alarm_id = %s ORDER BY at, id",
            (alarm_id,),
        )
        return await cur.fetchall()


async def audit_read(conn: AsyncConn, *, principal: Principal, alarm_ids: list[int], shown_as: str) -> None:
    """Log a read of alarms (health data: the kind, a fall, a heart rate in ``detail``, the person) as one
    ``read_health`` entry naming the alarms and residents read; call it inside the transaction of the read.
    An empty answer showed nothing and is not logged."""
    if not alarm_ids:
        return
    rows = await (
        await conn.execute(
            "SELECT array_agg(DISTINCT institution_id), array_agg(DISTINCT resident_id) FILTER"
            " (WHERE resident_id IS NOT NULL), array_agg(DISTINCT kind) FROM alarms WHERE id = ANY(%s)",
            (alarm_ids,),
        )
    ).fetchone()
    institutions, residents, kinds = rows if rows is not None else (None, None, None)
    await audit.read_health(
        conn,
        principal=principal,
        object_type="alarm",
        object_id=alarm_ids[0] if len(alarm_ids) == 1 else None,
        institution_id=institutions[0] if institutions and len(institutions) == 1 else None,
        detail={
            "as": shown_as,
            "fields": ["alarms"],
            "alarms": sorted(alarm_ids),
            "residents": sorted(residents or []),
            "kinds": sorted(kinds or []),
        },
    )


_ALLOWED: dict[State, tuple[State, ...]] = {
    State.ACKNOWLEDGED: (State.RAISED,),
    State.ATTENDING: (State.RAISED, State.ACKNOWLEDGED),
    State.RESOLVED: (State.RAISED, State.ACKNOWLEDGED, State.ATTENDING),
    State.CANCELLED: (State.RAISED, State.ACKNOWLEDGED, State.ATTENDING),
}
_STAMP = {
    State.ACKNOWLEDGED: "acknowledged_at",
    State.ATTENDING: "attending_at",
    State.RESOLVED: "closed_at",
    State.CANCELLED: "closed_at",
}


async def transition(
    conn: AsyncConn, *, principal: Principal, alarm_id: int, to: State, outcome: str | None, note: str
) -> Alarm:
    """Move an alarm on; the home's staff only (families and regulators read). Every change is kept."""
    require(principal, Action.HANDLE_ALARMS)
    if to in (State.RESOLVED, State.CANCELLED) and not (outcome or "").strip():
        raise Problem(422, "an outcome is required", [])
    current = await get_alarm(conn, principal=principal, alarm_id=alarm_id)
    if current.state not in _ALLOWED[to]:
        raise Problem(409, f"an alarm that is {current.state.value} cannot become {to.value}")
    stamp = sql.Identifier(_STAMP[to])
    async with conn.transaction():
        updated = await conn.execute(
            sql.SQL(
                "UPDATE alarms SET state = %s, {stamp} = coalesce({stamp}, clock_timestamp()),"
                " outcome = coalesce(%s, outcome) WHERE id = %s AND state = %s"
            ).format(stamp=stamp),
            (to.value, outcome, alarm_id, current.state.value),
        )
        if updated.rowcount != 1:
            raise Problem(409, "the alarm changed meanwhile; reload it")
        await changes.record(
            conn,
            alarm_id=alarm_id,
            actor=principal.username,
            old=current.state,
            new=to,
            note=note,
            user_id=principal.user_id,
        )
        if to in (State.RESOLVED, State.CANCELLED):
            await outbox.enqueue(conn, alarm_id=alarm_id, event=Event.RESOLVED)
    return await get_alarm(conn, principal=principal, alarm_id=alarm_id)
