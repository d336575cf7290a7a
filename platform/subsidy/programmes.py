"""Programmes and their amounts as data: schedule versions per region, in force from a month.

The schedule of a programme for a home and a month is the one of the most specific region that contains the
home (the longest region code the home's code starts with) whose ``effective_from`` is the latest on or before
the month. Versions are append-only (a trigger refuses changes), and a new version may take effect only after
the last month already verified in its region, so the amounts of a verified month never change.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from psycopg.rows import dict_row
from pydantic import BaseModel, Field, model_validator

from eldercare.platform.api.errors import invalid
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.types import BedKind, Capability, Note, RegionCode
from eldercare.platform.subsidy.errors import conflict

Yuan = Annotated[Decimal, Field(ge=0, le=1_000_000, max_digits=10, decimal_places=2)]
Age = Annotated[int, Field(ge=0, le=150)]
ProgrammeCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
MonthText = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}$", description="YYYY-MM")]


class RateIn(BaseModel):
    """One row of a schedule: its conditions (none: anyone) and the monthly amount in yuan."""

    bed_kind: BedKind | None = None
    capability: Capability | None = None
    min_age: Age | None = None
    max_age: Age | None = None
    hardship: bool | None = Field(default=None, description="true: only people on the hardship register")
    monthly_yuan: Yuan

    @model_validator(mode="after")
    def _ages(self) -> Self:
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age must not be above max_age")
        return self


class ScheduleIn(BaseModel):
    programme: ProgrammeCode
    region_code: RegionCode
    effective_from: MonthText = Field(description="the first month the amounts apply to")
    rates: list[RateIn] = Field(min_length=1, max_length=100, description="first matching row wins")
    note: Note = ""


class Rate(RateIn):
    position: int


class Schedule(BaseModel):
    id: int
    programme: str
    region_code: str
    effective_from: date
    note: str
    created_at: datetime
    rates: list[Rate]


class Programme(BaseModel):
    code: str
    name: str
    kind: str
    unit: str = Field(description="bed_day: monthly amount per bed, pro rata by day; person_month: per person")
    description: str
    in_force: int | None = Field(description="id of the schedule in force for the region and month, if any")
    schedules: list[Schedule] = Field(description="versions of the region, of regions containing it and within it")


async def list_programmes(conn: AsyncConn, *, region: str, month: date) -> list[Programme]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT code, name, kind, unit, description FROM subsidy_programmes ORDER BY code")
        programmes = await cur.fetchall()
        await cur.execute(
            "SELECT s.id, s.programme, s.region_code, s.effective_from, s.note, s.created_at,"
            " coalesce(jsonb_agg(to_jsonb(r) - 'schedule_id' ORDER BY r.position)"
            "   FILTER (WHERE r.schedule_id IS NOT NULL), '[]') AS rates"
            " FROM subsidy_schedules s LEFT JOIN subsidy_rates r ON r.schedule_id = s.id"
            " WHERE starts_with(%(region)s, s.region_code) OR starts_with(s.region_code, %(region)s)"
            " GROUP BY s.id ORDER BY s.programme, length(s.region_code), s.effective_from",
            {"region": region},
        )
        schedules = [Schedule.model_validate(r) for r in await cur.fetchall()]
        await cur.execute(
            "SELECT DISTINCT ON (programme) programme, id FROM subsidy_schedules"
            " WHERE starts_with(%(region)s, region_code) AND effective_from <= %(month)s"
            " ORDER BY programme, length(region_code) DESC, effective_from DESC",
            {"region": region, "month": month},
        )
        in_force = {r["programme"]: r["id"] for r in await cur.fetchall()}
    return [
        Programme(**p, in_force=in_force.get(p["code"]), schedules=[s for s in schedules if s.programme == p["code"]])
        for p in programmes
    ]


async def add_schedule(conn: AsyncConn, *, principal: Principal, body: ScheduleIn, effective_from: date) -> Schedule:
    """Store a new version (inside the caller's transaction); 409 if it would change a verified month."""
    known = await (await conn.execute("SELECT 1 FROM subsidy_programmes WHERE code = %s", (body.programme,))).fetchone()
    if known is None:
        raise invalid("body.programme", "no such programme")
    region = await (await conn.execute("SELECT 1 FROM regions WHERE code = %s", (body.region_code,))).fetchone()
    if region is None:
        raise invalid("body.region_code", "no such administrative division code")
    # Serialise additions for a region with verification runs (both take this lock), then look for a month
    # from effective_from on that is verified already for a home in the region.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('subsidy-amounts'))")
    verified = await (
        await conn.execute(
            "SELECT max(v.month) FROM subsidy_verdicts v JOIN institutions i ON i.id = v.institution_id"
            " WHERE starts_with(i.region_code, %s) AND v.month >= %s",
            (body.region_code, effective_from),
        )
    ).fetchone()
    if verified is not None and verified[0] is not None:
        last: date = verified[0]
        raise conflict(
            "body.effective_from",
            f"{last:%Y-%m} is verified already in this region; new amounts may take effect from a later month",
        )
    exists = await (
        await conn.execute(
            "SELECT id FROM subsidy_schedules WHERE programme = %s AND region_code = %s AND effective_from = %s",
            (body.programme, body.region_code, effective_from),
        )
    ).fetchone()
    if exists is not None:
        raise conflict("body.effective_from", "a version of this programme and region takes effect that month already")
    row = await (
        await conn.execute(
            "INSERT INTO subsidy_schedules (programme, region_code, effective_from, note, created_by)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id, created_at",
            (body.programme, body.region_code, effective_from, body.note, principal.user_id),
        )
    ).fetchone()
    assert row is not None
    schedule_id, created_at = int(row[0]), row[1]
    rates = [Rate(position=n, **rate.model_dump()) for n, rate in enumerate(body.rates, start=1)]
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO subsidy_rates (schedule_id, position, bed_kind, capability, min_age, max_age, hardship,"
            " monthly_yuan) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (schedule_id, r.position, _text(r.bed_kind), _text(r.capability), r.min_age, r.max_age, r.hardship,
                 r.monthly_yuan)
                for r in rates
            ],
        )  # fmt: skip
    await audit.record(
        conn,
        principal=principal,
        action="create",
        object_type="subsidy_schedule",
        object_id=schedule_id,
        institution_id=None,
        detail={"programme": body.programme, "region_code": body.region_code, "effective_from": str(effective_from),
                "rates": [r.model_dump(mode="json") for r in rates]},
    )  # fmt: skip
    return Schedule(
        id=schedule_id,
        programme=body.programme,
        region_code=body.region_code,
        effective_from=effective_from,
        note=body.note,
        created_at=created_at,
        rates=rates,
    )


def _text(value: StrEnum | None) -> str | None:
    return None if value is None else value.value
