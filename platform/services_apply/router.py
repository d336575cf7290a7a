"""Public ``/api/v1/public/...`` (apply, follow) and the providers' ``/api/v1/service-applications``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, StringConstraints

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope, throttle
from eldercare.platform.auth.router import THROTTLED, client_of, throttled
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.deps import VaultDep
from eldercare.platform.registry.types import RESPONSES, IdNumberText, Limit, Name, Note, Offset, PathId, mask_name
from eldercare.platform.services_apply import service

public = APIRouter(prefix="/api/v1/public", tags=["public: service application"], responses=RESPONSES | THROTTLED)
router = APIRouter(prefix="/api/v1/service-applications", tags=["service applications"], responses=RESPONSES)

APPLY_LIMIT = 10  # per client address and minute
FOLLOW_LIMIT = 60
_CHINA = timezone(timedelta(hours=8))
ServiceCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
Tracking = Annotated[str, Path(pattern=r"^SA[0-9A-Y]{10}$")]


class Offer(BaseModel):
    code: str
    name: str
    kind: str
    min_age: int
    capabilities: list[str] | None
    monthly_yuan: float | None
    description: str


class ApplyIn(BaseModel):
    name: Annotated[Name, Field(max_length=50)]
    id_number: IdNumberText
    service: ServiceCode | None = Field(default=None, description="apply for this; leave out to ask what applies")


class Event(BaseModel):
    at: datetime
    status: str
    note: str


class Tracked(BaseModel):
    tracking_code: str
    service: str
    service_name: str
    status: str
    applicant: str = Field(description="masked name")
    id_number_masked: str
    provider_name: str | None
    provider_phone: str | None
    created_at: datetime
    events: list[Event]


class Answer(BaseModel):
    applicant: str = Field(description="masked name")
    id_number_masked: str
    age: int
    eligible: list[Offer]
    application: Tracked | None


class StatusIn(BaseModel):
    status: Annotated[str, StringConstraints(pattern="^(routed|accepted|in_service|completed|rejected)$")]
    note: Note = ""


class Application(BaseModel):
    id: int
    tracking_code: str
    service: str
    status: str
    applicant: str = Field(description="in clear for the provider's staff (audited); masked for regulators")
    id_number_masked: str
    resident_institution_id: int
    provider_institution_id: int | None
    created_at: datetime
    updated_at: datetime


def _offer(o: service.Offer) -> Offer:
    return Offer(
        code=o.code,
        name=o.name,
        kind=o.kind,
        min_age=o.min_age,
        capabilities=o.capabilities,
        monthly_yuan=float(o.monthly_yuan) if o.monthly_yuan is not None else None,
        description=o.description,
    )


async def _limited(conn: Conn, request: Request, what: str, limit: int) -> JSONResponse | None:
    try:
        await throttle.rate_limit(conn, bucket=f"{what}:{client_of(request)}", limit=limit, window=timedelta(minutes=1))
    except throttle.TooMany as exc:
        return throttled(exc)
    return None


@public.get("/services")
async def list_services(conn: Conn) -> list[Offer]:
    """What an elder may apply for, and from what age."""
    return [_offer(o) for o in await service.catalogue(conn)]


async def _tracked(conn: Conn, tracking: str, vault: Vault) -> Tracked | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT a.id, a.tracking_code, a.service_code AS service, c.name AS service_name, a.status::text AS status,"
            " a.created_at, r.name_enc, r.id_number_masked, p.name AS provider_name, p.contact_phone AS provider_phone"
            " FROM service_applications a JOIN service_catalog c ON c.code = a.service_code"
            " JOIN residents r ON r.id = a.resident_id LEFT JOIN institutions p ON p.id = a.provider_institution_id"
            " WHERE a.tracking_code = %s",
            (tracking,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(
            "SELECT at, status::text AS status, note FROM service_application_events WHERE application_id = %s"
            " ORDER BY at, id",
            (row.pop("id"),),
        )
        events = [Event.model_validate(e) for e in await cur.fetchall()]
    row["applicant"] = mask_name(vault.decrypt(bytes(row.pop("name_enc")), column="residents.name"))
    return Tracked.model_validate({**row, "events": events, "provider_phone": row["provider_phone"] or None})


@public.post("/service-applications", response_model=Answer, responses={404: RESPONSES[404]})
async def apply(body: ApplyIn, conn: Conn, request: Request, vault: VaultDep) -> Answer | JSONResponse:
    """One press: check the person against the registry, answer what they are eligible for and, when a service
    is named, apply for it and route it to a provider. Only masked personal data come back."""
    if (limited := await _limited(conn, request, "apply", APPLY_LIMIT)) is not None:
        return limited
    today = datetime.now(_CHINA).date()
    applicant = await service.find_applicant(conn, vault=vault, name=body.name, id_number=body.id_number, today=today)
    if applicant is None:
        raise Problem(404, "no registered person matches this name and ID number")
    offers = await service.catalogue(conn)
    eligible = [o for o in offers if o.eligible(age=applicant.age, capability=applicant.capability)]
    tracked: Tracked | None = None
    if body.service is not None:
        wanted = next((o for o in offers if o.code == body.service), None)
        if wanted is None:
            raise Problem(422, "no such service", [FieldError(field="body.service", reason="unknown service code")])
        if wanted not in eligible:
            reason = f"needs age {wanted.min_age} or more" + (
                f" and capability {' or '.join(wanted.capabilities)}" if wanted.capabilities else ""
            )
            raise Problem(422, "not eligible for this service", [FieldError(field="body.service", reason=reason)])
        async with atomic(conn):
            provider = await service.route(conn, region_code=applicant.region_code)
            application_id, code, _ = await service.submit(
                conn, applicant=applicant, service_code=wanted.code, provider=provider
            )
            await audit.record(
                conn,
                principal=None,
                actor=f"public:{client_of(request)}",
                action="apply",
                object_type="service_application",
                object_id=application_id,
                institution_id=applicant.institution_id,
                detail={"service": wanted.code, "provider_institution_id": provider},
            )
        tracked = await _tracked(conn, code, vault)
    return Answer(
        applicant=mask_name(applicant.name),
        id_number_masked=applicant.id_number_masked,
        age=applicant.age,
        eligible=[_offer(o) for o in eligible],
        application=tracked,
    )


@public.get("/service-applications/{tracking_code}", response_model=Tracked)
async def follow(tracking_code: Tracking, conn: Conn, request: Request, vault: VaultDep) -> Tracked | JSONResponse:
    """Where an application stands, by its tracking code."""
    if (limited := await _limited(conn, request, "follow", FOLLOW_LIMIT)) is not None:
        return limited
    tracked = await _tracked(conn, tracking_code, vault)
    if tracked is None:
        raise NotFound("application")
    return tracked


_SELECT = (
    "SELECT a.id, a.tracking_code, a.service_code AS service, a.status::text AS status, r.name_enc,"
    " r.id_number_masked, r.institution_id AS resident_institution_id, a.provider_institution_id, a.created_at,"
    " a.updated_at FROM service_applications a JOIN residents r ON r.id = a.resident_id"
)


def _application(row: dict[str, Any], vault: Vault, clear: bool) -> Application:
    name = vault.decrypt(bytes(row.pop("name_enc")), column="residents.name")
    return Application.model_validate({**row, "applicant": name if clear else mask_name(name)})


@router.get("")
async def list_applications(
    *,
    conn: Conn,
    principal: CurrentPrincipal,
    vault: VaultDep,
    status: Annotated[str | None, Query(pattern="^(submitted|routed|accepted|in_service|completed|rejected)$")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Application]:
    """Applications routed to the caller's institution (a regulator: to the providers of the region)."""
    scope.require(principal, Action.READ_APPLICATIONS)
    clear = scope.sees_names(principal)
    query = sql.SQL(
        "{select} WHERE {scope} AND (%(status)s::application_status IS NULL"
        " OR a.status = %(status)s::application_status)"
        " ORDER BY a.created_at DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s"
    ).format(select=sql.SQL(_SELECT), scope=scope.institution_filter(principal, sql.SQL("a.provider_institution_id")))
    async with atomic(conn):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {"status": status, "limit": limit, "offset": offset})
            found = [_application(row, vault, clear) for row in await cur.fetchall()]
        if found and clear:
            await audit.record(
                conn,
                principal=principal,
                action="read_personal",
                object_type="service_application",
                object_id=None,
                institution_id=principal.institution_id,
                detail={"ids": [a.id for a in found]},
            )
    return found


