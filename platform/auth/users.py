"""``/api/v1/users``: admins create heads, regulators and admins; heads create staff and family users and link
families to residents (with the consent recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from fastapi import APIRouter
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, StringConstraints, model_validator

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope, service
from eldercare.platform.auth.scope import GRANTABLE, Action, Obj, Principal, Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.types import RESPONSES, Id, Limit, Name, Note, Offset, PathId, RegionCode

router = APIRouter(prefix="/api/v1/users", tags=["users"], responses=RESPONSES)

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{3,64}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256, pattern=r"^[^\x00]+$")]


class UserIn(BaseModel):
    username: Username
    password: Password
    role: Role
    institution_id: Id | None = Field(default=None, description="staff and heads: their institution")
    region_code: RegionCode | None = Field(default=None, description="regulators: their division code")
    display_name: Annotated[Name, Field(max_length=100)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        home = self.role in (Role.STAFF, Role.HEAD)
        if home != (self.institution_id is not None):
            raise ValueError("staff and heads need an institution_id; other roles must not have one")
        if (self.role is Role.REGULATOR) != (self.region_code is not None):
            raise ValueError("regulators need a region_code; other roles must not have one")
        return self


class UserUpdate(BaseModel):
    display_name: Annotated[Name, Field(max_length=100)] | None = None
    active: bool | None = Field(default=None, description="false locks the user out and ends their sessions")
    password: Password | None = None


class User(BaseModel):
    id: int
    username: str
    role: Role
    institution_id: int | None
    region_code: str | None
    display_name: str
    active: bool
    created_at: datetime


class LinkIn(BaseModel):
    resident_id: Id
    relation: Annotated[Name, Field(max_length=30)]
    consent: bool = Field(description="the resident (or guardian) agreed that this user sees their data")
    note: Note = ""


class Link(BaseModel):
    user_id: int
    resident_id: int
    person_code: str
    relation: str
    consent_at: datetime


_SELECT = (
    "SELECT u.id, u.username, u.role::text AS role, u.institution_id, u.region_code, u.display_name, u.active,"
    " u.created_at FROM users u"
)


async def _fetch(conn: AsyncConn, principal: Principal, user_id: int) -> User:
    if not 0 < user_id < 2**63:
        raise NotFound("user")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("{} WHERE u.id = %s AND {}").format(sql.SQL(_SELECT), scope.user_filter(principal)), (user_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound("user")
    return User.model_validate(row)


def _may_manage(principal: Principal, target: Role, institution_id: int | None) -> None:
    scope.require(principal, Action.MANAGE_USERS)
    if target not in GRANTABLE.get(principal.role, frozenset()):
        raise Problem(403, f"a {principal.role.value} may not manage {target.value} users")
    if principal.role is Role.HEAD and institution_id not in (None, principal.institution_id):
        raise Problem(403, "a head manages the users of their own institution only")


@router.post("", status_code=201)
async def create_user(body: UserIn, conn: Conn, principal: CurrentPrincipal) -> User:
    _may_manage(principal, body.role, body.institution_id)
    if body.institution_id is not None:
        await scope.resolve(conn, principal, Obj.INSTITUTION, body.institution_id, Action.MANAGE_USERS)
    async with atomic(conn):
        user_id = await service.create_user(
            conn,
            username=body.username,
            password=body.password,
            role=body.role,
            institution_id=body.institution_id,
            region_code=body.region_code,
            display_name=body.display_name or "",
            created_by=principal.user_id,
        )
        await audit.record(
            conn,
            principal=principal,
            action="create",
            object_type="user",
            object_id=user_id,
            institution_id=body.institution_id,
            detail={"username": body.username, "role": body.role.value},
        )
    return await _fetch(conn, principal, user_id)


@router.get("")
async def list_users(conn: Conn, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0) -> list[User]:
    """Users the caller manages (heads: their home's users and its residents' families)."""
    scope.require(principal, Action.READ_USERS)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("{} WHERE {} ORDER BY u.id LIMIT %s OFFSET %s").format(
                sql.SQL(_SELECT), scope.user_filter(principal)
            ),
            (limit, offset),
        )
        return [User.model_validate(r) for r in await cur.fetchall()]


@router.get("/{user_id}")
async def get_user(user_id: PathId, conn: Conn, principal: CurrentPrincipal) -> User:
    scope.require(principal, Action.READ_USERS)
    return await _fetch(conn, principal, user_id)


@router.patch("/{user_id}")
async def update_user(user_id: PathId, body: UserUpdate, conn: Conn, principal: CurrentPrincipal) -> User:
    scope.require(principal, Action.MANAGE_USERS)
    target = await _fetch(conn, principal, user_id)
    _may_manage(principal, target.role, target.institution_id)
    if not await scope.may_manage_user(conn, principal, user_id):
        raise Problem(403, "a family user also linked to another home's residents is managed by a platform admin")
    if body.active is False and user_id == principal.user_id:
        raise Problem(409, "you cannot deactivate yourself", [FieldError(field="body.active", reason="own account")])
    async with atomic(conn):
        await conn.execute(
            "UPDATE users SET display_name = coalesce(%s, display_name), active = coalesce(%s, active),"
            " password_hash = coalesce(%s, password_hash) WHERE id = %s",
            (body.display_name, body.active, service.hash_password(body.password) if body.password else None, user_id),
        )
        if body.active is False or body.password:
            await conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
        await audit.record(
            conn,
            principal=principal,
            action="update",
            object_type="user",
            object_id=user_id,
            institution_id=target.institution_id,
            detail={"fields": sorted(body.model_fields_set), "active": body.active},
        )
    return await _fetch(conn, principal, user_id)


async def _family_user(conn: AsyncConn, principal: Principal, user_id: int) -> User:
    scope.require(principal, Action.MANAGE_USERS)
    target = await _fetch(conn, principal, user_id)
    if target.role is not Role.FAMILY:
        raise NotFound("family user")
    return target


@router.get("/{user_id}/family-links")
async def list_links(user_id: PathId, conn: Conn, principal: CurrentPrincipal) -> list[Link]:
    """The family user's links; a head sees only those to residents of their own home."""
    await _family_user(conn, principal, user_id)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(
                "SELECT f.user_id, f.resident_id, r.person_code, f.relation, f.consent_at FROM family_links f"
                " JOIN residents r ON r.id = f.resident_id WHERE f.user_id = %s AND {} ORDER BY f.resident_id"
            ).format(scope.institution_filter(principal, sql.SQL("r.institution_id"))),
            (user_id,),
        )
        return [Link.model_validate(r) for r in await cur.fetchall()]


