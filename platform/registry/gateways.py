"""Gateways and their broker credentials: issuing provisions the broker, revoking locks the gateway out."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from psycopg.rows import dict_row
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import FieldError, NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry import service
from eldercare.platform.registry.db import atomic
from eldercare.platform.registry.deps import BrokerDep
from eldercare.platform.registry.types import RESPONSES, Label, Limit, Offset, PathId
from eldercare.platform.stack import broker_auth

router = APIRouter(prefix="/api/v1", tags=["gateways"], responses=RESPONSES)


def _not_reserved(value: str) -> str:
    if value == broker_auth.PLATFORM:
        raise ValueError(f"{broker_auth.PLATFORM!r} is the platform's own broker login")
    return value


GatewayId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"), AfterValidator(_not_reserved)
]


class GatewayIn(BaseModel):
    gateway_id: GatewayId = Field(description="its MQTT username and the topic level after the institution code")
    name: Label = ""


class Gateway(BaseModel):
    id: int
    institution_id: int
    institution_code: str
    gateway_id: str
    name: str
    has_credentials: bool
    issued_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    last_status: str | None


class Credentials(BaseModel):
    """Shown once: the platform keeps only the broker's hash of the password."""

    gateway: Gateway
    username: str
    password: str
    topic_prefix: str


_SELECT = (
    "SELECT g.id, g.institution_id, i.code AS institution_code, g.gateway_id, g.name,"
    " g.password_hash IS NOT NULL AS has_credentials, g.issued_at, g.revoked_at, g.last_seen_at, g.last_status"
    " FROM gateways g JOIN institutions i ON i.id = g.institution_id"
)


async def fetch(conn: AsyncConn, gateway_pk: int) -> Gateway:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute((_SELECT + " WHERE g.id = %s").encode(), (gateway_pk,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("gateway")
    return Gateway.model_validate(row)


def _credentials(gateway: Gateway, password: str) -> Credentials:
    return Credentials(
        gateway=gateway,
        username=gateway.gateway_id,
        password=password,
        topic_prefix=f"eldercare/v1/{gateway.institution_code}/{gateway.gateway_id}",
    )


@router.get("/institutions/{institution_id}/gateways")
async def list_gateways(
    institution_id: PathId, conn: Conn, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[Gateway]:
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.READ_REGISTRY)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            (_SELECT + " WHERE g.institution_id = %s ORDER BY g.id LIMIT %s OFFSET %s").encode(),
            (institution_id, limit, offset),
        )
        return [Gateway.model_validate(r) for r in await cur.fetchall()]


@router.post("/institutions/{institution_id}/gateways", status_code=201)
async def create_gateway(
    institution_id: PathId, body: GatewayIn, conn: Conn, principal: CurrentPrincipal, broker: BrokerDep
) -> Credentials:
    """Register a gateway and issue its broker login; the password is in this answer only."""
    await scope.resolve(conn, principal, Obj.INSTITUTION, institution_id, Action.MANAGE_GATEWAYS)
    async with atomic(conn):
        creds = await service.create_gateway(
            conn, institution_id=institution_id, gateway_id=body.gateway_id, name=body.name, broker=broker
        )
        row = await (await conn.execute("SELECT id FROM gateways WHERE gateway_id = %s", (body.gateway_id,))).fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal=principal,
            action="issue_credentials",
            object_type="gateway",
            object_id=row[0],
            institution_id=institution_id,
            detail={"gateway_id": body.gateway_id},
        )
    return _credentials(await fetch(conn, row[0]), creds.password)


@router.get("/gateways/{gateway_pk}")
async def get_gateway(gateway_pk: PathId, conn: Conn, principal: CurrentPrincipal) -> Gateway:
    await scope.resolve(conn, principal, Obj.GATEWAY, gateway_pk, Action.READ_REGISTRY)
    return await fetch(conn, gateway_pk)


@router.post("/gateways/{gateway_pk}/credentials", status_code=201)
async def reissue_credentials(
    gateway_pk: PathId, conn: Conn, principal: CurrentPrincipal, broker: BrokerDep
) -> Credentials:
    """A new password (the old one stops working at once); also re-admits a revoked gateway.

    The broker takes the login first, then the row is changed, as a revocation is (:func:`revoke_gateway`)."""
    institution_id = await scope.resolve(conn, principal, Obj.GATEWAY, gateway_pk, Action.MANAGE_GATEWAYS)
    gateway = await fetch(conn, gateway_pk)
    password = secrets.token_urlsafe(24)
    async with atomic(conn):
        await _hold_login(conn, gateway_pk)
        await service.provision(
            broker, institution=gateway.institution_code, gateway=gateway.gateway_id, password=password
        )
        await conn.execute(
            "UPDATE gateways SET password_hash = %s, issued_at = now(), revoked_at = NULL WHERE id = %s",
            (broker_auth.hash_password(password), gateway_pk),
        )
        await audit.record(
            conn,
            principal=principal,
            action="issue_credentials",
            object_type="gateway",
            object_id=gateway_pk,
            institution_id=institution_id,
        )
    return _credentials(await fetch(conn, gateway_pk), password)


@router.post("/gateways/{gateway_pk}/revoke")
async def revoke_gateway(gateway_pk: PathId, conn: Conn, principal: CurrentPrincipal, broker: BrokerDep) -> Gateway:
    """Take the gateway's broker login away: the broker disconnects it at once and refuses it after.

    The broker is told first (it may take up to its reload timeout, 10 s), then the revocation is committed, so
    nothing the gateway publishes after the commit reaches ingest. The gateway's row is locked only for that commit,
    never while the broker reloads: ingest writes the row with every status the gateway sends, in the alarm lane,
    whose batch may carry other gateways' alarms, and would wait as long. A broker that does not confirm is a 503 and
    nothing is committed: the gateway is still admitted in the registry (though its login may be gone from the
    broker's files already), and sending the request again revokes it.
    """
    institution_id = await scope.resolve(conn, principal, Obj.GATEWAY, gateway_pk, Action.MANAGE_GATEWAYS)
    async with atomic(conn):
        await _hold_login(conn, gateway_pk)
        gateway = await fetch(conn, gateway_pk)  # under the lock: a revocation being sent is committed, or not begun
        if gateway.revoked_at is not None:
            reason = [FieldError(field="path.gateway_pk", reason="revoked")]
            raise Problem(409, "the gateway is revoked already", reason)
        await service.revoke(broker, gateway=gateway.gateway_id)
        await conn.execute("UPDATE gateways SET password_hash = NULL, revoked_at = now() WHERE id = %s", (gateway_pk,))
        await audit.record(
            conn,
            principal=principal,
            action="revoke_credentials",
            object_type="gateway",
            object_id=gateway_pk,
            institution_id=institution_id,
        )
    return await fetch(conn, gateway_pk)


async def _hold_login(conn: AsyncConn, gateway_pk: int) -> None:
    """Take the lock on the gateway's broker login until the transaction ends: its changes (a revocation, a new
    password) reach the broker and the registry in one order. Not the gateway's row: ingest updates the row with each
    status the gateway sends and would wait for as long as the broker takes to reload (up to 10 s)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('gateway-login'), %s::int)", (gateway_pk % 2**31,))
