"""The live alarm stream (server-sent events) that the staff board subscribes to.

One LISTEN connection per platform process hears every alarm change (``alarms`` channel). For each
change the hub reads the alarm once per distinct scope among its subscribers, through the same scoped
query as the API (so the stream can never show what the API would not), and queues it to them. A slow
subscriber whose queue fills up is dropped; its page reconnects and starts again from a snapshot.

Nothing is missed across a lost LISTEN connection: a change notified while the hub is not listening is gone
for good, so after every (re)LISTEN the hub ends the stream of every subscriber it had; the browser's
EventSource reconnects by itself and starts again from a fresh snapshot. A new stream subscribes before it
reads its snapshot, so a change in between is in one or the other (or both: the page applies it twice).

A stream serves only a live session: before pushing a batch of changes (and at every keepalive) it checks
the session again, at most once per ``SESSION_RECHECK_S`` (one indexed query), and ends when the session
has ended (logout, password change, expiry) or its user was deactivated or given another scope. So a change
may still reach a session ended less than ``SESSION_RECHECK_S`` ago; nothing later than that does.

Alarms are health data, and a stream is a read like ``GET /alarms``, audited the same way (one ``read_health``
entry naming the alarms and residents shown, written before they are sent; nothing shown, nothing logged):
the snapshot is one entry, and each later batch of changes is one entry naming the alarms this stream has
not shown yet. An alarm already shown is not logged again at each change (acknowledged, attended, pressed
again): that would multiply the log by the changes without naming anything new, whereas one entry per alarm
first shown keeps every alarm (its kind, its resident) a user was shown on the record. A stream that cannot
write its entry ends, without sending what it could not log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

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
from eldercare.platform.crypto import Vault

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0
QUEUE_SIZE = 2000
SESSION_RECHECK_S = 5.0


def _scope_key(p: Principal) -> tuple[object, ...]:
    return (p.role, p.institution_id, p.region_code, p.user_id if p.role.value == "family" else None)


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    queue: asyncio.Queue[Alarm | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class AlarmHub:
    def __init__(self, *, database_url: str, pool: AsyncConnectionPool[AsyncConn], vault: Vault) -> None:
        self._database_url = database_url
        self._pool = pool
        self._vault = vault  # opens the alarms' text, as the API does (``service.shown``)
        self._subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()

    def subscribe(self, principal: Principal) -> Subscriber:
        sub = Subscriber(principal)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def _end(self, sub: Subscriber) -> None:
        """Unsubscribe and end the subscriber's stream (its page reconnects and takes a fresh snapshot)."""
        self.unsubscribe(sub)
        with contextlib.suppress(asyncio.QueueEmpty):
            while sub.queue.full():
                sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def _resync_all(self) -> None:
        for sub in list(self._subscribers):
            self._end(sub)

    async def principal_for(self, token: str) -> Principal | None:
        """The session's principal now, or None once the session or its user is gone."""
        async with self._pool.connection() as conn:
            return await auth_service.principal_for(conn, token=token)

    async def open_stream(self, token: str) -> tuple[Subscriber, list[Alarm]] | None:
        """Subscribe the session's principal and read its snapshot (logged as read), or None for an unknown
        session. On a connection of its own, given back at once: a request's connection (``Conn``) would be
        held until the response ends, and a stream does not end, so open pages would drain the pool."""
        async with self._pool.connection() as conn:
            principal = await auth_service.principal_for(conn, token=token)
            if principal is None:
                return None
            # Subscribe first: a change made while the snapshot is read is then queued, not lost.
            sub = self.subscribe(principal)
            try:
                async with conn.transaction():
                    snapshot = await service.list_alarms(
                        conn, principal=principal, vault=self._vault, open_only=True, since=None, limit=1000
                    )
                    await service.audit_read(
                        conn, principal=principal, alarm_ids=[a.id for a in snapshot], shown_as="stream_snapshot"
                    )
            except BaseException:
                self.unsubscribe(sub)
                raise
        return sub, snapshot

    async def audit(self, principal: Principal, *, alarm_ids: list[int], shown_as: str) -> None:
        """Log that ``principal`` is shown these alarms (see :func:`service.audit_read`), in its own transaction."""
        async with self._pool.connection() as conn, conn.transaction():
            await service.audit_read(conn, principal=principal, alarm_ids=alarm_ids, shown_as=shown_as)

    async def audit_shown(self, principal: Principal, batch: list[Alarm], shown: set[int]) -> bool:
        """Log the alarms of ``batch`` not in ``shown`` as shown on a stream and add them to ``shown``; False
        when the log cannot be written (the stream must then end without sending them)."""
        unlogged = sorted({a.id for a in batch} - shown)
        if not unlogged:
            return True
        try:
            await self.audit(principal, alarm_ids=unlogged, shown_as="stream")
        except psycopg.OperationalError as exc:
            log.warning("alarm stream: cannot log the read (%s); ending the stream", exc)
            return False
        shown.update(unlogged)
        return True

    async def _publish(self, alarm_id: int) -> None:
        groups: dict[tuple[object, ...], list[Subscriber]] = {}
        for sub in self._subscribers:
            groups.setdefault(_scope_key(sub.principal), []).append(sub)
        if not groups:
            return
        async with self._pool.connection() as conn:
            for members in groups.values():
                try:
                    alarm = await service.get_alarm(
                        conn, principal=members[0].principal, vault=self._vault, alarm_id=alarm_id
                    )
                except NotFound:
                    continue
                for sub in members:
                    try:
                        sub.queue.put_nowait(alarm)
                    except asyncio.QueueFull:
                        log.warning("alarm stream: dropping a subscriber that does not keep up")
                        self._end(sub)

    async def run(self) -> None:
        try:
            while True:
                try:
                    async with await AsyncConnection.connect(self._database_url, autocommit=True) as listener:
                        await listener.execute("LISTEN alarms")
                        # Changes notified before this LISTEN (while reconnecting, or before the first one) are
                        # lost to us: every stream open now starts again from a snapshot taken from here on.
                        self._resync_all()
                        self.ready.set()
                        async for note in listener.notifies():
                            await self._publish(int(note.payload))
                except psycopg.OperationalError as exc:
                    self.ready.clear()
                    log.warning("alarm stream: database unavailable (%s); retrying in 1 s", exc)
                    await asyncio.sleep(1.0)
        finally:
            # The hub is stopping: no stream may stay open on keepalives alone.
            self.ready.clear()
            self._resync_all()