@router.post("/{user_id}/family-links", status_code=201)
async def link_family(user_id: PathId, body: LinkIn, conn: Conn, principal: CurrentPrincipal) -> Link:
    """Let a family user see a resident; the consent is required and recorded."""
    await _family_user(conn, principal, user_id)
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, body.resident_id, Action.WRITE_RESIDENT)
    if not body.consent:
        raise Problem(
            422, "the resident's consent is required", [FieldError(field="body.consent", reason="must be true")]
        )
    async with atomic(conn):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO family_links (user_id, resident_id, relation) VALUES (%s, %s, %s)"
                " RETURNING user_id, resident_id, relation, consent_at,"
                " (SELECT person_code FROM residents WHERE id = %s) AS person_code",
                (user_id, body.resident_id, body.relation, body.resident_id),
            )
            row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="link_family",
            object_type="user",
            object_id=user_id,
            institution_id=institution_id,
            detail={"resident_id": body.resident_id, "relation": body.relation, "note": body.note},
        )
    return Link.model_validate(row)


@router.delete("/{user_id}/family-links/{resident_id}", status_code=204)
async def unlink_family(user_id: PathId, resident_id: PathId, conn: Conn, principal: CurrentPrincipal) -> None:
    await _family_user(conn, principal, user_id)
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    async with atomic(conn):
        done = await conn.execute(
            "DELETE FROM family_links WHERE user_id = %s AND resident_id = %s", (user_id, resident_id)
        )
        if done.rowcount == 0:
            raise NotFound("family link")
        await audit.record(
            conn,
            principal=principal,
            action="unlink_family",
            object_type="user",
            object_id=user_id,
            institution_id=institution_id,
            detail={"resident_id": resident_id},
        )
