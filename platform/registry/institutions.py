"""``/api/v1/institutions``: the homes, community centres and home-care providers (一院一码)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from fastapi import APIRouter, Query
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, model_validator

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import NotFound
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.types import (
    RESPONSES,
    Address,
    CountyCode,
    Limit,
    Name,
    Offset,
    PathId,
    Phone,
    RegionCode,
    Uscc,
)

router = APIRouter(prefix="/api/v1/institutions", tags=["institutions"], responses=RESPONSES)


class Kind(StrEnum):
    RESIDENTIAL_HOME = "residential_home"
    COMMUNITY_CENTRE = "community_centre"
    HOME_CARE_PROVIDER = "home_care_provider"


class Service(StrEnum):
    MEDICAL_CARE = "medical_care"  # 医养结合
    REHABILITATION = "rehabilitation"
    DEMENTIA_CARE = "dementia_care"
    DAY_CARE = "day_care"
    RESPITE_CARE = "respite_care"
    PALLIATIVE_CARE = "palliative_care"
    MEAL_ASSISTANCE = "meal_assistance"
    HOME_VISITS = "home_visits"


Lon = Annotated[float, Field(ge=73.0, le=136.0, description="WGS-84 longitude, within China")]
Lat = Annotated[float, Field(ge=3.0, le=54.0, description="WGS-84 latitude, within China")]
Yuan = Annotated[float, Field(ge=0, le=1_000_000, description="yuan per month")]


class _Checks(BaseModel):
    lon: Lon | None = None
    lat: Lat | None = None
    price_min: Yuan | None = None
    price_max: Yuan | None = None

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat (WGS-84) or neither")
        if self.price_min is not None and self.price_max is not None and self.price_max < self.price_min:
            raise ValueError("price_max must not be below price_min")
        return self


class InstitutionUpdate(_Checks):
    name: Name | None = None
    address: Address | None = None
    star_grade: Annotated[int, Field(ge=0, le=5)] | None = None
    capacity: Annotated[int, Field(ge=0, le=100_000)] | None = None
    services: Annotated[list[Service], Field(max_length=20)] | None = None
    contact_name: Annotated[Name, Field(max_length=50)] | None = None
    contact_phone: Phone | None = None


class InstitutionIn(InstitutionUpdate):
    code: Uscc = Field(description="unified social credit code (GB 32100-2015), with its check character")
    name: Name
    kind: Kind
    region_code: CountyCode = Field(description="county (6 digits) or township (9 digits) division code")


class Institution(BaseModel):
    id: int
    code: str
    name: str
    kind: Kind
    region_code: str
    address: str
    lon: float | None
    lat: float | None
    star_grade: int | None
    capacity: int | None
    price_min: float | None
    price_max: float | None
    services: list[str]
    contact_name: str
    contact_phone: str
    created_at: datetime


_SELECT = sql.SQL(
    "SELECT id, code, name, kind::text AS kind, region_code, address, lon, lat, star_grade, capacity,"
    " price_min::float8 AS price_min, price_max::float8 AS price_max, services, contact_name, contact_phone,"
    " created_at FROM institutions i"
)


async def fetch(conn: Conn, institution_id: int) -> Institution:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL("{} WHERE id = %s").format(_SELECT), (institution_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("institution")
    return Institution.model_validate(row)


@router.get("")
async def list_institutions(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    region: Annotated[RegionCode | None, Query(description="only institutions whose region starts with this")] = None,
    kind: Kind | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Institution]:
    """Institutions in the caller's scope."""
    scope.require(principal, Action.READ_INSTITUTION)
    query = sql.SQL(
        "{select} WHERE {scope} AND (%(region)s::text IS NULL OR region_code LIKE %(region)s || '%%')"
        " AND (%(kind)s::institution_kind IS NULL OR kind = %(kind)s::institution_kind)"
        " ORDER BY id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(select=_SELECT, scope=scope.institution_filter(principal, sql.SQL("i.id")))
    params: dict[str, Any] = {"region": region, "kind": kind, "limit": limit, "offset": offset}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return [Institution.model_validate(row) for row in await cur.fetchall()]


@router.post("", status_code=201)
async def create_institution(body: InstitutionIn, conn: Conn, principal: CurrentPrincipal) -> Institution:
    """Register an institution (platform admins)."""
    scope.require(principal, Action.CREATE_INSTITUTION)
    values = body.model_dump(mode="json", exclude_none=True)
    columns = list(values)
    async with atomic(conn):
        row = await (
            await conn.execute(
                sql.SQL("INSERT INTO institutions ({}) VALUES ({}) RETURNING id").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
                ),
                values,
            )
        ).fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="create",
            object_type="institution",
            object_id=row[0],
            institution_id=row[0],
            detail={"code": body.code, "name": body.name},
        )
    return await fetch(conn, row[0])


@router.get("/{institution_id}")
async def get_institution(institution_id: PathId, conn: Conn, principal: CurrentPrincipal) -> Institution:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_INSTITUTION)
    return await fetch(conn, institution_id)


@router.patch("/{institution_id}")
async def update_institution(
    institution_id: PathId, body: InstitutionUpdate, conn: Conn, principal: CurrentPrincipal
) -> Institution:
    """Change what is given; the code, kind and region are fixed at registration."""
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.UPDATE_INSTITUTION)
    values = body.model_dump(mode="json", exclude_unset=True)
    if values:
        async with atomic(conn):
            await conn.execute(
                sql.SQL("UPDATE institutions SET {}, updated_at = now() WHERE id = %(id)s").format(
                    sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values)
                ),
                {**values, "id": institution_id},
            )
            await audit.record(
                conn,
                principal=principal,
                action="update",
                object_type="institution",
                object_id=institution_id,
                institution_id=institution_id,
                detail={"fields": sorted(values)},
            )
    return await fetch(conn, institution_id)
