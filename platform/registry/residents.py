"""Residents (一人一码): personal data encrypted at rest, shown masked, every read audited."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Self

from fastapi import APIRouter, Query
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, model_validator

from eldercare.devices import codes
from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import NotFound
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.service import new_id_number_hash
from eldercare.platform.registry.types import (
    RESPONSES,
    Capability,
    IdNumberText,
    Limit,
    Name,
    Note,
    Offset,
    PathId,
    Risk,
    mask_name,
)

router = APIRouter(prefix="/api/v1", tags=["residents"], responses=RESPONSES)
_codes = random.SystemRandom()
_CHINA = timezone(timedelta(hours=8))

PersonName = Annotated[Name, Field(max_length=50)]
HeartRate = Annotated[float, Field(ge=20, le=250, description="beats per minute")]
RespRate = Annotated[float, Field(ge=4, le=60, description="breaths per minute")]


class Care(BaseModel):
    """Capability assessment (能力评估), risks and the vital-sign ranges outside which the sensors alarm."""

    capability: Capability = Capability.SELF_CARE
    fall_risk: Risk = Risk.LOW
    wander_risk: bool = False
    lives_alone: bool = Field(
        default=False,
        description="lives alone at home: on the list of regular visits (docs/supervision.md); refused (422) for a"
        " resident of a residential home, who lives in it",
    )
    heart_rate_min: HeartRate = 50
    heart_rate_max: HeartRate = 110
    resp_rate_min: RespRate = 10
    resp_rate_max: RespRate = 25

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if self.heart_rate_min >= self.heart_rate_max:
            raise ValueError("heart_rate_min must be below heart_rate_max")
        if self.resp_rate_min >= self.resp_rate_max:
            raise ValueError("resp_rate_min must be below resp_rate_max")
        return self


ListedSince = Annotated[
    date | None,
    Field(
        description="with lives_alone: the local day the resident was put on the visit list, when it was before"
        " today (an elder a home visited on paper before the platform); not in the future; default today"
    ),
]


def _check_listed(lives_alone: bool | None, since: date | None) -> None:
    if since is None:
        return
    if not lives_alone:
        raise ValueError("lives_alone_since is given only with lives_alone: true")
    if since > datetime.now(_CHINA).date():
        raise ValueError("lives_alone_since must not be in the future")


class ResidentIn(Care):
    name: PersonName
    id_number: IdNumberText = Field(description="居民身份证号, 18 characters; stored encrypted, shown masked")
    lives_alone_since: ListedSince = None

    @model_validator(mode="after")
    def _listed(self) -> Self:
        _check_listed(self.lives_alone, self.lives_alone_since)
        return self


class ResidentUpdate(BaseModel):
    name: PersonName | None = None
    capability: Capability | None = None
    fall_risk: Risk | None = None
    wander_risk: bool | None = None
    lives_alone: bool | None = None
    lives_alone_since: ListedSince = None
    heart_rate_min: HeartRate | None = None
    heart_rate_max: HeartRate | None = None
    resp_rate_min: RespRate | None = None
    resp_rate_max: RespRate | None = None

    @model_validator(mode="after")
    def _listed(self) -> Self:
        _check_listed(self.lives_alone, self.lives_alone_since)
        return self


class Resident(Care):
    id: int
    person_code: str = Field(description="一人一码: P, 9 characters and a check character")
    institution_id: int
    name: str = Field(description="in clear for the home's staff and the family; masked for regulators")
    id_number_masked: str
    sex: str
    age: int
    status: str
    lives_alone_since: date | None = Field(description="the local day the resident was put on the visit list")
    bed_id: int | None
    bed_code: str | None
    bed_label: str | None
    created_at: datetime


class Reveal(BaseModel):
    reason: Annotated[Note, Field(min_length=4, description="why the ID number is needed; kept in the audit log")]


class RevealedIdNumber(BaseModel):
    resident_id: int
    id_number: str


_SELECT = sql.SQL(
    "SELECT r.id, r.person_code, r.institution_id, r.name_enc, r.id_number_masked, r.sex, r.birth_date,"
    " r.capability::text AS capability, r.fall_risk::text AS fall_risk, r.wander_risk, r.lives_alone,"
    " r.lives_alone_since, r.heart_rate_min,"
    " r.heart_rate_max, r.resp_rate_min, r.resp_rate_max, r.status::text AS status, r.created_at,"
    " b.id AS bed_id, b.code AS bed_code, b.label AS bed_label"
    " FROM residents r LEFT JOIN bed_assignments a ON a.resident_id = r.id AND a.during @> now()"
    " LEFT JOIN beds b ON b.id = a.bed_id"
)


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - int((day.month, day.day) < (birth.month, birth.day))


def _shape(row: dict[str, Any], *, vault: Vault, principal: Principal) -> Resident:
    name = vault.decrypt(bytes(row.pop("name_enc")), column="residents.name")
    birth: date = row.pop("birth_date")
    return Resident.model_validate(
        {
            **row,
            "name": name if scope.sees_names(principal) else mask_name(name),
            "age": age_on(birth, datetime.now(_CHINA).date()),
        }
    )


async def lives_at_home(conn: AsyncConn, *, institution_id: int) -> bool:
    """Whether the institution's residents live in their own homes (a community centre's, a home-care provider's),
    so that one can be flagged ``lives_alone``; a residential home's live in it (migration 0032)."""
    row = await (await conn.execute("SELECT kind::text FROM institutions WHERE id = %s", (institution_id,))).fetchone()
    return row is not None and row[0] != "residential_home"


