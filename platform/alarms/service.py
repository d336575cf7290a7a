"""Reading alarms within a principal's scope, and moving them through their states.

What each role is shown is decided here, for the API, the live stream and the resident's page alike. The detail,
the outcome and the notes are health data, encrypted at rest (``text.py``): the home's staff and the resident's family
read the alarm in clear; regulators supervise homes, not persons, and see that an alarm has a detail or an outcome,
not what it says. An alarm's history is the home's working record: its staff see who did what and their notes,
regulators the same with the notes masked, and a family the story of the alarm (each change of state, when, and
whether a device, the system or the staff made it), without the staff's names or their internal notes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from eldercare.platform.alarms import changes, text
from eldercare.platform.alarms.models import OPEN_STATES, Alarm, AlarmChange, OutcomeCode, State
from eldercare.platform.api.errors import NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Action, Principal, Role, require, resident_filter, sees_names
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import outbox
from eldercare.platform.notify.outbox import Event
from eldercare.platform.registry.types import mask_text

SELECT = sql.SQL(
    "SELECT a.id, i.code AS institution_code, a.kind, a.priority::text AS priority, a.state::text AS state,"
    " d.code AS device_code, b.code AS bed_code, r.person_code, a.occurred_at, a.raised_at,"
    " a.acknowledged_at, a.attending_at, a.closed_at, a.outcome, a.outcome_enc, a.outcome_code::text AS outcome_code,"
    " a.repeat_count, a.detail,"
    " a.detail_enc"
    " FROM alarms a JOIN institutions i ON i.id = a.institution_id"
    " LEFT JOIN devices d ON d.id = a.device_id LEFT JOIN beds b ON b.id = a.bed_id"
    " LEFT JOIN residents r ON r.id = a.resident_id"
)
"""The columns :func:`shown` takes; callers add their WHERE (with the principal's scope) and ORDER BY."""

# Who made a change without being a user; every other actor is a user's name.
_NOT_USERS = ("system", "device")


def shown(row: dict[str, Any], *, vault: Vault, principal: Principal) -> Alarm:
    """A row of :data:`SELECT` as ``principal`` may see it: its text decrypted, masked for regulators."""
    alarm_id = row["id"]
    detail = text.open_detail(vault, row.pop("detail_enc"), row.pop("detail"), row=alarm_id)
    outcome = text.open_text(vault, row.pop("outcome_enc"), row.pop("outcome"), column=text.OUTCOME, row=alarm_id)
    if not sees_names(principal):
        detail, outcome = text.mask_detail(detail), mask_text(outcome)
    return Alarm.model_validate({**row, "detail": detail, "outcome": outcome})


def _scope(principal: Principal) -> sql.Composable:
    return resident_filter(principal, sql.SQL("a.institution_id"), sql.SQL("a.resident_id"))


async def list_alarms(
    conn: AsyncConn,
    *,
    principal: Principal,
    vault: Vault,
    open_only: bool,
    since: datetime | None,
    limit: int,
) -> list[Alarm]:
    query = sql.SQL(
        "{select} WHERE {scope} AND (NOT %(open)s OR a.state = ANY(%(open_states)s::alarm_state[]))"
        " AND (%(since)s::timestamptz IS NULL OR a.raised_at >= %(since)s)"
        " ORDER BY a.priority, a.raised_at DESC LIMIT %(limit)s"
    ).format(select=SELECT, scope=_scope(principal))
    params = {
        "open": open_only,
        "open_states": [s.value for s in OPEN_STATES],
        "since": since,
        "limit": limit,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    return [shown(row, vault=vault, principal=principal) for row in rows]


async def get_alarm(conn: AsyncConn, *, principal: Principal, vault: Vault, alarm_id: int) -> Alarm:
    query = sql.SQL("{select} WHERE a.id = %s AND {scope}").format(select=SELECT, scope=_scope(principal))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (alarm_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("alarm")
    return shown(row, vault=vault, principal=principal)


async def history(conn: AsyncConn, *, principal: Principal, vault: Vault, alarm_id: int) -> list[AlarmChange]:
    """The alarm's changes as ``principal`` may see them (see the module's docstring)."""
    in_scope = await (
        await conn.execute(
            sql.SQL("SELECT 1 FROM alarms a WHERE a.id = %s AND {}").format(_scope(principal)), (alarm_id,)
        )
    ).fetchone()
    if in_scope is None:
        raise NotFound("alarm")
    family = principal.role is Role.FAMILY
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(
                "SELECT id, at, actor, user_id, from_state::text AS from_state, to_state::text AS to_state,"
                " {note} FROM alarm_changes WHERE alarm_id = %s {changes} ORDER BY at, id"
            ).format(
                # a family's answer never holds a note, not even encrypted in memory
                note=sql.SQL("NULL::text AS note, NULL::bytea AS note_enc" if family else "note, note_enc"),
                changes=sql.SQL("AND from_state IS DISTINCT FROM to_state" if family else ""),
            ),
            (alarm_id,),
        )
        rows = await cur.fetchall()
    found: list[AlarmChange] = []
    for row in rows:
        actor = row["actor"]
        note = text.open_text(vault, row["note_enc"], row["note"], column=text.NOTE, row=row["id"]) or ""
        if family:
            actor = "staff" if row["user_id"] is not None or actor not in _NOT_USERS else actor
        elif not sees_names(principal):
            note = mask_text(note)
        found.append(
            AlarmChange(at=row["at"], actor=actor, from_state=row["from_state"], to_state=row["to_state"], note=note)
        )
    return found


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


def closing_code(outcome: str, code: OutcomeCode | None) -> OutcomeCode | None:
    """The code an alarm is closed with: the one given, else the outcome text itself when it is a code (as the staff
    board and clients written before the codes send them: ``{"outcome": "false_alarm"}``), else none (not known).
    Nothing else is read into the text: "false alarm, pressed in passing" stays unknown."""
    if code is not None:
        return code
    try:
        return OutcomeCode(outcome.strip())
    except ValueError:
        return None


async def transition(
    conn: AsyncConn,
    *,
    principal: Principal,
    vault: Vault,
    alarm_id: int,
    to: State,
    outcome: str | None,
    note: str,
    outcome_code: OutcomeCode | None,
) -> Alarm:
    """Move an alarm on; the home's staff only (families and regulators read). Every change is kept. Closing takes
    an outcome text and its code (:func:`closing_code`)."""
    require(principal, Action.HANDLE_ALARMS)
    closing = to in (State.RESOLVED, State.CANCELLED)
    if closing and not (outcome or "").strip():
        raise Problem(422, "an outcome is required", [])
    code = closing_code(outcome or "", outcome_code) if closing else None
    current = await get_alarm(conn, principal=principal, vault=vault, alarm_id=alarm_id)
    if current.state not in _ALLOWED[to]:
        raise Problem(409, f"an alarm that is {current.state.value} cannot become {to.value}")
    stamp = sql.Identifier(_STAMP[to])
    async with conn.transaction():
        updated = await conn.execute(
            sql.SQL(
                "UPDATE alarms SET state = %s, {stamp} = coalesce({stamp}, clock_timestamp()),"
                " outcome_enc = coalesce(%s, outcome_enc), outcome_code = coalesce(%s::alarm_outcome, outcome_code)"
                " WHERE id = %s AND state = %s"
            ).format(stamp=stamp),
            (
                to.value,
                vault.encrypt_text(outcome, column=text.OUTCOME),
                code.value if code else None,
                alarm_id,
                current.state.value,
            ),
        )
        if updated.rowcount != 1:
            raise Problem(409, "the alarm changed meanwhile; reload it")
        await changes.record(
            conn,
            vault=vault,
            alarm_id=alarm_id,
            actor=principal.username,
            old=current.state,
            new=to,
            note=note,
            user_id=principal.user_id,
        )
        if closing:
            await outbox.enqueue(conn, alarm_id=alarm_id, event=Event.RESOLVED)
            if current.kind == "gateway_offline":  # what its outage held back is no longer held by anything
                await changes.release_held(
                    conn,
                    vault=vault,
                    holder=alarm_id,
                    note=f"gateway alarm {alarm_id} closed by staff: released, the fault not cleared",
                )
    return await get_alarm(conn, principal=principal, vault=vault, alarm_id=alarm_id)