@router.post("/{application_id}/status")
async def set_status(
    application_id: PathId, body: StatusIn, conn: Conn, principal: CurrentPrincipal, vault: VaultDep
) -> Application:
    """The provider moves the application on: routed, accepted, in service, completed (or rejected)."""
    institution_id = await scope.resolve(conn, principal, Obj.APPLICATION, application_id, Action.HANDLE_APPLICATIONS)
    async with atomic(conn):
        row = await (
            await conn.execute(
                "SELECT status::text FROM service_applications WHERE id = %s FOR UPDATE", (application_id,)
            )
        ).fetchone()
        assert row is not None
        if body.status not in service.NEXT.get(row[0], ()):
            raise Problem(
                409,
                f"an application that is {row[0]} cannot become {body.status}",
                [FieldError(field="body.status", reason=f"allowed: {', '.join(service.NEXT.get(row[0], ()))}")],
            )
        await conn.execute(
            "UPDATE service_applications SET status = %s, note = %s, updated_at = now() WHERE id = %s",
            (body.status, body.note, application_id),
        )
        await conn.execute(
            "INSERT INTO service_application_events (application_id, status, note, user_id) VALUES (%s, %s, %s, %s)",
            (application_id, body.status, body.note, principal.user_id),
        )
        await audit.record(
            conn,
            principal=principal,
            action="update",
            object_type="service_application",
            object_id=application_id,
            institution_id=institution_id,
            detail={"from": row[0], "to": body.status},
        )
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute((_SELECT + " WHERE a.id = %s").encode(), (application_id,))
            found = await cur.fetchone()
    assert found is not None
    return _application(found, vault, scope.sees_names(principal))
