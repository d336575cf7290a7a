"""Operators' view of parked messages: list, inspect, replay.

Replaying a quarantined message (an unknown device that has since been registered, say) stores it as if
it had just arrived and marks the parked row replayed in the same transaction, so a replay happens once.

A parked message's bytes are what a device sent (heart rates, positions): ingest seals them with the data key
(``payload_enc``, migration 0026), and showing or replaying one opens them. :data:`SEALING` declares the column,
so that ``eldercare db migrate`` seals the payloads an older version parked in clear.
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
from eldercare.platform.crypto import PARKED_PAYLOAD, Vault
from eldercare.platform.db.migrate import ClearColumn, ClearTable, Sealing

SEALING = Sealing(
    since=26,
    what="parked payloads",
    tables=(ClearTable("parked_messages", "id", (ClearColumn("payload", "payload IS NOT NULL", "NULL"),)),),
)


@dataclass(frozen=True, slots=True)
class Parked:
    id: int
    kind: str
    received_at: datetime
    topic: str
    payload: bytes | None  # as it came; None in a listing (opened only to show or replay one)
    reason: str
    institution: str | None
    gateway: str | None
    context: dict[str, Any]
    replayed_at: datetime | None


_LISTED = (
    "SELECT id, kind::text, received_at, topic, NULL::bytea AS payload, reason, institution, gateway, context,"
    " replayed_at FROM parked_messages"
)
_SELECT = (
    "SELECT id, kind::text, received_at, topic, payload_enc, payload, reason, institution, gateway, context,"
    " replayed_at FROM parked_messages"
)


def _opened(vault: Vault, sealed: bytes | None, clear: bytes | None) -> bytes:
    """A parked payload: sealed by ingest, or in clear from an older version (until `db migrate` seals it)."""
    if sealed is None:
        assert clear is not None  # the table's CHECK
        return bytes(clear)
    return vault.open_bytes(sealed, column=PARKED_PAYLOAD)


def list_parked(
    conn: Conn, *, kind: str | None = None, include_replayed: bool = False, limit: int = 100
) -> list[Parked]:
    with conn.cursor(row_factory=class_row(Parked)) as cur:
        return cur.execute(
            _LISTED + " WHERE (%(kind)s::parked_kind IS NULL OR kind = %(kind)s::parked_kind)"
            " AND (%(all)s OR replayed_at IS NULL) ORDER BY id DESC LIMIT %(limit)s",
            {"kind": kind, "all": include_replayed, "limit": limit},
        ).fetchall()


def get_parked(conn: Conn, parked_id: int, vault: Vault) -> Parked | None:
    """One parked message, its payload opened (a wrong key raises :class:`DecryptionError`)."""
    row = conn.execute(_SELECT + " WHERE id = %s", (parked_id,)).fetchone()
    if row is None:
        return None
    id_, kind, received_at, topic, sealed, clear, reason, institution, gateway, context, replayed_at = row
    payload = _opened(vault, sealed, clear)
    return Parked(id_, kind, received_at, topic, payload, reason, institution, gateway, context, replayed_at)


def replay(conn: Conn, parked_id: int, vault: Vault) -> str | None:
    """Store a parked message again. None when stored; else why it still cannot be (nothing changes). ``vault``
    seals the positions it stores."""
    store = BatchStore(registry=Registry(retry_s=0), vault=vault)
    outcome: str | None = None
    with conn.transaction():
        row = conn.execute(
            "SELECT topic, payload_enc, payload, context FROM parked_messages"
            " WHERE id = %s AND replayed_at IS NULL FOR UPDATE",
            (parked_id,),
        ).fetchone()
        if row is None:
            return "no such parked message, or replayed already"
        topic, sealed, clear, context = row
        payload = _opened(vault, sealed, clear)
        if context.get("index") is not None:
            outcome = store.replay_message(conn, topic=topic, raw=payload, sent_ms=int(context["sent"]))
        else:
            outcome = _replay_whole(conn, store, topic, payload)
        if outcome is not None:
            raise psycopg.Rollback
        conn.execute("UPDATE parked_messages SET replayed_at = now() WHERE id = %s", (parked_id,))
    return outcome


def _replay_whole(conn: Conn, store: BatchStore, topic: str, payload: bytes) -> str | None:
    result = store.write_in_transaction(conn, [Received(topic, payload)])
    if result.parked:
        return "still not storable: " + ", ".join(f"{k} x{n}" for k, n in result.parked.items())
    return None
