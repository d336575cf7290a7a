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

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from eldercare.platform.alarms import changes
from eldercare.platform.alarms.models import OutcomeCode, Priority, State
from eldercare.platform.alarms.retry import Retry
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import INBOX_POSITION, DecryptionError, Vault

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
# A low battery from a gateway that does not send the level (before contract field ``level``): the device's last
# battery reading instead, if it is recent. The gateway raises the fault on a reading, so that reading is about
# the event's time; an hour back covers every class's reporting period (at most a few heartbeats of 10 min) and
# a battery runs down over days, so the level is still true. A minute after allows for the device's clock being
# ahead of the gateway's; a later reading (charged since, read while the engine catches up) is not the level
# that raised the alarm. The reading may still be on its way in the telemetry lane: then there is no level.
LEVEL_READING_BEFORE = timedelta(hours=1)
LEVEL_READING_AFTER = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class InboxEvent:
    id: int
    event_time: datetime
    device_id: int | None
    institution_id: int
    kind: str
    detail: dict[str, Any]
    published_at: datetime | None
    gateway_pk: int | None  # the gateway that delivered it (None: from before the inbox carried it)
    position_enc: bytes | None = None  # where it happened (an SOS press's place), sealed by ingest


def _opened(vault: Vault, event: InboxEvent) -> InboxEvent:
    """The event with its sealed position opened into its detail (``lat``, ``lon``), where the alarm's text keeps it
    sealed again. A position that does not open (a wrong key) is said in the detail; the alarm is raised all the
    same: who pressed SOS matters more than where."""
    if event.position_enc is None:
        return event
    try:
        lat, lon = vault.open_position(event.position_enc, column=INBOX_POSITION)
    except DecryptionError:
        log.error("alarm inbox %d: the %s's position does not open with this data key", event.id, event.kind)  # noqa: TRY400 - the reason is the message
        place: dict[str, Any] = {"position": "unreadable"}
    else:
        place = {"lat": lat, "lon": lon}
    return replace(event, detail={**event.detail, **place}, position_enc=None)


@dataclass(frozen=True, slots=True)
class Placement:
    bed_id: int | None
    resident_id: int | None
    fall_risk: str | None


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    id: int
    state: State
    last_event_at: datetime
    waiting_since: datetime | None  # acknowledged: the later of the acknowledgement and the last escalation


async def _open_alarm(conn: AsyncConn, device_id: int, kind: str) -> OpenAlarm | None:
    row = await (
        await conn.execute(
            "SELECT id, state::text, last_event_at, greatest(acknowledged_at, escalated_at) FROM alarms"
            " WHERE device_id = %s AND kind = %s AND state IN ('raised', 'acknowledged', 'attending')"
            " ORDER BY raised_at DESC LIMIT 1 FOR UPDATE",
            (device_id, kind),
        )
    ).fetchone()
    return OpenAlarm(row[0], State(row[1]), row[2], row[3]) if row is not None else None


async def _gateway_outage(conn: AsyncConn, gateway_pk: int | None) -> int | None:
    """The open offline alarm of the gateway that delivered an event, if it has one."""
    if gateway_pk is None:
        return None
    row = await (
        await conn.execute(
            "SELECT id FROM alarms WHERE gateway_pk = %s AND kind = 'gateway_offline'"
            " AND state IN ('raised', 'acknowledged', 'attending') ORDER BY raised_at LIMIT 1",
            (gateway_pk,),
        )
    ).fetchone()
    return row[0] if row is not None else None


