"""``/api/v1/alarm-rules`` and ``/api/v1/rosters``: heads set their home's rules and shift rosters.

Rule parameters are validated strictly per rule (unknown keys refused, ranges checked); an override
holds only the keys it changes and is merged over the platform default by ``rule_params`` in SQL.
Staff, heads and regulators read (families do not: the rules name other residents by person code and the
rosters name the staff); heads (their home) and admins write. The roles come from ``scope.PERMISSIONS``.
"""

from __future__ import annotations

import json
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Query
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES, FieldError, NotFound, Problem
from eldercare.platform.auth.scope import Action, Principal, Role, institution_filter, require
from eldercare.platform.auth.service import AsyncConn

router = APIRouter(tags=["alarm rules"], responses=RESPONSES)

RuleName = Literal[
    "button",
    "fall",
    "sos",
    "environment",
    "device_fault",
    "bed_exit_night",
    "vitals",
    "wander",
    "no_presence",
    "gateway_offline",
    "escalation",
]
Priority = Literal["emergency", "urgent", "routine", "technical"]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallParams(_Params):
    priority: Priority | None = None
    repeat_window_s: int | None = Field(default=None, ge=0, le=3600)


class EnvironmentParams(_Params):
    priority: Priority | None = None


class FaultParams(_Params):
    priority: Literal["technical", "routine"] | None = None


class BedExitParams(_Params):
    from_: HHMM | None = Field(default=None, alias="from")
    to: HHMM | None = None
    delay_s: int | None = Field(default=None, ge=0, le=3600)
    emergency_after_s: int | None = Field(default=None, ge=30, le=24 * 3600)
    min_fall_risk: Literal["low", "medium", "high"] | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and value not in available_timezones():
            raise ValueError("not an IANA time zone such as Asia/Shanghai")
        return value


class VitalsParams(_Params):
    sustain_s: int | None = Field(default=None, ge=10, le=3600)
    min_readings: int | None = Field(default=None, ge=1, le=1000)


class WanderParams(_Params):
    radius_m: float | None = Field(default=None, ge=10, le=20_000)
    fresh_s: int | None = Field(default=None, ge=10, le=3600)


class NoPresenceParams(_Params):
    hours: int | None = Field(default=None, ge=1, le=72)


class GatewayParams(_Params):
    silence_s: int | None = Field(default=None, ge=15, le=3600)


class EscalationParams(_Params):
    ack_timeout_s: int | None = Field(default=None, ge=10, le=3600)
    attend_timeout_s: int | None = Field(default=None, ge=30, le=3600)
    tiers: int | None = Field(default=None, ge=0, le=3)


PARAMS: dict[str, type[_Params]] = {
    "button": CallParams,
    "fall": CallParams,
    "sos": CallParams,
    "environment": EnvironmentParams,
    "device_fault": FaultParams,
    "bed_exit_night": BedExitParams,
    "vitals": VitalsParams,
    "wander": WanderParams,
    "no_presence": NoPresenceParams,
    "gateway_offline": GatewayParams,
    "escalation": EscalationParams,
}


class RuleRow(BaseModel):
    rule: RuleName
    level: Literal["platform", "institution", "resident"]
    person_code: str | None
    enabled: bool
    params: dict[str, Any]


class EffectiveRule(BaseModel):
    rule: RuleName
    enabled: bool
    params: dict[str, Any]
    rows: list[RuleRow]


class RuleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_code: str = Field(min_length=18, max_length=18)
    person_code: str | None = Field(default=None, description="a resident's override; absent: the home's")
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


async def _institution(conn: AsyncConn, principal: Principal, code: str, action: Action) -> int:
    """The id of the home with ``code``: 403 if the role may not take ``action``, 404 outside the scope."""
    require(principal, action)
    query = sql.SQL("SELECT id FROM institutions i WHERE i.code = %s AND {scope}").format(
        scope=institution_filter(principal, sql.SQL("i.id"))
    )
    row = await (await conn.execute(query, (code,))).fetchone()
    if row is None:
        raise NotFound("institution")
    institution_id: int = row[0]
    return institution_id


