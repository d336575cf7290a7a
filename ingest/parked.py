"""Operators' view of parked messages: list, inspect, replay.

Replaying a quarantined message (an unknown device that has since been registered, say) stores it as if
it had just arrived and marks the parked row replayed in the same transaction, so a replay happens once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Conn, Registry
from eldercare.ingest.store import BatchStore


@dataclass(frozen=True, slots=True)
class Parked:
    id: int
    kind: str
    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    institution: str | None
    gateway: str | None
    context: dict[str, Any]
    replayed_at: datetime | None


_SELECT = (
    "SELECT id, kind::text, received_at, topic, payload, reason, institution, gateway, context, replayed_at"
    " FROM parked_messages"
)


def list_parked(
    conn: Conn, *, kind: str | None = None, include_replayed: bool = False, limit: int = 100
) -> list[Parked]:
    with conn.cursor(row_factory=class_row(Parked)) as cur:
        return cur.execute(
            _SELECT + " WHERE (%(kind)s::parked_kind IS NULL OR kind = %(kind)s::parked_kind)"
            " AND (%(all)s OR replayed_at IS NULL) ORDER BY id DESC LIMIT %(limit)s",
            {"kind": kind, "all": include_replayed, "limit": limit},
        ).fetchall()


def get_parked(conn: Conn, parked_id: int) -> Parked | None:
    with conn.cursor(row_factory=class_row(Parked)) as cur:
        return cur.execute(_SELECT + " WHERE id = %s", (parked_id,)).fetchone()


def replay(conn: Conn, parked_id: int) -> str | None:
    """Store a parked message again. None when stored; else why it still cannot be (nothing changes)."""
    store = BatchStore(registry=Registry(retry_s=0))
    outcome: str | None = None
    with conn.transaction():
        row = conn.execute(
            "SELECT topic, payload, context FROM parked_messages WHERE id = %s AND replayed_at IS NULL FOR UPDATE",
            (parked_id,),
        ).fetchone()
        if row is None:
            return "no such parked message, or replayed already"
        topic, payload, context = row
        if context.get("index") is not None:
            outcome = store.replay_message(conn, topic=topic, raw=bytes(payload), sent_ms=int(context["sent"]))
        else:
            outcome = _replay_whole(conn, store, topic, bytes(payload))
        if outcome is not None:
            raise psycopg.Rollback
        conn.execute("UPDATE parked_messages SET replayed_at = now() WHERE id = %s", (parked_id,))
    return outcome


def _replay_whole(conn: Conn, store: BatchStore, topic: str, payload: bytes) -> str | None:
    result = store.write_in_transaction(conn, [Received(topic, payload)])
    if result.parked:
        return "still not storable: " + ", ".join(f"{k} x{n}" for k, n in result.parked.items())
    return None
