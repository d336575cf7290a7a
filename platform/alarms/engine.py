"""Turns device events handed over by ingest (``alarm_inbox``) into alarms, at once and never twice.

Ingest writes an inbox row in the transaction that stores the event and NOTIFYs ``alarm_inbox``. The
engine wakes on the notification (or every ``poll_s`` in case one was missed, and at start for anything
left from before a restart), takes rows with ``FOR UPDATE SKIP LOCKED``, applies the rules and deletes
the rows in the same transaction that writes the alarms, so each event is turned into alarms exactly
once even with several platform processes. Changes are announced on the ``alarms`` channel.

Rules here are the foundation's; per-institution and per-resident rules come with the alerting work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection

from eldercare.platform.alarms.models import Priority, State
from eldercare.platform.auth.service import AsyncConn

log = logging.getLogger(__name__)

REPEAT_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class InboxEvent:
    id: int
    event_time: datetime
    device_id: int
    institution_id: int
    kind: str
    detail: dict[str, Any]
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class Raise:
    kind: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class Close:
    kind: str
    state: State
    outcome: str


def decide(event: InboxEvent) -> Raise | Close | None:
    """What an event means: raise an alarm, close an open one, or nothing."""
    d = event.detail
    match event.kind:
        case "button" if d.get("action") == "cancel":
            return Close("button", State.CANCELLED, "cancelled at the bedside")
        case "button":
            return Raise("button", Priority.EMERGENCY)
        case "fall":
            return Raise("fall", Priority.EMERGENCY)
        case "sos":
            return Raise("sos", Priority.EMERGENCY)
        case "env_alarm" if d.get("active"):
            return Raise(str(d.get("kind")), Priority.EMERGENCY)
        case "fault" if d.get("active"):
            return Raise(f"device_{d.get('fault')}", Priority.TECHNICAL)
        case "fault":
            return Close(f"device_{d.get('fault')}", State.RESOLVED, "cleared by the device")
    return None


async def _apply(conn: AsyncConn, event: InboxEvent) -> int | None:
    decision = decide(event)
    if decision is None:
        return None
    where = await (
        await conn.execute(
            "SELECT db.bed_id, coalesce(db.resident_id, ba.resident_id) FROM device_bindings db"
            " LEFT JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> %(t)s::timestamptz"
            " WHERE db.device_id = %(d)s AND db.during @> %(t)s::timestamptz",
            {"d": event.device_id, "t": event.event_time},
        )
    ).fetchone()
    bed_id, resident_id = where if where is not None else (None, None)
    open_alarm = await (
        await conn.execute(
            "SELECT id, state::text, last_event_at FROM alarms WHERE device_id = %s AND kind = %s"
            " AND state IN ('raised', 'acknowledged', 'attending') ORDER BY raised_at DESC LIMIT 1 FOR UPDATE",
            (event.device_id, decision.kind),
        )
    ).fetchone()
    if isinstance(decision, Close):
        if open_alarm is None:
            return None
        await conn.execute(
            "UPDATE alarms SET state = %s, closed_at = clock_timestamp(), outcome = %s WHERE id = %s",
            (decision.state.value, decision.outcome, open_alarm[0]),
        )
        await _change(conn, open_alarm[0], actor="device", old=open_alarm[1], new=decision.state, note=decision.outcome)
        return int(open_alarm[0])
    repeat = open_alarm is not None and (
        decision.priority is Priority.TECHNICAL or event.event_time - open_alarm[2] <= REPEAT_WINDOW
    )
    if repeat and open_alarm is not None:
        await conn.execute(
            "UPDATE alarms SET repeat_count = repeat_count + 1, last_event_at = greatest(last_event_at, %s)"
            " WHERE id = %s",
            (event.event_time, open_alarm[0]),
        )
        return int(open_alarm[0])
    row = await (
        await conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " published_at, last_event_at, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
            " RETURNING id",
            (
                event.institution_id,
                decision.kind,
                decision.priority.value,
                event.device_id,
                bed_id,
                resident_id,
                event.event_time,
                event.published_at,
                event.event_time,
                json.dumps(event.detail),
            ),
        )
    ).fetchone()
    assert row is not None
    await _change(conn, row[0], actor="system", old=None, new=State.RAISED, note=f"{event.kind} from device")
    return int(row[0])


async def _change(conn: AsyncConn, alarm_id: int, *, actor: str, old: str | None, new: State, note: str) -> None:
    await conn.execute(
        "INSERT INTO alarm_changes (alarm_id, actor, from_state, to_state, note) VALUES (%s, %s, %s, %s, %s)",
        (alarm_id, actor, old, new.value, note),
    )


async def process_pending(conn: AsyncConn, *, limit: int = 200) -> int:
    """Handle up to ``limit`` inbox events in one transaction; return how many were taken."""
    async with conn.transaction():
        rows = await (
            await conn.execute(
                "SELECT id, event_time, device_id, institution_id, kind, detail, published_at FROM alarm_inbox"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            )
        ).fetchall()
        if not rows:
            return 0
        changed: set[int] = set()
        for row in rows:
            alarm_id = await _apply(conn, InboxEvent(*row))
            if alarm_id is not None:
                changed.add(alarm_id)
        await conn.execute("DELETE FROM alarm_inbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
        for alarm_id in sorted(changed):
            await conn.execute("SELECT pg_notify('alarms', %s)", (str(alarm_id),))
    return len(rows)


async def run(database_url: str, *, poll_s: float = 1.0) -> None:
    """Process the inbox until cancelled. Reconnects when the database goes away."""
    while True:
        try:
            async with (
                await AsyncConnection.connect(database_url, autocommit=True) as listener,
                await AsyncConnection.connect(database_url, autocommit=True) as worker,
            ):
                await listener.execute("LISTEN alarm_inbox")
                log.info("alarm engine: listening")
                while True:
                    while await process_pending(worker) > 0:
                        pass
                    async for _ in listener.notifies(timeout=poll_s, stop_after=1):
                        pass
        except psycopg.OperationalError as exc:
            log.warning("alarm engine: database unavailable (%s); retrying in 1 s", exc)
            await asyncio.sleep(1.0)