async def fetch(conn: AsyncConn, *, resident_id: int, vault: Vault, principal: Principal) -> Resident:
    """One resident; the read of their personal data is audited (in the caller's transaction, if any)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL("{} WHERE r.id = %s").format(_SELECT), (resident_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("resident")
    resident = _shape(row, vault=vault, principal=principal)
    await audit.record(
        conn,
        principal=principal,
        action="read_personal",
        object_type="resident",
        object_id=resident_id,
        institution_id=resident.institution_id,
        detail={"fields": ["name", "id_number_masked"]},
    )
    return resident


async def insert(
    conn: AsyncConn, principal: Principal | None, *, vault: Vault, institution_id: int, body: ResidentIn
) -> tuple[int, str]:
    """Register a resident inside the caller's transaction; (id, person code)."""
    parsed = codes.parse_id_number(body.id_number)
    person_code = codes.new_person_code(_codes)
    care = body.model_dump(mode="json", exclude={"name", "id_number"})
    row = await (
        await conn.execute(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, capability, fall_risk, wander_risk, lives_alone, lives_alone_since,"
            " heart_rate_min, heart_rate_max, resp_rate_min, resp_rate_max) VALUES (%(i)s, %(pc)s, %(n)s, %(ie)s,"
            " %(ih)s, %(im)s, %(bd)s, %(sex)s, %(capability)s, %(fall_risk)s, %(wander_risk)s, %(lives_alone)s,"
            " %(lives_alone_since)s, %(heart_rate_min)s,"
            " %(heart_rate_max)s,"
            " %(resp_rate_min)s, %(resp_rate_max)s) RETURNING id",
            {
                "i": institution_id,
                "pc": person_code,
                "n": vault.encrypt(body.name, column="residents.name"),
                "ie": vault.encrypt(parsed.number, column="residents.id_number"),
                "ih": await new_id_number_hash(conn, vault=vault, institution_id=institution_id, number=parsed.number),
                "im": parsed.masked,
                "bd": parsed.birth_date,
                "sex": parsed.sex,
                **care,
            },
        )
    ).fetchone()
    assert row is not None
    await audit.record(
        conn,
        principal=principal,
        action="create",
        object_type="resident",
        object_id=row[0],
        institution_id=institution_id,
        detail={"person_code": person_code, "id_number_masked": parsed.masked, **care},
    )
    return row[0], person_code


