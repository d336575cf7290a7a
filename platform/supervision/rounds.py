"""Night rounds: staff log a round of a floor (or of the whole home); the figures count those done at night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel

from eldercare.platform.api.errors import invalid
from eldercare.platform.auth.scope import Action, Obj, Principal, institution_filter, resolve
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.supervision.access import LOG_ROUNDS, require

LATE_LIMIT = timedelta(hours=24)  # a round may be logged up to a day after it was done


class Round(BaseModel):
    id: int
    institution_id: int
    floor_id: int | None
    floor: str | None
    user_id: int
    done_at: datetime
    recorded_at: datetime
    note: str


_SELECT = (
    "SELECT n.id, n.institution_id, n.floor_id, b.name || ' ' || f.name AS floor, n.user_id, n.done_at,"
    " n.recorded_at, n.note FROM night_rounds n LEFT JOIN floors f ON f.id = n.floor_id"
    " LEFT JOIN buildings b ON b.id = f.building_id"
)


async def log_round(
    conn: AsyncConn, *, principal: Principal, floor_id: int | None, done_at: datetime | None, note: str
) -> Round:
    require(principal, LOG_ROUNDS, "log night rounds")
    now = datetime.now(UTC)
    when = done_at or now
    if when > now + timedelta(minutes=1):
        raise invalid("body.done_at", "a round cannot be logged before it is done")
    if when < now - LATE_LIMIT:
        raise invalid("body.done_at", "a round is logged within 24 hours of being done")
    institution_id = principal.institution_id
    if floor_id is not None:
        institution_id = await resolve(conn, principal, Obj.FLOOR, floor_id, Action.READ_REGISTRY)
    row = await (
        await conn.execute(
            "INSERT INTO night_rounds (institution_id, floor_id, user_id, done_at, note) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id",
            (institution_id, floor_id, principal.user_id, when, note),
        )
    ).fetchone()
    assert row is not None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SELECT + " WHERE n.id = %s", (row[0],))
        found = await cur.fetchone()
    assert found is not None
    return Round(**found)


async def list_rounds(
    conn: AsyncConn, *, principal: Principal, since: datetime, until: datetime, limit: int
) -> list[Round]:
    query = sql.SQL(_SELECT + " WHERE {scope} AND n.done_at >= %s AND n.done_at < %s ORDER BY n.done_at DESC LIMIT %s")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query.format(scope=institution_filter(principal, sql.SQL("n.institution_id"))), (since, until, limit)
        )
        return [Round(**r) for r in await cur.fetchall()]