async def _apply(
    conn: AsyncConn, vault: Vault, event: InboxEvent, place: Placement, params: dict[str, Any] | None
) -> int | None:
    """One event, its placement and the parameters of its rule (None: no rule, or the rule is disabled)."""
    if params is None or event.device_id is None:
        return None
    d = event.detail
    match event.kind:
        case "button" if d.get("action") == "cancel":
            return await _close(
                conn, event, "button", State.CANCELLED, "cancelled at the bedside", code=OutcomeCode.OTHER, vault=vault
            )
        case "bed_exit":
            return await _bed_exit(conn, vault, event, place, params)
        case "env_alarm":
            kind = str(d.get("kind"))
            if not d.get("active"):
                return await _close(
                    conn, event, kind, State.RESOLVED, "cleared by the sensor", code=OutcomeCode.OTHER, vault=vault
                )
            return await _raise(
                conn,
                vault,
                event,
                place,
                kind=kind,
                priority=Priority(params.get("priority", "emergency")),
                params=params,
            )
        case "fault":
            kind = f"device_{d.get('fault')}"
            if not d.get("active"):
                return await _close(
                    conn,
                    event,
                    kind,
                    State.RESOLVED,
                    "cleared by the device",
                    code=OutcomeCode.DEVICE_ISSUE,
                    vault=vault,
                )
            if d.get("fault") == "low_battery" and d.get("level") is None:
                event = await _with_battery_level(conn, event)
            return await _raise(conn, vault, event, place, kind=kind, priority=Priority.TECHNICAL, params=params)
        case _:
            return await _raise(
                conn,
                vault,
                event,
                place,
                kind=event.kind,
                priority=Priority(params.get("priority", "emergency")),
                params=params,
            )


async def _with_battery_level(conn: AsyncConn, event: InboxEvent) -> InboxEvent:
    """A low battery without its level: the level of the device's last battery reading around the event's time
    (:data:`LEVEL_READING_BEFORE`, :data:`LEVEL_READING_AFTER`) in its detail, so staff see how low; else as it is."""
    assert event.device_id is not None
    row = await (
        await conn.execute(
            "SELECT value FROM device_readings WHERE device_id = %s AND metric = 'battery' AND time BETWEEN %s AND %s"
            " ORDER BY time DESC LIMIT 1",
            (event.device_id, event.event_time - LEVEL_READING_BEFORE, event.event_time + LEVEL_READING_AFTER),
        )
    ).fetchone()
    if row is None:
        return event
    return replace(event, detail={**event.detail, "level": round(row[0])})


async def _close(
    conn: AsyncConn, event: InboxEvent, kind: str, state: State, outcome: str, *, code: OutcomeCode, vault: Vault
) -> int | None:
    """The device closes its open alarm of ``kind``. ``code`` is what the closing itself proves (migration 0015): a
    fault the device cleared was a device issue, a resident back in bed had left it; a cancel at the bedside tells
    only that a carer came, and a sensor back to normal not whether the smoke or gas was real: ``other``."""
    assert event.device_id is not None
    open_alarm = await _open_alarm(conn, event.device_id, kind)
    if open_alarm is None:
        return None
    if event.event_time < open_alarm.last_event_at:
        # Events reach the engine out of order (two ingest processes, a gateway's backlog): a press after this
        # cancel or clearing is in the alarm, so the resident called again after the carer came. It stays open.
        log.info("alarm %d: %s at %s is older than its last event; left open", open_alarm.id, kind, event.event_time)
        return None
    await changes.close(
        conn,
        vault=vault,
        alarm_id=open_alarm.id,
        old=open_alarm.state,
        new=state,
        outcome=outcome,
        outcome_code=code,
        actor="device",
    )
    return open_alarm.id


async def _raise(
    conn: AsyncConn,
    vault: Vault,
    event: InboxEvent,
    place: Placement,
    *,
    kind: str,
    priority: Priority,
    params: dict[str, Any],
) -> int:
    assert event.device_id is not None
    open_alarm = await _open_alarm(conn, event.device_id, kind)
    window = timedelta(seconds=float(params.get("repeat_window_s", 60)))
    if open_alarm is not None and (
        priority is Priority.TECHNICAL or event.event_time - open_alarm.last_event_at <= window
    ):
        await conn.execute(
            "UPDATE alarms SET repeat_count = repeat_count + 1, last_event_at = greatest(last_event_at, %s)"
            " WHERE id = %s",
            (event.event_time, open_alarm.id),
        )
        await conn.execute("SELECT pg_notify('alarms', %s)", (str(open_alarm.id),))  # the board shows the count
        waited = _waited_since_acknowledged(open_alarm, event.event_time)
        if priority is not Priority.TECHNICAL and waited is not None and waited >= window:
            # Pressed again long after someone said they had seen it, and nobody is there yet.
            await changes.escalate(
                conn,
                vault=vault,
                alarm_id=open_alarm.id,
                state=open_alarm.state,
                why=f"{event.kind} again {waited.total_seconds():.0f} s after it was acknowledged, nobody attending",
            )
        return open_alarm.id
    held_by = await _gateway_outage(conn, event.gateway_pk) if priority is Priority.TECHNICAL else None
    return await changes.raise_alarm(
        conn,
        vault=vault,
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
        gateway_pk=event.gateway_pk,
    )