@router.get("/institutions/{institution_id}/residents")
async def list_residents(
    *,
    institution_id: PathId,
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    status: Annotated[str | None, Query(pattern="^(registered|admitted|discharged|deceased)$")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Resident]:
    """The residents of an institution that the caller may see (a family sees only its own)."""
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_RESIDENT)
    query = sql.SQL(
        "{select} WHERE r.institution_id = %(i)s AND {scope}"
        " AND (%(status)s::resident_status IS NULL OR r.status = %(status)s::resident_status)"
        " ORDER BY r.id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(select=_SELECT, scope=scope.resident_filter(principal, sql.SQL("r.institution_id"), sql.SQL("r.id")))
    async with atomic(conn):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {"i": institution_id, "status": status, "limit": limit, "offset": offset})
            rows = await cur.fetchall()
        residents = [_shape(row, vault=vault, principal=principal) for row in rows]
        if residents:
            await audit.record(
                conn,
                principal=principal,
                action="read_personal",
                object_type="resident",
                object_id=None,
                institution_id=institution_id,
                detail={"ids": [r.id for r in residents], "fields": ["name"]},
            )
    return residents


@router.post("/institutions/{institution_id}/residents", status_code=201)
async def create_resident(
    institution_id: PathId, body: ResidentIn, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> Resident:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.WRITE_RESIDENT)
    async with atomic(conn):
        resident_id, _ = await insert(conn, principal, vault=vault, institution_id=institution_id, body=body)
        return await fetch(conn, resident_id=resident_id, vault=vault, principal=principal)


@router.get("/residents/{resident_id}")
async def get_resident(resident_id: PathId, conn: Conn, principal: CurrentPrincipal, vault: VaultDep) -> Resident:
    await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.READ_RESIDENT)
    async with atomic(conn):
        return await fetch(conn, resident_id=resident_id, vault=vault, principal=principal)


@router.patch("/residents/{resident_id}")
async def update_resident(
    resident_id: PathId, body: ResidentUpdate, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> Resident:
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.WRITE_RESIDENT)
    values: dict[str, Any] = body.model_dump(mode="json", exclude_unset=True, exclude={"name"})
    if "name" in body.model_fields_set and body.name is not None:
        values["name_enc"] = vault.encrypt(body.name, column="residents.name")
    async with atomic(conn):
        if values:
            await conn.execute(
                sql.SQL("UPDATE residents SET {} WHERE id = %(id)s").format(
                    sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values)
                ),
                {**values, "id": resident_id},
            )
            changed = body.model_dump(mode="json", exclude_unset=True, exclude={"name"})
            await audit.record(
                conn,
                principal=principal,
                action="update",
                object_type="resident",
                object_id=resident_id,
                institution_id=institution_id,
                detail={**changed, "fields": sorted(body.model_fields_set)},
            )
        return await fetch(conn, resident_id=resident_id, vault=vault, principal=principal)


@router.post("/residents/{resident_id}/id-number")
async def reveal_id_number(
    resident_id: PathId, body: Reveal, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> RevealedIdNumber:
    """The ID number in clear, for heads and admins, with a reason that goes into the audit log."""
    institution_id = await scope.resolve(conn, principal, Obj.RESIDENT, resident_id, Action.REVEAL_ID_NUMBER)
    async with atomic(conn):
        row = await (await conn.execute("SELECT id_number_enc FROM residents WHERE id = %s", (resident_id,))).fetchone()
        assert row is not None
        number = vault.decrypt(bytes(row[0]), column="residents.id_number")
        await audit.record(
            conn,
            principal=principal,
            action="reveal_id_number",
            object_type="resident",
            object_id=resident_id,
            institution_id=institution_id,
            detail={"reason": body.reason},
        )
    return RevealedIdNumber(resident_id=resident_id, id_number=number)