def _may_write(principal: Principal, institution_id: int) -> None:
    if principal.role is Role.ADMIN or (principal.role is Role.HEAD and principal.institution_id == institution_id):
        return
    raise Problem(403, "only the home's head or a platform admin changes rules and rosters")


async def _resident(conn: AsyncConn, institution_id: int, person_code: str | None) -> int | None:
    if person_code is None:
        return None
    row = await (
        await conn.execute(
            "SELECT id FROM residents WHERE person_code = %s AND institution_id = %s",
            (person_code.strip().upper(), institution_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("resident")
    resident_id: int = row[0]
    return resident_id


@router.get("/api/v1/alarm-rules")
async def list_rules(
    conn: Conn,
    principal: CurrentPrincipal,
    institution: Annotated[str, Query(min_length=18, max_length=18, description="the home's code")],
) -> list[EffectiveRule]:
    """Every rule in force for a home: the merged parameters and the rows they come from."""
    institution_id = await _institution(conn, principal, institution, Action.READ_ALARM_RULES)
    rows = await (
        await conn.execute(
            "SELECT r.rule, CASE WHEN r.resident_id IS NOT NULL THEN 'resident' WHEN r.institution_id IS NOT NULL"
            " THEN 'institution' ELSE 'platform' END, p.person_code, r.enabled, r.params,"
            " rule_params(r.rule, %(i)s, NULL) FROM alarm_rules r LEFT JOIN residents p ON p.id = r.resident_id"
            " WHERE r.institution_id IS NULL OR r.institution_id = %(i)s ORDER BY r.rule, r.id",
            {"i": institution_id},
        )
    ).fetchall()
    result: dict[str, EffectiveRule] = {}
    for rule, level, person, enabled, params, effective in rows:
        entry = result.setdefault(
            rule, EffectiveRule(rule=rule, enabled=effective is not None, params=effective or {}, rows=[])
        )
        entry.rows.append(RuleRow(rule=rule, level=level, person_code=person, enabled=enabled, params=params))
    return list(result.values())


# A call for help, a fall, danger in the room: never switched off, for a home or for a resident (a press would
# become no alarm at all). Their priority and repeat window may be changed; migration 0020 holds the same line.
ALWAYS_ON: frozenset[str] = frozenset({"button", "sos", "fall", "environment"})


@router.put("/api/v1/alarm-rules/{rule}")
async def set_rule(rule: RuleName, body: RuleChange, conn: Conn, principal: CurrentPrincipal) -> RuleRow:
    institution_id = await _institution(conn, principal, body.institution_code, Action.WRITE_ALARM_RULES)
    _may_write(principal, institution_id)
    if rule in ALWAYS_ON and not body.enabled:
        raise Problem(
            422,
            f"the {rule} rule cannot be switched off",
            [
                FieldError(
                    field="body.enabled",
                    reason="a call for help, a fall or danger in the room always raises an alarm;"
                    " change its priority instead",
                )
            ],
        )
    try:
        params = PARAMS[rule].model_validate(body.params).model_dump(by_alias=True, exclude_none=True)
    except ValidationError as exc:
        raise Problem(
            422,
            f"invalid parameters for the {rule} rule",
            [
                FieldError(field="body.params." + ".".join(str(p) for p in err["loc"]), reason=err["msg"])
                for err in exc.errors()
            ],
        ) from None
    resident_id = await _resident(conn, institution_id, body.person_code)
    await conn.execute(
        "INSERT INTO alarm_rules (institution_id, resident_id, rule, enabled, params) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (institution_id, resident_id, rule) DO UPDATE SET enabled = EXCLUDED.enabled,"
        " params = EXCLUDED.params, updated_at = now()",
        (institution_id, resident_id, rule, body.enabled, json.dumps(params)),
    )
    return RuleRow(
        rule=rule,
        level="resident" if resident_id else "institution",
        person_code=body.person_code,
        enabled=body.enabled,
        params=params,
    )


@router.delete("/api/v1/alarm-rules/{rule}", status_code=204)
async def remove_rule(
    rule: RuleName,
    conn: Conn,
    principal: CurrentPrincipal,
    institution: Annotated[str, Query(min_length=18, max_length=18)],
    person: Annotated[str | None, Query(description="remove a resident's override")] = None,
) -> None:
    institution_id = await _institution(conn, principal, institution, Action.WRITE_ALARM_RULES)
    _may_write(principal, institution_id)
    resident_id = await _resident(conn, institution_id, person)
    cur = await conn.execute(
        "DELETE FROM alarm_rules WHERE institution_id = %s AND resident_id IS NOT DISTINCT FROM %s AND rule = %s",
        (institution_id, resident_id, rule),
    )
    if cur.rowcount == 0:
        raise NotFound("rule override")


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_code: str = Field(min_length=18, max_length=18)
    username: str = Field(min_length=3, max_length=64)
    tier: int = Field(ge=1, le=2, description="1 answers first; 2 when 1 does not acknowledge in time")
    name: str = Field(default="", max_length=40)
    starts: time
    ends: time = Field(description="equal to starts: the whole day; earlier than starts: crosses midnight")
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(default=[1, 2, 3, 4, 5, 6, 7], min_length=1)
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError("not an IANA time zone such as Asia/Shanghai")
        return value


class ShiftOut(Shift):
    id: int


@router.get("/api/v1/rosters")
async def list_shifts(
    conn: Conn, principal: CurrentPrincipal, institution: Annotated[str, Query(min_length=18, max_length=18)]
) -> list[ShiftOut]:
    institution_id = await _institution(conn, principal, institution, Action.READ_ALARM_RULES)
    rows = await (
        await conn.execute(
            "SELECT s.id, u.username, s.tier, s.name, s.starts, s.ends, s.weekdays, s.timezone FROM shift_roster s"
            " JOIN users u ON u.id = s.user_id WHERE s.institution_id = %s ORDER BY s.tier, s.starts, s.id",
            (institution_id,),
        )
    ).fetchall()
    return [
        ShiftOut(
            id=r[0],
            institution_code=institution,
            username=r[1],
            tier=r[2],
            name=r[3],
            starts=r[4],
            ends=r[5],
            weekdays=list(r[6]),
            timezone=r[7],
        )
        for r in rows
    ]


@router.post("/api/v1/rosters", status_code=201)
async def add_shift(body: Shift, conn: Conn, principal: CurrentPrincipal) -> ShiftOut:
    institution_id = await _institution(conn, principal, body.institution_code, Action.WRITE_ALARM_RULES)
    _may_write(principal, institution_id)
    user = await (
        await conn.execute(
            "SELECT id FROM users WHERE username = %s AND institution_id = %s AND role IN ('staff', 'head') AND active",
            (body.username, institution_id),
        )
    ).fetchone()
    if user is None:
        raise Problem(
            422,
            "no such staff member in this home",
            [FieldError(field="body.username", reason="not an active staff member or head of this home")],
        )
    row = await (
        await conn.execute(
            "INSERT INTO shift_roster (institution_id, user_id, tier, name, starts, ends, weekdays, timezone)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                institution_id,
                user[0],
                body.tier,
                body.name,
                body.starts,
                body.ends,
                sorted(set(body.weekdays)),
                body.timezone,
            ),
        )
    ).fetchone()
    assert row is not None
    return ShiftOut(id=row[0], **body.model_dump())


@router.delete("/api/v1/rosters/{shift_id}", status_code=204)
async def remove_shift(shift_id: int, conn: Conn, principal: CurrentPrincipal) -> None:
    require(principal, Action.WRITE_ALARM_RULES)
    query = sql.SQL("SELECT s.institution_id FROM shift_roster s WHERE s.id = %s AND {scope}").format(
        scope=institution_filter(principal, sql.SQL("s.institution_id"))
    )
    row = await (await conn.execute(query, (shift_id,))).fetchone()
    if row is None:
        raise NotFound("shift")
    _may_write(principal, row[0])
    await conn.execute("DELETE FROM shift_roster WHERE id = %s", (shift_id,))