def _take_queued(sub: Subscriber, first: Alarm) -> tuple[list[Alarm], bool]:
    """``first`` and the changes queued behind it now; and whether the stream's end was queued too."""
    batch = [first]
    while not sub.queue.empty():
        queued = sub.queue.get_nowait()
        if queued is None:
            return batch, True
        batch.append(queued)
    return batch, False


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
    by: Annotated[reports.By, Query()] = "institution",
) -> list[ResponseRow]:
    """Time to acknowledge and to attend, per institution or per shift, for the home's staff and its
    regulators; families get 403 (a report counts every resident's alarms)."""
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
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(description="the session token, for EventSource (no headers)")] = None,
) -> StreamingResponse:
    """Alarm changes in the caller's scope as they happen: first a ``snapshot`` of open alarms, then one
    ``alarm`` event per change, and a comment every 15 s to keep proxies from closing the stream. The stream
    ends (the browser reconnects and gets a fresh snapshot) after the server lost changes, and for good
    (the reconnect is refused with 401) once the session has ended or its user was deactivated."""
    hub: AlarmHub = request.app.state.alarm_hub
    secret = credentials.credentials if credentials is not None else token
    opened = await hub.open_stream(secret) if secret else None
    if secret is None or opened is None:
        raise Problem(401, "log in first: send Authorization: Bearer <token> or ?token=")
    sub, snapshot = opened
    principal = sub.principal
    checked = asyncio.get_running_loop().time()
    shown = {a.id for a in snapshot}  # alarms this stream has shown, so logged

    async def still_allowed() -> bool:
        """The session is still live and has the same scope (checked at most once per SESSION_RECHECK_S)."""
        nonlocal checked
        now = asyncio.get_running_loop().time()
        if now - checked < SESSION_RECHECK_S:
            return True
        try:
            current = await hub.principal_for(secret)
        except psycopg.OperationalError as exc:
            log.warning("alarm stream: cannot check the session (%s); ending the stream", exc)
            return False
        checked = now
        return current == principal

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            yield _event("snapshot", "[" + ",".join(a.model_dump_json() for a in snapshot) + "]")
            while True:
                try:
                    alarm = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    if not await still_allowed():
                        return
                    yield ": keepalive\n\n"
                    continue
                if alarm is None or not await still_allowed():
                    return
                # What else is queued goes out under the same check and the same audit entry.
                batch, ended = _take_queued(sub, alarm)
                if not await hub.audit_shown(principal, batch, shown):
                    return
                for change in batch:
                    yield _event("alarm", change.model_dump_json(), f"{change.id}")
                if ended:
                    return
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
