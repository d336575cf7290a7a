"""The live alarm stream (server-sent events) over real HTTP, the real hub and the real database: a stream
never stays open after the hub lost changes (its LISTEN connection dropped), a stream subscribes before it
reads its snapshot, and a stream stops pushing once its session has ended or its user was deactivated."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import uvicorn
from tests.alerting.conftest import put_event
from tests.conftest import free_ports

from eldercare.platform.alarms import engine, stream
from eldercare.platform.api.app import create_app
from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome

END = "end of stream"


@dataclass
class Live:
    base: str
    hub: stream.AlarmHub
    http: httpx.AsyncClient

    async def token(self, home: SeededHome) -> str:
        reply = await self.http.post(
            f"{self.base}/api/v1/auth/login",
            json={"username": home.staff_username, "password": home.staff_password},
        )
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token

    def open(self, token: str) -> tuple[asyncio.Queue[tuple[str, Any]], asyncio.Task[None]]:
        """Read the stream in the background: (event name, parsed data) per event, then (END, status)."""
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def read() -> None:
            async with self.http.stream("GET", f"{self.base}/api/v1/alarms/stream", params={"token": token}) as r:
                name = ""
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        await events.put((name, json.loads(line.removeprefix("data: "))))
                await events.put((END, r.status_code))

        return events, asyncio.create_task(read())


@contextlib.asynccontextmanager
async def live_app(db: str, vault: Vault) -> AsyncIterator[Live]:
    """The platform's app served by uvicorn on a free port, with its alarm hub running."""
    app = create_app(database_url=db, data_key=vault.data_key, run_background=False)
    port = free_ports(1)[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    hub: stream.AlarmHub = app.state.alarm_hub
    running = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.ready.wait(), 10)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
            yield Live(f"http://127.0.0.1:{port}", hub, http)
    finally:
        running.cancel()
        server.should_exit = True
        await serving


def go(db: str, vault: Vault, work: Callable[[Live], Awaitable[None]]) -> None:
    async def main() -> None:
        async with live_app(db, vault) as live:
            await work(live)

    asyncio.run(main())


async def next_event(events: asyncio.Queue[tuple[str, Any]], within_s: float = 5.0) -> tuple[str, Any]:
    return await asyncio.wait_for(events.get(), within_s)


async def raise_alarm(db: str, home: SeededHome, code: str, kind: str, detail: dict[str, Any]) -> None:
    put_event(db, home, code, kind, detail, datetime.now(UTC))
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        await engine.process_pending(conn)


def buttons(home: SeededHome) -> list[str]:
    return [d.code for d in home.devices if d.kind == "button"]


def test_a_lost_listen_connection_ends_every_stream_and_the_next_snapshot_has_the_missed_alarm(
    db: str, vault: Vault, home: SeededHome
) -> None:
    first_button, other_button = buttons(home)[:2]

    async def work(live: Live) -> None:
        token = await live.token(home)
        events, reader = live.open(token)
        assert (await next_event(events))[0] == "snapshot"
        await raise_alarm(db, home, first_button, "button", {"action": "press"})
        name, first = await next_event(events)
        assert (name, first["kind"]) == ("alarm", "button")

        # The hub's connection is cut (database restart, network blip, fail-over) and, before it listens
        # again, the engine (on its own connection) raises a fall: that notification reaches nobody.
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN alarms' AND pid <> pg_backend_pid()"
            )
        await raise_alarm(db, home, other_button, "fall", {"source": "radar"})

        # The open stream must not carry on as if nothing happened: it ends once the hub listens again ...
        seen: list[tuple[str, Any]] = []
        while not seen or seen[-1][0] != END:
            seen.append(await next_event(events, within_s=8.0))
        assert [n for n, _ in seen] == [END] or any(n == "alarm" and d["kind"] == "fall" for n, d in seen), seen
        await reader
        assert live.hub.ready.is_set()
        # ... and the page's reconnect starts from a snapshot that has the fall.
        again, reader = live.open(token)
        name, snapshot = await next_event(again)
        assert name == "snapshot"
        assert {"button", "fall"} <= {a["kind"] for a in snapshot}, snapshot
        reader.cancel()

    go(db, vault, work)


def test_a_stream_subscribes_before_it_reads_its_snapshot(db: str, vault: Vault, home: SeededHome) -> None:
    """Otherwise a change made between the snapshot and the subscription is in neither."""

    async def work(live: Live) -> None:
        token = await live.token(home)
        async with await psycopg.AsyncConnection.connect(db) as holder:
            # Hold the snapshot's query back (it waits for this lock) and look at the hub meanwhile.
            await holder.execute("LOCK TABLE alarms IN ACCESS EXCLUSIVE MODE")
            events, reader = live.open(token)
            async with await psycopg.AsyncConnection.connect(db, autocommit=True) as look:
                for _ in range(200):
                    waiting = await (
                        await look.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND query ILIKE '%%FROM alarms%%'"
                        )
                    ).fetchone()
                    if waiting and waiting[0]:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the stream's snapshot never waited for the lock")
            subscribed = len(live.hub._subscribers)  # whom the hub delivers to
            await holder.rollback()
        assert (await next_event(events))[0] == "snapshot"
        assert subscribed == 1, "the stream read its snapshot before subscribing: a change in between is lost"
        reader.cancel()

    go(db, vault, work)


def test_a_stream_stops_once_its_session_ended_or_its_user_was_deactivated(
    db: str, vault: Vault, home: SeededHome
) -> None:
    presses = iter(buttons(home))

    async def work(live: Live) -> None:
        gone_token, kept_token = await live.token(home), await live.token(home)
        gone, gone_reader = live.open(gone_token)
        kept, kept_reader = live.open(kept_token)
        assert (await next_event(gone))[0] == "snapshot"
        assert (await next_event(kept))[0] == "snapshot"

        # One of the nurse's sessions logs out (or changes the password elsewhere): that stream ends at
        # the next change, without it; the other session's stream still gets it.
        reply = await live.http.post(
            f"{live.base}/api/v1/auth/logout", headers={"Authorization": f"Bearer {gone_token}"}
        )
        assert reply.status_code == 204, reply.text
        await asyncio.sleep(stream.SESSION_RECHECK_S + 0.5)
        await raise_alarm(db, home, next(presses), "button", {"action": "press"})
        name, alarm = await next_event(kept)
        assert name == "alarm"
        assert await next_event(gone) == (END, 200), "a change went out on a logged-out session's stream"
        await gone_reader

        # The nurse is deactivated (left the job): the remaining stream ends too, without the next change.
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("UPDATE users SET active = false WHERE username = %s", (home.staff_username,))
        await asyncio.sleep(stream.SESSION_RECHECK_S + 0.5)
        await raise_alarm(db, home, next(presses), "button", {"action": "press"})
        assert await next_event(kept) == (END, 200), "a change went out to a deactivated user"
        await kept_reader
        assert alarm["kind"] == "button"

        # The browser's reconnect is refused, so the page goes to the login page.
        again, reader = live.open(kept_token)
        assert await next_event(again) == (END, 401)
        await reader

    go(db, vault, work)
