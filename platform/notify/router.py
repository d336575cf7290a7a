"""``/api/v1/me/notifications``: a user's own preferences and channels (families set theirs here).

Only the kinds of channel this platform sends are offered (``GET .../kinds``): e-mail needs a mail server. A
channel of another kind is refused when it is added, and one added before its kind was switched off is listed
with ``offered: false``, so a family is not left believing they will be told.

``GET .../undelivered`` lists to a home's staff the notifications about its alarms that did not reach their
recipient: given up after ``max_attempts``, or still failing past them (staff told of an open emergency are never
given up on), so that someone can telephone the family or nurse who was not told.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Literal, get_args
from zoneinfo import available_timezones

import httpx
from fastapi import APIRouter, Query, Request
from psycopg import sql
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES, NotFound, invalid
from eldercare.platform.auth.scope import Action, institution_filter, require
from eldercare.platform.crypto import Vault
from eldercare.platform.notify.sender import SenderPolicy

router = APIRouter(prefix="/api/v1/me/notifications", tags=["notifications"], responses=RESPONSES)

ChannelKind = Literal["email", "sms", "webhook_wecom", "webhook_dingtalk", "webhook_json"]
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
_PHONE = re.compile(r"^(\+?86)?1[3-9]\d{9}$")
_CONTACTS = {"email": (_EMAIL, "e-mail address"), "sms": (_PHONE, "mobile number")}
_HOSTNAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def url_problem(address: str) -> str | None:
    """Why ``address`` is not a webhook URL the sender can post to (parsed as httpx does), or None."""
    try:
        url = httpx.URL(address)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "it cannot be parsed"
    if url.scheme not in ("http", "https"):
        return "its scheme is not http or https"
    host = url.raw_host.decode("ascii", errors="replace")
    if not host:
        return "it has no host"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not _HOSTNAME.match(host):
            return "its host is not a valid host name or IP address"
    if url.port is not None and not 1 <= url.port <= 65535:
        return "its port is not between 1 and 65535"
    return None


class Prefs(BaseModel):
    kinds: list[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]] | None = Field(
        default=None, description="alarm kinds to be told of; null: every alarm but technical ones", max_length=50
    )
    quiet_from: time | None = Field(default=None, description="quiet hours start (emergencies still come)")
    quiet_to: time | None = None
    timezone: str = "Asia/Shanghai"
    language: Literal["zh-CN", "en"] = "zh-CN"
    notify_resolved: bool = True

    @field_validator("quiet_to")
    @classmethod
    def _not_the_whole_day(cls, value: time | None, info: ValidationInfo) -> time | None:
        if value is not None and value == info.data.get("quiet_from"):
            raise ValueError(
                "quiet_to equals quiet_from: quiet hours would last the whole day; for none, leave both empty"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError("not an IANA time zone such as Asia/Shanghai")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> Prefs:
        if (self.quiet_from is None) != (self.quiet_to is None):
            raise ValueError("quiet_from and quiet_to go together")
        return self


class NewChannel(BaseModel):
    kind: ChannelKind
    address: str = Field(min_length=3, max_length=500, description="e-mail, mobile number or webhook URL")
    secret: str | None = Field(default=None, min_length=8, max_length=200, description="HMAC secret of a webhook")
    position: int = Field(default=1, ge=1, le=20, description="fallback order, 1 first")

    @field_validator("address")
    @classmethod
    def _address_fits_kind(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself was refused; that error is reported on its own field
            return value
        address = value.strip()
        if kind in _CONTACTS:
            pattern, expected = _CONTACTS[kind]
            if not pattern.match(address):
                raise ValueError(f"address is not a valid {expected}")
        elif (problem := url_problem(address)) is not None:
            raise ValueError(f"address is not a valid http(s) URL: {problem}")
        return value

    @model_validator(mode="after")
    def _secret_fits_kind(self) -> NewChannel:
        if self.secret and self.kind in ("email", "sms", "webhook_wecom"):
            raise ValueError(f"a {self.kind} channel takes no secret")
        return self


class ChannelOut(BaseModel):
    id: int
    kind: ChannelKind
    address_masked: str
    signed: bool
    position: int
    active: bool
    offered: bool = Field(description="false: this platform does not send this kind now (no mail server)")


class Undelivered(BaseModel):
    id: int
    alarm_id: int
    institution_id: int
    bed_code: str | None = Field(description="the alarm's bed, if it had one")
    alarm_kind: str
    priority: str
    event: str
    username: str
    role: str
    state: Literal["failed", "pending"] = Field(description="failed: given up; pending: still being retried")
    attempts: int
    last_error: str | None = Field(description="channel kind and reason; never an address")
    created_at: datetime
    next_try: datetime | None


class Kinds(BaseModel):
    kinds: list[ChannelKind] = Field(description="the kinds of channel this platform sends, in the form's order")


def _mask(address: str) -> str:
    if "@" in address:
        name, _, domain = address.partition("@")
        return f"{name[:1]}***@{domain}"
    if address.startswith("http"):
        return address.split("?", 1)[0][:40] + "?***"
    return f"{address[:3]}****{address[-4:]}"


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def _offered(request: Request) -> frozenset[str]:
    kinds: frozenset[str] = request.app.state.channel_kinds
    return kinds


@router.get("/kinds")
async def offered_kinds(request: Request, principal: CurrentPrincipal) -> Kinds:
    offered = _offered(request)
    return Kinds(kinds=[kind for kind in get_args(ChannelKind) if kind in offered])


@router.get("/prefs")
async def get_prefs(conn: Conn, principal: CurrentPrincipal) -> Prefs:
    row = await (
        await conn.execute(
            "SELECT kinds, quiet_from, quiet_to, timezone, language, notify_resolved FROM notification_prefs"
            " WHERE user_id = %s",
            (principal.user_id,),
        )
    ).fetchone()
    if row is None:
        return Prefs()
    return Prefs(
        kinds=row[0], quiet_from=row[1], quiet_to=row[2], timezone=row[3], language=row[4], notify_resolved=row[5]
    )


@router.put("/prefs")
async def put_prefs(body: Prefs, conn: Conn, principal: CurrentPrincipal) -> Prefs:
    await conn.execute(
        "INSERT INTO notification_prefs (user_id, kinds, quiet_from, quiet_to, timezone, language, notify_resolved)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET kinds = EXCLUDED.kinds,"
        " quiet_from = EXCLUDED.quiet_from, quiet_to = EXCLUDED.quiet_to, timezone = EXCLUDED.timezone,"
        " language = EXCLUDED.language, notify_resolved = EXCLUDED.notify_resolved",
        (
            principal.user_id,
            body.kinds,
            body.quiet_from,
            body.quiet_to,
            body.timezone,
            body.language,
            body.notify_resolved,
        ),
    )
    return body


@router.get("/channels")
async def list_channels(request: Request, conn: Conn, principal: CurrentPrincipal) -> list[ChannelOut]:
    vault = _vault(request)
    offered = _offered(request)
    rows = await (
        await conn.execute(
            "SELECT id, kind, address_enc, secret_enc IS NOT NULL, position, active FROM notification_channels"
            " WHERE user_id = %s AND active ORDER BY position, id",
            (principal.user_id,),
        )
    ).fetchall()
    return [
        ChannelOut(
            id=r[0],
            kind=r[1],
            address_masked=_mask(vault.decrypt(r[2], column="notification_channels.address")),
            signed=r[3],
            position=r[4],
            active=r[5],
            offered=r[1] in offered,
        )
        for r in rows
    ]


@router.post("/channels", status_code=201)
async def add_channel(body: NewChannel, request: Request, conn: Conn, principal: CurrentPrincipal) -> ChannelOut:
    vault = _vault(request)
    offered = _offered(request)
    if body.kind not in offered:
        reason = f"this platform does not send {body.kind}; it offers " + ", ".join(sorted(offered))
        raise invalid("body.kind", reason)
    address = body.address.strip()
    row = await (
        await conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc, secret_enc, position)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (
                principal.user_id,
                body.kind,
                vault.encrypt(address, column="notification_channels.address"),
                vault.encrypt(body.secret, column="notification_channels.secret") if body.secret else None,
                body.position,
            ),
        )
    ).fetchone()
    assert row is not None
    return ChannelOut(
        id=row[0],
        kind=body.kind,
        address_masked=_mask(address),
        signed=body.secret is not None,
        position=body.position,
        active=True,
        offered=True,
    )


@router.delete("/channels/{channel_id}", status_code=204)
async def remove_channel(channel_id: int, conn: Conn, principal: CurrentPrincipal) -> None:
    cur = await conn.execute(
        "UPDATE notification_channels SET active = false WHERE id = %s AND user_id = %s AND active",
        (channel_id, principal.user_id),
    )
    if cur.rowcount != 1:
        raise NotFound("channel")


_UNDELIVERED = """
SELECT n.id, n.alarm_id, a.kind, a.priority::text, n.event, u.username, u.role::text, n.state, n.attempts,
       n.last_error, n.created_at, CASE WHEN n.state = 'pending' THEN n.not_before END, a.institution_id, b.code
