"""The live alarm stream (server-sent events) that the staff board subscribes to.

One LISTEN connection per platform process hears every alarm change (``alarms`` channel). For each
change the hub reads the alarm once per distinct scope among its subscribers, through the same scoped
query as the API (so the stream can never show what the API would not), and queues it to them. A slow
subscriber whose queue fills up is dropped; its page reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from eldercare.platform.alarms import reports, service
from eldercare.platform.alarms.models import Alarm
from eldercare.platform.alarms.reports import ResponseRow
from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES, FieldError, NotFound, Problem
from eldercare.platform.auth import service as auth_service
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0
QUEUE_SIZE = 2000


def _scope_key(p: Principal) -> tuple[object, ...]:
    return (p.role, p.institution_id, p.region_code, p.user_id if p.role.value == "family" else None)


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    queue: asyncio.Queue[Alarm | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class AlarmHub:
    def __init__(self, *, database_url: str, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self._database_url = database_url
        self._pool = pool
        self._subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()

    def subscribe(self, principal: Principal) -> Subscriber:
        sub = Subscriber(principal)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    async def _publish(self, alarm_id: int) -> None:
        groups: dict[tuple[object, ...], list[Subscriber]] = {}
        for sub in self._subscribers:
            groups.setdefault(_scope_key(sub.principal), []).append(sub)
        if not groups:
            return
        async with self._pool.connection() as conn:
            for members in groups.values():
                try:
                    alarm = await service.get_alarm(conn, principal=members[0].principal, alarm_id=alarm_id)
                except NotFound:
                    continue
                for sub in members:
                    try:
                        sub.queue.put_nowait(alarm)
                    except asyncio.QueueFull:
                        log.warning("alarm stream: dropping a subscriber that does not keep up")
                        self.unsubscribe(sub)
                        with contextlib.suppress(asyncio.QueueEmpty):
                            sub.queue.get_nowait()
                        sub.queue.put_nowait(None)

    async def run(self) -> None:
        while True:
            try:
                async with await AsyncConnection.connect(self._database_url, autocommit=True) as listener:
                    await listener.execute("LISTEN alarms")
                    self.ready.set()
                    async for note in listener.notifies():
                        await self._publish(int(note.payload))
            except psycopg.OperationalError as exc:
                self.ready.clear()
                log.warning("alarm stream: database unavailable (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)


router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"], responses=RESPONSES)
_bearer = HTTPBearer(auto_error=False)


def _event(name: str, data: str, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {data}\n\n"


@router.get("/report")
async def report(
    conn: Conn,
    principal: CurrentPrincipal,
    since: Annotated[datetime, Query(description="from (ISO 8601 with zone)")],
    until: Annotated[datetime, Query(description="until, exclusive")],
    by: Annotated[Literal["institution", "shift"], Query()] = "institution",
) -> list[ResponseRow]:
    """Time to acknowledge and to attend, per institution or per shift, for the supervision view."""
    if until <= since:
        raise Problem(422, "until must be after since", [FieldError(field="query.until", reason="not after since")])
    return await reports.response_times(conn, principal=principal, since=since, until=until, by=by)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def stream(
    request: Request,
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(description="the session token, for EventSource (no headers)")] = None,
) -> StreamingResponse:
    """Alarm changes in the caller's scope as they happen: first a ``snapshot`` of open alarms, then one
    ``alarm`` event per change, and a comment every 15 s to keep proxies from closing the stream."""
    secret = credentials.credentials if credentials is not None else token
    principal = await auth_service.principal_for(conn, token=secret) if secret else None
    if principal is None:
        raise Problem(401, "log in first: send Authorization: Bearer <token> or ?token=")
    hub: AlarmHub = request.app.state.alarm_hub
    snapshot = await service.list_alarms(conn, principal=principal, open_only=True, since=None, limit=1000)
    sub = hub.subscribe(principal)

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            yield _event("snapshot", "[" + ",".join(a.model_dump_json() for a in snapshot) + "]")
            while True:
                try:
                    alarm = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if alarm is None:
                    return
                yield _event("alarm", alarm.model_dump_json(), f"{alarm.id}")
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
