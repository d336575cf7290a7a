"""The one place where a user's scope becomes SQL, and where a role's permissions are decided.

Staff and heads see their institution, regulators every institution whose region code starts with theirs,
families the residents linked to them, admins everything. Every query of scoped data takes its filter
from :func:`institution_filter` or :func:`resident_filter`; a row outside the scope is therefore never
read, and the API answers 404 for it, as for a row that does not exist.

What a role may do at all is :data:`PERMISSIONS`; :func:`require` answers 403 for the rest. An endpoint
about one object calls :func:`resolve`, which checks the permission first (403, telling nothing about the
object) and then that the object is in the caller's scope (404 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection, sql

from eldercare.platform import divisions
from eldercare.platform.api.errors import NotFound, Problem, invalid


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


class Action(StrEnum):
    READ_REGISTRY = "read_registry"  # places, beds, devices, gateways, stays
    WRITE_REGISTRY = "write_registry"  # places, beds, devices, admissions, stays, imports, labels
    READ_RESIDENT = "read_resident"  # a resident's record and contacts (personal data; audited)
    WRITE_RESIDENT = "write_resident"
    REVEAL_ID_NUMBER = "reveal_id_number"  # the ID number in clear (audited)
    READ_INSTITUTION = "read_institution"
    CREATE_INSTITUTION = "create_institution"
    UPDATE_INSTITUTION = "update_institution"
    MANAGE_GATEWAYS = "manage_gateways"
    READ_USERS = "read_users"
    MANAGE_USERS = "manage_users"
    READ_AUDIT = "read_audit"
    READ_APPLICATIONS = "read_applications"  # service applications routed to a provider
    HANDLE_APPLICATIONS = "handle_applications"
    READ_ALARM_RULES = "read_alarm_rules"  # a home's alarm rules (residents' overrides) and staff rosters
    WRITE_ALARM_RULES = "write_alarm_rules"
    HANDLE_ALARMS = "handle_alarms"  # acknowledge, attend, resolve, cancel
    READ_ALARM_REPORTS = "read_alarm_reports"  # response times per home or shift: all its residents' alarms


_ALL = frozenset(Role)
_HOME = frozenset({Role.STAFF, Role.HEAD, Role.ADMIN})
_HEADS = frozenset({Role.HEAD, Role.ADMIN})

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.READ_REGISTRY: _HOME | {Role.REGULATOR},
    Action.WRITE_REGISTRY: _HOME,
    Action.READ_RESIDENT: _ALL,
    Action.WRITE_RESIDENT: _HOME,
    Action.REVEAL_ID_NUMBER: _HEADS,
    Action.READ_INSTITUTION: _ALL,
    Action.CREATE_INSTITUTION: frozenset({Role.ADMIN}),
    Action.UPDATE_INSTITUTION: _HEADS,
    Action.MANAGE_GATEWAYS: _HEADS,
    Action.READ_USERS: _HEADS,
    Action.MANAGE_USERS: _HEADS,
    Action.READ_AUDIT: frozenset({Role.ADMIN}),
    Action.READ_APPLICATIONS: _HOME | {Role.REGULATOR},
    Action.HANDLE_APPLICATIONS: _HOME,
    Action.READ_ALARM_RULES: _HOME | {Role.REGULATOR},
    Action.WRITE_ALARM_RULES: _HEADS,
    Action.HANDLE_ALARMS: _HOME,
    # Families see their own residents' alarms, not figures made of the other residents' alarms.
    Action.READ_ALARM_REPORTS: _HOME | {Role.REGULATOR},
}

# Roles a creator may give: an admin any, a head staff and family of the own institution.
GRANTABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: _ALL,
    Role.HEAD: frozenset({Role.STAFF, Role.FAMILY}),
}


def allowed(principal: Principal, action: Action) -> bool:
    return principal.role in PERMISSIONS[action]


def require(principal: Principal, action: Action) -> None:
    """403 unless the principal's role may take ``action`` at all."""
    if not allowed(principal, action):
        raise Problem(403, f"a {principal.role.value} user may not {action.value.replace('_', ' ')}")


def sees_names(principal: Principal) -> bool:
    """Regulators supervise homes, not persons: they see names masked."""
    return principal.role is not Role.REGULATOR


def region_covers(principal: Principal, region: str) -> bool:
    """Whether a regulator's region includes the division ``region``: its code starts with theirs (the rule
    :func:`institution_filter` applies in SQL)."""
    return region.startswith(principal.region_code or "")


def check_region(principal: Principal, region: str | None, *, field: str = "query.region") -> str:
    """The region a request is about (supervision and subsidies): the caller's own by default ("" for one without a
    region); a code that is not a division's (2, 4, 6 or 9 digits) is a 422 on ``field``, and a region outside a
    regulator's is not found (404), like a row outside their scope."""
    own = principal.region_code or ""
    if region is None:
        return own
    if not divisions.is_region(region):
        raise invalid(field, divisions.RULE)
    if principal.role is Role.REGULATOR and not region_covers(principal, region):
        raise NotFound("region")
    return region


