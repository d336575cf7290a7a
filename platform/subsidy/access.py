"""Who may do what with subsidies, and which homes a request is about.

Which homes a user sees comes from :func:`eldercare.platform.auth.scope.institution_filter` (the one place
where scope becomes SQL), and which region a request is about from :func:`~eldercare.platform.auth.scope.check_region`;
this module decides the roles per action and narrows the scope to a region.
"""

from __future__ import annotations

from datetime import date

from psycopg import sql

from eldercare.platform.api.errors import invalid
from eldercare.platform.auth.scope import Principal, Role, check_region, institution_filter
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.subsidy.errors import forbidden

READ = frozenset({Role.HEAD, Role.REGULATOR, Role.ADMIN})  # claims, verdicts, totals, lists
SUBMIT = frozenset({Role.HEAD, Role.ADMIN})  # a home's claim for money is its head's act
SUPERVISE = frozenset({Role.REGULATOR, Role.ADMIN})  # runs, registers, schedules, decisions, enrolments
# what other homes and the death register recorded of a person a home claims for (disclosure.py)
SEE_ELSEWHERE = SUPERVISE


def require(principal: Principal, roles: frozenset[Role], what: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"a {principal.role.value} user may not {what}")


def run_region(principal: Principal, region: str | None) -> str:
    """The region a supervisor acts on; an admin must name one."""
    area = check_region(principal, region)
    if not area:
        raise invalid("query.region", "name the region (an administrative division code)")
    return area


async def homes_in_scope(conn: AsyncConn, *, principal: Principal, region: str | None) -> list[int]:
    """Ids of the homes the caller sees, narrowed to ``region`` for supervisors (heads see their home)."""
    area = check_region(principal, region) if principal.role in SUPERVISE else ""
    query = sql.SQL(
        "SELECT id FROM institutions WHERE {scope} AND starts_with(region_code, %(region)s) ORDER BY id"
    ).format(scope=institution_filter(principal, sql.SQL("id")))
    rows = await (await conn.execute(query, {"region": area})).fetchall()
    return [int(r[0]) for r in rows]


def parse_month(text: str) -> date:
    """``YYYY-MM`` (or ``YYYY-MM-01``) as the month's first day; ValueError with the reason otherwise."""
    parts = text.strip().split("-")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts) or (len(parts) == 3 and parts[2] != "01"):
        raise ValueError("a month as YYYY-MM")
    year, month = int(parts[0]), int(parts[1])
    if not 2000 <= year <= 2100 or not 1 <= month <= 12:
        raise ValueError("a month as YYYY-MM between 2000 and 2100")
    return date(year, month, 1)


def month_query(text: str, *, field: str = "query.month") -> date:
    try:
        return parse_month(text)
    except ValueError as exc:
        raise invalid(field, str(exc)) from exc
