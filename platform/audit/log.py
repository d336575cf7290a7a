"""Appending to the audit log and verifying its hash chain.

Each entry's hash is ``SHA-256(prev_hash || canonical JSON of the entry)``; the first entry's
``prev_hash`` is 32 zero bytes. Entries are appended under a transaction-scoped advisory lock, so
concurrent writers queue and every entry links to the one committed before it; the lock is taken inside
the caller's transaction, so the entry commits (or rolls back) with the change it records.

What the chain proves: an edited, inserted or deleted entry breaks the link of the entry after it. A
removed *tail* (the newest entries) is not detectable from the table alone; anchoring the newest hash
elsewhere (a printed report, the regulator's system) closes that gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from eldercare.platform.auth.scope import Principal

GENESIS = bytes(32)
_LOCK_KEY = 0x61756474  # "audt"


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: datetime
    actor_user_id: int | None
    actor: str
    action: str
    object_type: str
    object_id: int | None
    institution_id: int | None
    detail: Mapping[str, Any]


def entry_hash(prev_hash: bytes, entry: Entry) -> bytes:
    body = {
        "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_user_id": entry.actor_user_id,
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "institution_id": entry.institution_id,
        "detail": entry.detail,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(prev_hash + canonical).digest()


async def record(
    conn: AsyncConnection[tuple[Any, ...]],
    *,
    principal: Principal | None,
    action: str,
    object_type: str,
    object_id: int | None,
    institution_id: int | None,
    detail: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> int:
    """Append one entry; call it inside the transaction of the change (or read) it records. Its seq."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        last = await (await conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")).fetchone()
        seq, prev = (1, GENESIS) if last is None else (last[0] + 1, bytes(last[1]))
        # Microseconds, as PostgreSQL keeps them, so the hash recomputes from the stored row.
        at = datetime.now(UTC)
        entry = Entry(
            seq=seq,
            at=at,
            actor_user_id=principal.user_id if principal else None,
            actor=actor or (principal.username if principal else "system"),
            action=action,
            object_type=object_type,
            object_id=object_id,
            institution_id=institution_id,
            detail=dict(detail or {}),
        )
        digest = entry_hash(prev, entry)
        await conn.execute(
            "INSERT INTO audit_log (seq, at, actor_user_id, actor, action, object_type, object_id, institution_id,"
            " detail, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            (
                seq,
                at,
                entry.actor_user_id,
                entry.actor,
                action,
                object_type,
                object_id,
                institution_id,
                json.dumps(entry.detail, ensure_ascii=False),
                prev,
                digest,
            ),
        )
    return seq


@dataclass(frozen=True, slots=True)
class Verdict:
    checked: int
    broken_seq: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


async def read_health(
    conn: AsyncConnection[tuple[Any, ...]],
    *,
    principal: Principal,
    object_type: str,
    object_id: int | None,
    institution_id: int | None,
    detail: Mapping[str, Any],
) -> int:
    """A read of health data (vitals, hospital stays, a claim's evidence, an inspection's residents): every one is
    logged, inside the transaction of the read, with what it showed in ``detail``."""
    return await record(
        conn,
        principal=principal,
        action="read_health",
        object_type=object_type,
        object_id=object_id,
        institution_id=institution_id,
        detail=detail,
    )


async def verify(conn: AsyncConnection[tuple[Any, ...]], *, batch: int = 5000) -> Verdict:
    """Walk the chain in order; the first entry whose link or hash does not match, if any."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    async with conn.transaction(), conn.cursor(name="audit_verify") as cur:
        cur.itersize = batch
        await cur.execute(
            "SELECT seq, at, actor_user_id, actor, action, object_type, object_id, institution_id, detail,"
            " prev_hash, hash FROM audit_log ORDER BY seq"
        )
        async for row in cur:
            entry = Entry(*row[:9])
            stored_prev, stored_hash = bytes(row[9]), bytes(row[10])
            if entry.seq != expected_seq:
                return Verdict(checked, expected_seq, f"entry {expected_seq} is missing (the next is {entry.seq})")
            if stored_prev != prev:
                return Verdict(checked, entry.seq, "its prev_hash is not the hash of the entry before it")
            if entry_hash(prev, entry) != stored_hash:
                return Verdict(checked, entry.seq, "its content does not match its hash (the row was changed)")
            prev = stored_hash
            expected_seq += 1
            checked += 1
    return Verdict(checked, None, "intact")
