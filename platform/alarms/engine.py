"""Turns device events handed over by ingest (``alarm_inbox``) into alarms, at once and never twice.

Ingest writes an inbox row in the transaction that stores the event and NOTIFYs ``alarm_inbox``. The
engine wakes on the notification (or every ``poll_s`` in case one was missed, and at start for anything
left from before a restart), takes rows with ``FOR UPDATE SKIP LOCKED``, applies the rules and deletes
the rows in the same transaction that writes the alarms and their outbox rows, so each event is turned
into alarms exactly once even with several platform processes. Changes are announced on ``alarms``.

Rules are data (``alarm_rules``; the most specific row for the institution and resident wins, see the
SQL function ``rule_params``). Time-based rules (a bed exit not followed by a return, vitals out of
range for a while, wandering, escalation) run in :mod:`eldercare.platform.alarms.ticker`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import AsyncConnection

from eldercare.platform.alarms import changes
from eldercare.platform.alarms.models import Priority, State
from eldercare.platform.auth.service import AsyncConn

log = logging.getLogger(__name__)

_RULE_OF_EVENT = {
    "button": "button",
    "fall": "fall",
    "sos": "sos",
    "env_alarm": "environment",
    "fault": "device_fault",
    "bed_exit": "bed_exit_night",
}
_RISK_ORDER = {"low": 0, "medium": 1, "high": 2}


@dataclass(frozen=True, slots=True)
class InboxEvent:
    id: int
    event_time: datetime
    device_id: int | None
    institution_id: int
    kind: str
    detail: dict[str, Any]
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class Placement:
    bed_id: int | None
    resident_id: int | None
    fall_risk: str | None


async def rule_params(
    conn: AsyncConn, *, rule: str, institution_id: int, resident_id: int | None
) -> dict[str, Any] | None:
    """The rule in force, or None when it is disabled for this institution or resident."""
    row = await (await conn.execute("SELECT rule_params(%s, %s, %s)", (rule, institution_id, resident_id))).fetchone()
    params: dict[str, Any] | None = row[0] if row is not None else None
    return params


async def _placement(conn: AsyncConn, device_id: int, at: datetime) -> Placement:
    row = await (
        await conn.execute(
            "SELECT db.bed_id, r.id, r.fall_risk::text FROM device_bindings db"
            " LEFT JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> %(t)s::timestamptz"
            " LEFT JOIN residents r ON r.id = coalesce(db.resident_id, ba.resident_id)"
            " WHERE db.device_id = %(d)s AND db.during @> %(t)s::timestamptz",
            {"d": device_id, "t": at},
        )
    ).fetchone()
    return Placement(*row) if row is not None else Placement(None, None, None)


async def _open_alarm(conn: AsyncConn, device_id: int, kind: str) -> tuple[int, str, datetime] | None:
    row = await (
        await conn.execute(
            "SELECT id, state::text, last_event_at FROM alarms WHERE device_id = %s AND kind = %s"
            " AND state IN ('raised', 'acknowledged', 'attending') ORDER BY raised_at DESC LIMIT 1 FOR UPDATE",
            (device_id, kind),
        )
    ).fetchone()
    return (row[0], row[1], row[2]) if row is not None else None


async def _gateway_outage(conn: AsyncConn, institution_id: int) -> int | None:
    row = await (
        await conn.execute(
            "SELECT id FROM alarms WHERE institution_id = %s AND kind = 'gateway_offline'"
            " AND state IN ('raised', 'acknowledged', 'attending') ORDER BY raised_at LIMIT 1",
            (institution_id,),
        )
    ).fetchone()
    return row[0] if row is not None else None


async def _apply(conn: AsyncConn, event: InboxEvent) -> int | None:
    rule = _RULE_OF_EVENT.get(event.kind)
    if rule is None or event.device_id is None:
        return None
    place = await _placement(conn, event.device_id, event.event_time)
    params = await rule_params(conn, rule=rule, institution_id=event.institution_id, resident_id=place.resident_id)
    if params is None:
        return None
    d = event.detail
    match event.kind:
        case "button" if d.get("action") == "cancel":
            return await _close(conn, event, "button", State.CANCELLED, "cancelled at the bedside")
        case "bed_exit":
            return await _bed_exit(conn, event, place, params)
        case "env_alarm":
            kind = str(d.get("kind"))
            if not d.get("active"):
                return await _close(conn, event, kind, State.RESOLVED, "cleared by the sensor")
            return await _raise(
                conn, event, place, kind=kind, priority=Priority(params.get("priority", "emergency")), params=params
            )
        case "fault":
            kind = f"device_{d.get('fault')}"
            if not d.get("active"):
                return await _close(conn, event, kind, State.RESOLVED, "cleared by the device")
            return await _raise(conn, event, place, kind=kind, priority=Priority.TECHNICAL, params=params)
        case _:
            return await _raise(
                conn,
                event,
                place,
                kind=event.kind,
                priority=Priority(params.get("priority", "emergency")),
                params=params,
            )


async def _close(conn: AsyncConn, event: InboxEvent, kind: str, state: State, outcome: str) -> int | None:
    assert event.device_id is not None
    open_alarm = await _open_alarm(conn, event.device_id, kind)
    if open_alarm is None:
        return None
    alarm_id, old, _ = open_alarm
    await changes.close(conn, alarm_id=alarm_id, old=State(old), new=state, outcome=outcome, actor="device")
    return alarm_id


async def _raise(
    conn: AsyncConn, event: InboxEvent, place: Placement, *, kind: str, priority: Priority, params: dict[str, Any]
) -> int:
    assert event.device_id is not None
    open_alarm = await _open_alarm(conn, event.device_id, kind)
    window = timedelta(seconds=float(params.get("repeat_window_s", 60)))
    if open_alarm is not None and (priority is Priority.TECHNICAL or event.event_time - open_alarm[2] <= window):
        await conn.execute(
            "UPDATE alarms SET repeat_count = repeat_count + 1, last_event_at = greatest(last_event_at, %s)"
            " WHERE id = %s",
            (event.event_time, open_alarm[0]),
        )
        await conn.execute("SELECT pg_notify('alarms', %s)", (str(open_alarm[0]),))  # the board shows the count
        return open_alarm[0]
    held_by = await _gateway_outage(conn, event.institution_id) if priority is Priority.TECHNICAL else None
    return await changes.raise_alarm(
        conn,
        institution_id=event.institution_id,
        kind=kind,
        priority=priority,
        device_id=event.device_id,
        bed_id=place.bed_id,
        resident_id=place.resident_id,
        occurred_at=event.event_time,
        published_at=event.published_at,
        detail=event.detail,
        held_by=held_by,
        note=f"{event.kind} from device",
    )


def _is_night(at: datetime, params: dict[str, Any]) -> bool:
    local = at.astimezone(ZoneInfo(str(params.get("timezone", "Asia/Shanghai")))).time()
    start = datetime.strptime(str(params.get("from", "21:00")), "%H:%M").time()  # noqa: DTZ007 - a time of day
    end = datetime.strptime(str(params.get("to", "06:00")), "%H:%M").time()  # noqa: DTZ007
    return start <= local < end if start <= end else (local >= start or local < end)


async def _bed_exit(conn: AsyncConn, event: InboxEvent, place: Placement, params: dict[str, Any]) -> int | None:
    """Leaving bed opens a watch (the ticker raises it after the delay); returning closes it."""
    assert event.device_id is not None
    if event.detail.get("back"):
        row = await (
            await conn.execute(
                "UPDATE bed_exit_watches SET returned_at = %s WHERE device_id = %s AND returned_at IS NULL"
                " RETURNING alarm_id",
                (event.event_time, event.device_id),
            )
        ).fetchone()
        if row is not None and row[0] is not None:
            return await _close(conn, event, "bed_exit", State.RESOLVED, "back in bed")
        return None
    risk_needed = _RISK_ORDER.get(str(params.get("min_fall_risk", "high")), 2)
    if place.resident_id is None or _RISK_ORDER.get(place.fall_risk or "low", 0) < risk_needed:
        return None
    if not _is_night(event.event_time, params):
        return None
    await conn.execute(
        "INSERT INTO bed_exit_watches (device_id, resident_id, exited_at) SELECT %s, %s, %s"
        " WHERE NOT EXISTS (SELECT 1 FROM bed_exit_watches WHERE device_id = %s AND returned_at IS NULL)",
        (event.device_id, place.resident_id, event.event_time, event.device_id),
    )
    return None


async def process_pending(conn: AsyncConn, *, limit: int = 200) -> int:
    """Handle up to ``limit`` inbox events in one transaction; return how many were taken."""
    async with conn.transaction():
        rows = await (
            await conn.execute(
                "SELECT id, event_time, device_id, institution_id, kind, detail, published_at"
                " FROM alarm_inbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            )
        ).fetchall()
        if not rows:
            return 0
        for row in rows:
            await _apply(conn, InboxEvent(*row))
        await conn.execute("DELETE FROM alarm_inbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
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