def institution_filter(principal: Principal, column: sql.Composable) -> sql.Composable:
    """A condition on an ``institution_id`` column that keeps only the principal's institutions."""
    match principal.role:
        case Role.ADMIN:
            return sql.SQL("TRUE")
        case Role.STAFF | Role.HEAD:
            return sql.SQL("{} = {}").format(column, sql.Literal(principal.institution_id))
        case Role.REGULATOR:
            # starts_with, not LIKE '4205%': a literal '%' breaks a query that also has %s placeholders.
            return sql.SQL("{} IN (SELECT id FROM institutions WHERE starts_with(region_code, {}))").format(
                column, sql.Literal(principal.region_code)
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


def user_filter(principal: Principal, alias: str = "u") -> sql.Composable:
    """Users a principal may see: admins all; heads their home's staff and heads, the families linked to its
    residents and the family users created in the home; everyone else only themselves."""
    u = sql.Identifier(alias)
    if principal.role is Role.ADMIN:
        return sql.SQL("TRUE")
    if principal.role is Role.HEAD:
        return sql.SQL(
            "({u}.institution_id = {i} OR {u}.id IN (SELECT f.user_id FROM family_links f"
            " JOIN residents r ON r.id = f.resident_id WHERE r.institution_id = {i}) OR {u}.id = {me}"
            " OR ({u}.role = 'family' AND {u}.created_by IN (SELECT id FROM users WHERE institution_id = {i})))"
        ).format(u=u, i=sql.Literal(principal.institution_id), me=sql.Literal(principal.user_id))
    return sql.SQL("{}.id = {}").format(u, sql.Literal(principal.user_id))


def managed_user_filter(principal: Principal, alias: str = "u") -> sql.Composable:
    """Users a principal may change (password, active, name) among those it sees: a head manages a family
    user only while every one of that user's links is to a resident of the head's home. A family user also
    linked to another home's resident is managed by admins alone, so that no head can take over an account
    that reads another home's residents."""
    u = sql.Identifier(alias)
    base = user_filter(principal, alias)
    if principal.role is not Role.HEAD:
        return base
    return sql.SQL(
        "({base} AND ({u}.role <> 'family' OR NOT EXISTS (SELECT 1 FROM family_links f"
        " JOIN residents r ON r.id = f.resident_id WHERE f.user_id = {u}.id AND r.institution_id <> {i})))"
    ).format(base=base, u=u, i=sql.Literal(principal.institution_id))


async def may_manage_user(conn: AsyncConnection[tuple[Any, ...]], principal: Principal, user_id: int) -> bool:
    """Whether ``principal`` may change user ``user_id`` (see :func:`managed_user_filter`)."""
    query = sql.SQL("SELECT 1 FROM users u WHERE u.id = %s AND {}").format(managed_user_filter(principal))
    return await (await conn.execute(query, (user_id,))).fetchone() is not None


class Obj(StrEnum):
    """Kinds of object an endpoint may name by id; each knows its institution (and resident, if any)."""

    INSTITUTION = "institution"
    BUILDING = "building"
    FLOOR = "floor"
    ROOM = "room"
    BED = "bed"
    RESIDENT = "resident"
    DEVICE = "device"
    GATEWAY = "gateway"
    HOSPITAL_STAY = "hospital_stay"
    CONTACT = "contact"
    APPLICATION = "application"


# SELECT institution_id, resident_id of one object; %(id)s is its id.
_OWNER: dict[Obj, str] = {
    Obj.INSTITUTION: "SELECT id, NULL::bigint FROM institutions WHERE id = %(id)s",
    Obj.BUILDING: "SELECT institution_id, NULL::bigint FROM buildings WHERE id = %(id)s",
    Obj.FLOOR: "SELECT b.institution_id, NULL::bigint FROM floors f JOIN buildings b ON b.id = f.building_id"
    " WHERE f.id = %(id)s",
    Obj.ROOM: "SELECT b.institution_id, NULL::bigint FROM rooms r JOIN floors f ON f.id = r.floor_id"
    " JOIN buildings b ON b.id = f.building_id WHERE r.id = %(id)s",
    Obj.BED: "SELECT institution_id, NULL::bigint FROM beds WHERE id = %(id)s",
    Obj.RESIDENT: "SELECT institution_id, id FROM residents WHERE id = %(id)s",
    Obj.DEVICE: "SELECT institution_id, NULL::bigint FROM devices WHERE id = %(id)s",
    Obj.GATEWAY: "SELECT institution_id, NULL::bigint FROM gateways WHERE id = %(id)s",
    Obj.HOSPITAL_STAY: "SELECT r.institution_id, r.id FROM hospital_stays h JOIN residents r ON r.id = h.resident_id"
    " WHERE h.id = %(id)s",
    Obj.CONTACT: "SELECT r.institution_id, r.id FROM resident_contacts c JOIN residents r ON r.id = c.resident_id"
    " WHERE c.id = %(id)s AND c.removed_at IS NULL",
    Obj.APPLICATION: "SELECT provider_institution_id, NULL::bigint FROM service_applications WHERE id = %(id)s",
}

_MAX_ID = 2**63 - 1


async def resolve(
    conn: AsyncConnection[tuple[Any, ...]], principal: Principal, kind: Obj, object_id: int, action: Action
) -> int:
    """Check that ``principal`` may take ``action`` on object ``object_id`` of ``kind``; its institution id.

    403 if the role may not take the action at all; 404 if the object does not exist or is outside the
    principal's scope (the two are indistinguishable from the outside).
    """
    require(principal, action)
    if not 0 < object_id <= _MAX_ID:
        raise NotFound(kind.value)
    query = sql.SQL("SELECT owner.institution_id FROM ({owner}) AS owner (institution_id, resident_id) WHERE {scope}")
    scope = (
        resident_filter(principal, sql.SQL("owner.institution_id"), sql.SQL("owner.resident_id"))
        if kind in (Obj.RESIDENT, Obj.CONTACT, Obj.HOSPITAL_STAY)
        else institution_filter(principal, sql.SQL("owner.institution_id"))
    )
    row = await (
        await conn.execute(query.format(owner=sql.SQL(_OWNER[kind]), scope=scope), {"id": object_id})
    ).fetchone()
    if row is None or row[0] is None:
        raise NotFound(kind.value)
    institution_id: int = row[0]
    return institution_id
