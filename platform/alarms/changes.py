"""Every change of an alarm goes through here: the row, its history entry, the outbox, the announcement. The
detail, the outcome and the notes are written encrypted (``text.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eldercare.platform.alarms import text
from eldercare.platform.alarms.models import OutcomeCode, Priority, State
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import outbox
from eldercare.platform.notify.outbox import Event


async def record(
    conn: AsyncConn,
    *,
    vault: Vault,
    alarm_id: int,
    actor: str,
    old: State | None,
    new: State,
    note: str,
    user_id: int | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO alarm_changes (alarm_id, user_id, actor, from_state, to_state, note_enc)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (alarm_id, user_id, actor, old.value if old else None, new.value, vault.encrypt_text(note, column=text.NOTE)),
    )
    await conn.execute("SELECT pg_notify('alarms', %s)", (str(alarm_id),))


async def raise_alarm(
    conn: AsyncConn,
    *,
    vault: Vault,
    institution_id: int,
    kind: str,
    priority: Priority,
    device_id: int | None,
    bed_id: int | None,
    resident_id: int | None,
    occurred_at: datetime,
    published_at: datetime | None,
    detail: dict[str, Any],
    held_by: int | None,
    note: str,
    gateway_pk: int | None = None,
) -> int:
    row = await (
        await conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, gateway_pk,"
            " occurred_at, published_at, last_event_at, detail_enc, held_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                institution_id,
                kind,
                priority.value,
                device_id,
                bed_id,
                resident_id,
                gateway_pk,
                occurred_at,
                published_at,
                occurred_at,
                text.seal_detail(vault, detail),
                held_by,
            ),
        )
    ).fetchone()
    assert row is not None
    alarm_id: int = row[0]
    if held_by is not None:
        await conn.execute("UPDATE alarms SET repeat_count = repeat_count + 1 WHERE id = %s", (held_by,))
        note = f"{note}; held back by gateway alarm {held_by}"
    await record(conn, vault=vault, alarm_id=alarm_id, actor="system", old=None, new=State.RAISED, note=note)
    if held_by is None:
        await outbox.enqueue(conn, alarm_id=alarm_id, event=Event.RAISED)
    return alarm_id


async def release_held(conn: AsyncConn, *, vault: Vault, holder: int, note: str) -> int:
    """The alarms held back under ``holder`` (a gateway's outage) become alarms like any other, because it is
    closing: the gateway is back (its devices did not clear these faults, so they are real), or staff closed it.
    Those nobody has seen are raised from now (the outage's time was nobody's delay) and their people are told;
    the number released."""
    released = await (
        await conn.execute(
            "UPDATE alarms SET held_by = NULL,"
            " raised_at = CASE WHEN state = 'raised' THEN clock_timestamp() ELSE raised_at END"
            " WHERE held_by = %s AND state IN ('raised', 'acknowledged', 'attending') RETURNING id, state::text",
            (holder,),
        )
    ).fetchall()
    for alarm_id, state in released:
        await record(
            conn, vault=vault, alarm_id=alarm_id, actor="system", old=State(state), new=State(state), note=note
        )
        if state == State.RAISED:
            await outbox.enqueue(conn, alarm_id=alarm_id, event=Event.RAISED)
    return len(released)


async def close(
    conn: AsyncConn,
    *,
    vault: Vault,
    alarm_id: int,
    old: State,
    new: State,
    outcome: str,
    outcome_code: OutcomeCode,
    actor: str,
    user_id: int | None = None,
    note: str | None = None,
) -> None:
    """Close an alarm for a device or the system, with the outcome's text (sealed) and its code (in clear)."""
    await conn.execute(
        "UPDATE alarms SET state = %s, closed_at = coalesce(closed_at, clock_timestamp()), outcome_enc = %s,"
        " outcome_code = %s WHERE id = %s",
        (new.value, vault.encrypt_text(outcome, column=text.OUTCOME), outcome_code.value, alarm_id),
    )
    await record(
        conn, vault=vault, alarm_id=alarm_id, actor=actor, old=old, new=new, note=note or outcome, user_id=user_id
    )
    await outbox.enqueue(conn, alarm_id=alarm_id, event=Event.RESOLVED)


# One tier up, or the top tier again (its people told again), as the alarm's escalation rule allows.
_ESCALATE = """
UPDATE alarms a SET escalation_level = least(a.escalation_level + 1, (r.p->>'tiers')::int),
                    escalated_at = clock_timestamp()
FROM (SELECT rule_params('escalation', institution_id, resident_id) AS p FROM alarms WHERE id = %(alarm)s) r
WHERE a.id = %(alarm)s AND r.p IS NOT NULL AND (r.p->>'tiers')::int > 0
RETURNING a.escalation_level
"""


async def escalate(conn: AsyncConn, *, vault: Vault, alarm_id: int, state: State, why: str) -> int | None:
    """Escalate an open alarm now; returns the new level (None when its rule has no tiers)."""
    row = await (await conn.execute(_ESCALATE, {"alarm": alarm_id})).fetchone()
    if row is None:
        return None
    level: int = row[0]
    await escalated(conn, vault=vault, alarm_id=alarm_id, state=state, level=level, why=why)
    return level


async def escalated(conn: AsyncConn, *, vault: Vault, alarm_id: int, state: State, level: int, why: str) -> None:
    """The history entry and the outbox rows of an escalation already written to the alarm."""
    await record(
        conn,
        vault=vault,
        alarm_id=alarm_id,
        actor="system",
        old=state,
        new=state,
        note=f"{why}: escalated to level {level}",
    )
    await outbox.enqueue(conn, alarm_id=alarm_id, event=Event.ESCALATED, level=level)