def _waited_since_acknowledged(alarm: OpenAlarm, at: datetime) -> timedelta | None:
    if alarm.state is not State.ACKNOWLEDGED or alarm.waiting_since is None:
        return None
    return at - alarm.waiting_since


def _is_night(at: datetime, params: dict[str, Any]) -> bool:
    local = at.astimezone(ZoneInfo(str(params.get("timezone", "Asia/Shanghai")))).time()
    start = datetime.strptime(str(params.get("from", "21:00")), "%H:%M").time()  # noqa: DTZ007 - a time of day
    end = datetime.strptime(str(params.get("to", "06:00")), "%H:%M").time()  # noqa: DTZ007
    return start <= local < end if start <= end else (local >= start or local < end)


async def _bed_exit(
    conn: AsyncConn, vault: Vault, event: InboxEvent, place: Placement, params: dict[str, Any]
) -> int | None:
    """Leaving bed opens a watch (the ticker raises it after the delay); returning closes it.

    Exit and return may reach the engine in either order (two ingest processes, two engines): a return closes
    only a watch of an exit before it, and an exit whose return is already stored opens none (a watch left open
    would raise a false alarm, and keep the resident's next exit from being watched). An exit counts as at night
    when the delay ends in the night window, not only when it starts there: getting up at 20:59 and not coming
    back is an alarm at 21:04."""
    assert event.device_id is not None
    if event.detail.get("back"):
        row = await (
            await conn.execute(
                "UPDATE bed_exit_watches SET returned_at = %s WHERE device_id = %s AND returned_at IS NULL"
                " AND exited_at <= %s RETURNING alarm_id",
                (event.event_time, event.device_id, event.event_time),
            )
        ).fetchone()
        if row is not None and row[0] is not None:
            return await _close(
                conn, event, "bed_exit", State.RESOLVED, "back in bed", code=OutcomeCode.REAL_EVENT, vault=vault
            )
        return None
    risk_needed = _RISK_ORDER.get(str(params.get("min_fall_risk", "high")), 2)
    if place.resident_id is None or _RISK_ORDER.get(place.fall_risk or "low", 0) < risk_needed:
        return None
    delay = timedelta(seconds=float(params.get("delay_s", 0)))
    if not (_is_night(event.event_time, params) or _is_night(event.event_time + delay, params)):
        return None
    await conn.execute(
        "INSERT INTO bed_exit_watches (device_id, resident_id, exited_at) SELECT %(dev)s, %(res)s, %(at)s"
        " WHERE NOT EXISTS (SELECT 1 FROM bed_exit_watches WHERE device_id = %(dev)s AND returned_at IS NULL)"
        " AND NOT EXISTS (SELECT 1 FROM device_events WHERE device_id = %(dev)s AND kind = 'bed_exit'"
        " AND time > %(at)s AND (detail->>'back')::boolean)",
        {"dev": event.device_id, "res": place.resident_id, "at": event.event_time},
    )
    return None


# People calling for help and danger in the room go first when the inbox has a backlog (after an outage of
# the engine, or a gateway's stored alarms arriving at once); within a kind, events keep their order, so a
# press and its cancel, or an exit and the return, are applied as they happened.
_URGENT = ["button", "fall", "sos", "env_alarm"]
_DEVICE_LOCK = 0x616C  # the first key of the engine's advisory locks, one per device (the second key)

