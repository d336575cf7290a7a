"""Who may do what in supervision, and which homes a request is about.

Scope itself (which homes a user sees) comes from :func:`eldercare.platform.auth.scope.institution_filter`, and
which region a request is about from :func:`~eldercare.platform.auth.scope.check_region`; this module only decides
roles per action and narrows the scope to a region or one home.
"""

from __future__ import annotations

from datetime import date

from psycopg import sql

from eldercare.platform.api.errors import NotFound, invalid
from eldercare.platform.auth.scope import Principal, Role, check_region, institution_filter
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.supervision.errors import forbidden

MAX_PERIOD_DAYS = 366
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)

# Role sets per kind of action.
READ_FIGURES = frozenset({Role.HEAD, Role.REGULATOR, Role.ADMIN})
RISK_INSPECTION = frozenset({Role.STAFF, Role.HEAD, Role.REGULATOR, Role.ADMIN})
LOG_ROUNDS = frozenset({Role.STAFF, Role.HEAD})
SUPERVISE = frozenset({Role.REGULATOR, Role.ADMIN})


def require(principal: Principal, roles: frozenset[Role], what: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"a {principal.role.value} user may not {what}")


def check_period(start: date, end: date) -> None:
    if not EARLIEST <= start <= LATEST:
        raise invalid("query.from", f"a day from {EARLIEST} to {LATEST}")
    if not EARLIEST <= end <= LATEST:
        raise invalid("query.to", f"a day from {EARLIEST} to {LATEST}")
    if end < start:
        raise invalid("query.to", "the period ends before it starts")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise invalid("query.to", f"a period is at most {MAX_PERIOD_DAYS} days")


async def homes_in_scope(
    conn: AsyncConn, *, principal: Principal, region: str | None, institution_id: int | None = None
) -> list[int]:
    """Ids of the homes the caller sees, narrowed to ``region`` and to one home if asked."""
    area = check_region(principal, region) if principal.role in SUPERVISE else ""
    query = sql.SQL(
        "SELECT id FROM institutions WHERE {scope} AND starts_with(region_code, %(region)s)"
        " AND (%(one)s::bigint IS NULL OR id = %(one)s) ORDER BY id"
    ).format(scope=institution_filter(principal, sql.SQL("id")))
    rows = await (await conn.execute(query, {"region": area, "one": institution_id})).fetchall()
    if institution_id is not None and not rows:
        raise NotFound("institution")
    return [int(r[0]) for r in rows]
