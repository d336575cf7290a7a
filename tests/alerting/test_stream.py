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
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import create_user
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


async def raise_alarm(db: str, vault: Vault, home: SeededHome, code: str, kind: str, detail: dict[str, Any]) -> None:
    put_event(db, home, code, kind, detail, datetime.now(UTC))
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        await engine.process_pending(conn, vault=vault)


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
        await raise_alarm(db, vault, home, first_button, "button", {"action": "press"})
        name, first = await next_event(events)
        assert (name, first["kind"]) == ("alarm", "button")

        # The hub's connection is cut (database restart, network blip, fail-over) and, before it listens
        # again, the engine (on its own connection) raises a fall: that notification reaches nobody.
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN alarms' AND pid <> pg_backend_pid()"
            )
        await raise_alarm(db, vault, home, other_button, "fall", {"source": "radar"})

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
        await raise_alarm(db, vault, home, next(presses), "button", {"action": "press"})
        name, alarm = await next_event(kept)
        assert name == "alarm"
        assert await next_event(gone) == (END, 200), "a change went out on a logged-out session's stream"
        await gone_reader

        # The nurse is deactivated (left the job): the remaining stream ends too, without the next change.
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("UPDATE users SET active = false WHERE username = %s", (home.staff_username,))
        await asyncio.sleep(stream.SESSION_RECHECK_S + 0.5)
        await raise_alarm(db, vault, home, next(presses), "button", {"action": "press"})
        assert await next_event(kept) == (END, 200), "a change went out to a deactivated user"
        await kept_reader
        assert alarm["kind"] == "button"

        # The browser's reconnect is refused, so the page goes to the login page.
        again, reader = live.open(kept_token)
        assert await next_event(again) == (END, 401)
        await reader

    go(db, vault, work)


def _read_health(db: str, username: str, after_seq: int) -> list[dict[str, Any]]:
    """The ``read_health`` entries of a user after ``after_seq``: their detail, oldest first."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT object_type, detail FROM audit_log WHERE seq > %s AND actor = %s AND action = 'read_health'"
            " ORDER BY seq",
            (after_seq, username),
        ).fetchall()
    assert all(kind == "alarm" for kind, _ in rows), rows
    return [detail for _, detail in rows]


def _last_seq(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


def _resident_of(db: str, person_code: str | None) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT id FROM residents WHERE person_code = %s", (person_code,)).fetchone()
    assert row is not None
    return int(row[0])


def _family_of(db: str, username: str, person_code: str | None) -> None:
    """A family user linked to the resident ``person_code``."""

    async def make() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await create_user(conn, username=username, password="password-123", role=Role.FAMILY)
            await conn.execute(
                "INSERT INTO family_links (user_id, resident_id) SELECT u.id, r.id FROM users u, residents r"
                " WHERE u.username = %s AND r.person_code = %s",
                (username, person_code),
            )

    asyncio.run(make())


def test_a_stream_audits_its_snapshot_and_each_alarm_it_shows_first(db: str, vault: Vault, home: SeededHome) -> None:
    """Alarms are health data: a stream is audited as ``GET /alarms`` is. Its snapshot is one read_health entry
    naming the alarms and residents in it (none when it is empty); a pushed alarm the stream has not shown yet
    is one entry; a change of an alarm it has shown (acknowledged, pressed again) writes none. Each entry names
    only what that user was shown: a family user's stream logs its own resident, never the others'."""
    presses = [d for d in home.devices if d.kind == "button"]
    first, second, elsewhere = presses[0], presses[1], presses[2]
    family = f"famstream-{home.institution_code[-6:].lower()}"
    _family_of(db, family, first.person_code)

    async def work(live: Live) -> None:
        token = await live.token(home)
        headers = {"Authorization": f"Bearer {token}"}
        start = _last_seq(db)
        events, reader = live.open(token)
        assert await next_event(events) == ("snapshot", [])
        assert _read_health(db, home.staff_username, start) == [], "an empty snapshot showed nothing"

        await raise_alarm(db, vault, home, first.code, "button", {"action": "press"})
        name, alarm = await next_event(events)
        assert name == "alarm"
        one = alarm["id"]
        assert _read_health(db, home.staff_username, start) == [
            {
                "as": "stream",
                "fields": ["alarms"],
                "alarms": [one],
                "residents": [_resident_of(db, first.person_code)],
                "kinds": ["button"],
            }
        ]
        # the same alarm again, acknowledged: shown already by the stream, so not logged by it again (the
        # acknowledgement's own answer is a read of its own, logged as such)
        acknowledged = await live.http.post(f"{live.base}/api/v1/alarms/{one}/acknowledge", headers=headers, json={})
        assert acknowledged.status_code == 200, acknowledged.text
        name, alarm = await next_event(events)
        assert (name, alarm["id"], alarm["state"]) == ("alarm", one, "acknowledged")
        assert [e["as"] for e in _read_health(db, home.staff_username, start)] == ["stream", "acknowledge"]
        reader.cancel()

        # a new stream (the page reloaded): its snapshot is logged, then only the alarms it shows first
        start = _last_seq(db)
        events, reader = live.open(token)
        name, snapshot = await next_event(events)
        assert (name, [a["id"] for a in snapshot]) == ("snapshot", [one])
        await raise_alarm(db, vault, home, second.code, "fall", {"source": "radar"})
        name, alarm = await next_event(events)
        assert name == "alarm"
        two = alarm["id"]
        logged = _read_health(db, home.staff_username, start)
        assert [(e["as"], e["alarms"]) for e in logged] == [("stream_snapshot", [one]), ("stream", [two])]
        assert logged[0]["residents"] == [_resident_of(db, first.person_code)]
        reader.cancel()

        # a family user: its snapshot and pushes name its own resident only
        reply = await live.http.post(
            f"{live.base}/api/v1/auth/login", json={"username": family, "password": "password-123"}
        )
        assert reply.status_code == 200, reply.text
        start = _last_seq(db)
        events, reader = live.open(reply.json()["token"])
        name, snapshot = await next_event(events)
        assert (name, [a["id"] for a in snapshot]) == ("snapshot", [one])
        await raise_alarm(db, vault, home, elsewhere.code, "button", {"action": "press"})  # another resident's
        await raise_alarm(db, vault, home, first.code, "fall", {"source": "radar"})  # the family's own resident
        name, alarm = await next_event(events)
        assert (name, alarm["kind"]) == ("alarm", "fall")
        own = _resident_of(db, first.person_code)
        logged = _read_health(db, family, start)
        assert [(e["as"], e["alarms"], e["residents"]) for e in logged] == [
            ("stream_snapshot", [one], [own]),
            ("stream", [alarm["id"]], [own]),
        ]
        reader.cancel()

    go(db, vault, work)


def test_open_streams_hold_no_database_connection(db: str, vault: Vault, home: SeededHome) -> None:
    """A stream does not end, so one holding a pooled connection for its life would let a few more open pages
    than the pool has connections stop the whole API; each stream gives its connection back after the snapshot."""

    async def work(live: Live) -> None:
        token = await live.token(home)
        readers = []
        for _ in range(live.hub._pool.max_size + 5):
            events, reader = live.open(token)
            assert (await next_event(events))[0] == "snapshot"
            readers.append(reader)
        reply = await asyncio.wait_for(
            live.http.get(f"{live.base}/api/v1/alarms", headers={"Authorization": f"Bearer {token}"}), 5.0
        )
        assert reply.status_code == 200, reply.text
        for reader in readers:
            reader.cancel()

    go(db, vault, work)