FROM notifications n JOIN alarms a ON a.id = n.alarm_id JOIN users u ON u.id = n.user_id
LEFT JOIN beds b ON b.id = a.bed_id
WHERE (n.state = 'failed' OR (n.state IN ('pending', 'sending') AND n.attempts >= %(max_attempts)s))
  AND n.created_at >= %(since)s AND {scope}
ORDER BY n.created_at DESC LIMIT 500
"""


@router.get("/undelivered")
async def undelivered(
    request: Request,
    conn: Conn,
    principal: CurrentPrincipal,
    since: Annotated[datetime | None, Query(description="created at or after; default: the last 7 days")] = None,
) -> list[Undelivered]:
    """Notifications about the home's alarms that did not reach their recipient (newest first, at most 500)."""
    require(principal, Action.HANDLE_ALARMS)
    policy = getattr(request.app.state, "sender_policy", None)
    max_attempts = policy.max_attempts if policy is not None else SenderPolicy().max_attempts
    query = sql.SQL(_UNDELIVERED).format(scope=institution_filter(principal, sql.SQL("a.institution_id")))
    rows = await (
        await conn.execute(
            query,
            {
                "max_attempts": max_attempts,
                "since": since or datetime.now(UTC) - timedelta(days=7),
            },
        )
    ).fetchall()
    return [
        Undelivered(
            id=r[0],
            alarm_id=r[1],
            institution_id=r[12],
            bed_code=r[13],
            alarm_kind=r[2],
            priority=r[3],
            event=r[4],
            username=r[5],
            role=r[6],
            state="failed" if r[7] == "failed" else "pending",
            attempts=r[8],
            last_error=r[9],
            created_at=r[10],
            next_try=r[11],
        )
        for r in rows
    ]
