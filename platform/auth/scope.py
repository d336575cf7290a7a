"""The one place where a user's scope becomes SQL.

Staff and heads see their institution, regulators every institution whose region code starts with theirs,
families the residents linked to them, admins everything. Every query of scoped data takes its filter
from :func:`institution_filter` or :func:`resident_filter`; a row outside the scope is therefore never
read, and the API answers 404 for it, as for a row that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from psycopg import sql


class Role(StrEnum):
    STAFF = "staff"
    HEAD = "head"
    FAMILY = "family"
    REGULATOR = "regulator"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    institution_id: int | None
    region_code: str | None


def institution_filter(principal: Principal, column: sql.Composable) -> sql.Composable:
    """A condition on an ``institution_id`` column that keeps only the principal's institutions."""
    match principal.role:
        case Role.ADMIN:
            return sql.SQL("TRUE")
        case Role.STAFF | Role.HEAD:
            return sql.SQL("{} = {}").format(column, sql.Literal(principal.institution_id))
        case Role.REGULATOR:
            return sql.SQL("{} IN (SELECT id FROM institutions WHERE region_code LIKE {})").format(
                column, sql.Literal(f"{principal.region_code}%")
            )
        case Role.FAMILY:
            return sql.SQL(
                "{} IN (SELECT r.institution_id FROM family_links f JOIN residents r ON r.id = f.resident_id"
                " WHERE f.user_id = {})"
            ).format(column, sql.Literal(principal.user_id))
    raise AssertionError(principal.role)  # pragma: no cover


def resident_filter(principal: Principal, institution: sql.Composable, resident: sql.Composable) -> sql.Composable:
    """A condition for rows about a resident: families are narrowed to their own residents."""
    base = institution_filter(principal, institution)
    if principal.role is Role.FAMILY:
        return sql.SQL("({} AND {} IN (SELECT resident_id FROM family_links WHERE user_id = {}))").format(
            base, resident, sql.Literal(principal.user_id)
        )
    return base