# Where each device of the batch was and whose rule applies, for the whole batch in one statement each
# (a statement per event made a backlog drain at a few hundred events a second).
_PLACEMENTS = """
SELECT e.i, db.device_id IS NOT NULL, db.bed_id, r.id, r.fall_risk::text
FROM unnest(%(devices)s::bigint[], %(times)s::timestamptz[]) WITH ORDINALITY AS e(device_id, t, i)
LEFT JOIN device_bindings db ON db.device_id = e.device_id AND db.during @> e.t
LEFT JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> e.t
LEFT JOIN residents r ON r.id = coalesce(db.resident_id, ba.resident_id)
"""
_RULES = """
SELECT q.i, rule_params(q.rule, q.institution_id, q.resident_id)
FROM unnest(%(rules)s::text[], %(institutions)s::bigint[], %(residents)s::bigint[]) WITH ORDINALITY
     AS q(rule, institution_id, resident_id, i)
"""


async def _context(conn: AsyncConn, events: list[InboxEvent]) -> list[tuple[Placement, dict[str, Any] | None]]:
    """Each event's placement at its time and the parameters of its rule (None when it has none in force)."""
    placed = [e for e in events if e.device_id is not None and e.kind in _RULE_OF_EVENT]
    places: dict[int, Placement] = {}
    if placed:
        rows = await (
            await conn.execute(
                _PLACEMENTS, {"devices": [e.device_id for e in placed], "times": [e.event_time for e in placed]}
            )
        ).fetchall()
        for i, bound, bed_id, resident_id, fall_risk in rows:  # one row an event: bindings never overlap
            if bound:
                places[placed[i - 1].id] = Placement(bed_id, resident_id, fall_risk)
    context: list[tuple[Placement, dict[str, Any] | None]] = [
        (places.get(e.id, Placement(None, None, None)), None) for e in events
    ]
    wanted = {e.id for e in placed}
    asked = [(n, e) for n, e in enumerate(events) if e.id in wanted]
    if asked:
        rows = await (
            await conn.execute(
                _RULES,
                {
                    "rules": [_RULE_OF_EVENT[e.kind] for _, e in asked],
                    "institutions": [e.institution_id for _, e in asked],
                    "residents": [context[n][0].resident_id for n, _ in asked],
                },
            )
        ).fetchall()
        for i, params in rows:
            n = asked[i - 1][0]
            context[n] = (context[n][0], params)
    return context


async def process_pending(conn: AsyncConn, *, vault: Vault, limit: int = 200) -> int:
    """Handle up to ``limit`` inbox events in one transaction, urgent kinds first; return how many were taken.
    ``vault`` seals the alarms' text (``text.py``)."""
    async with conn.transaction():
        rows = await (
            await conn.execute(
                "SELECT id, event_time, device_id, institution_id, kind, detail, published_at, gateway_pk, position_enc"
                " FROM alarm_inbox ORDER BY kind = ANY(%s) DESC, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (_URGENT, limit),
            )
        ).fetchall()
        if not rows:
            return 0
        events = [_opened(vault, InboxEvent(*row)) for row in rows]
        # One engine at a time per device, in a fixed order (no deadlock): two engines applying a press and its
        # cancel, or an exit and the return, at once would each miss what the other has not committed yet.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, d) FROM unnest(%s::int[]) AS d ORDER BY d",
            (_DEVICE_LOCK, sorted({e.device_id % 2**31 for e in events if e.device_id is not None})),
        )
        for event, (place, params) in zip(events, await _context(conn, events), strict=True):
            await _apply(conn, vault, event, place, params)
        await conn.execute("DELETE FROM alarm_inbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
    return len(rows)


async def run(database_url: str, *, vault: Vault, poll_s: float = 1.0) -> None:
    """Process the inbox until cancelled.

    Any error (the database going away, a read-only moment during a fail-over, a bug) is logged with its
    traceback and the loop reconnects after a growing, jittered pause; only cancellation ends it.
    """
    retry = Retry("alarm engine")
    while True:
        try:
            async with (
                await AsyncConnection.connect(database_url, autocommit=True) as listener,
                await AsyncConnection.connect(database_url, autocommit=True) as worker,
            ):
                await listener.execute("LISTEN alarm_inbox")
                log.info("alarm engine: listening")
                while True:
                    while await process_pending(worker, vault=vault) > 0:
                        pass
                    retry.ok()
                    async for _ in listener.notifies(timeout=poll_s, stop_after=1):
                        pass
        except Exception as exc:  # noqa: BLE001 - logged by Retry, with the traceback when not the database
            await retry.after(exc)
