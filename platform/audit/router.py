"""``/api/v1/audit``: the log for platform admins, and a check of its chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg.rows import dict_row
from pydantic import BaseModel

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.audit import log
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action
from eldercare.platform.registry.types import MAX_ID, RESPONSES, Limit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=RESPONSES)


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    actor_user_id: int | None
    actor: str
    action: str
    object_type: str
    object_id: int | None
    institution_id: int | None
    detail: dict[str, Any]


class ChainCheck(BaseModel):
    ok: bool
    checked: int
    broken_seq: int | None
    reason: str


@router.get("")
async def list_entries(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    object_type: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
    object_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Limit = 100,
) -> list[AuditEntry]:
    """Entries in order, optionally about one object."""
    scope.require(principal, Action.READ_AUDIT)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT seq, at, actor_user_id, actor, action, object_type, object_id, institution_id, detail"
            " FROM audit_log WHERE seq > %(after)s AND (%(type)s::text IS NULL OR object_type = %(type)s)"
            " AND (%(id)s::bigint IS NULL OR object_id = %(id)s) ORDER BY seq LIMIT %(limit)s",
            {"after": after_seq, "type": object_type, "id": object_id, "limit": limit},
        )
        return [AuditEntry.model_validate(r) for r in await cur.fetchall()]


@router.get("/verify")
async def verify_chain(conn: Conn, principal: CurrentPrincipal) -> ChainCheck:
    """Recompute the hash chain; the first broken link, if any."""
    scope.require(principal, Action.READ_AUDIT)
    verdict = await log.verify(conn)
    return ChainCheck(ok=verdict.ok, checked=verdict.checked, broken_seq=verdict.broken_seq, reason=verdict.reason)
