"""The alarm path's background loops survive any error, and a loop that ends anyway is restarted and shown.

A read-only moment (a demoted primary during a fail-over) raises ``ReadOnlySqlTransaction``, which is not an
``OperationalError``; the engine and the sender must log it, reconnect and carry on. A task that ends on its
own (here the live-stream hub, on a malformed NOTIFY) is restarted by the app and counted in ``/healthz``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from tests.alerting.conftest import alarms_of, process, put_event, run
from tests.alerting.receivers import WebhookServer
from tests.alerting.test_delivery import _button, _channel, _family

from eldercare.platform.alarms import engine
from eldercare.platform.alarms.stream import AlarmHub
from eldercare.platform.api.app import create_app
from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import sender
from eldercare.platform.notify.settings import NotifySettings, build_channels
from eldercare.simulators.seed import SeededHome

WRITABLE = "-c default_transaction_read_only=off"


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


@contextmanager
def _read_only(db: str) -> Iterator[Callable[[], None]]:
    """New sessions of the database are read-only until the returned function (or the exit) ends it."""
    with psycopg.connect(db, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

    def writable() -> None:
        with psycopg.connect(db, autocommit=True, options=WRITABLE) as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')

    try:
        yield writable
    finally:
        writable()


async def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


def test_the_engine_carries_on_after_a_read_only_moment(db: str, vault: Vault, home: SeededHome) -> None:
    button, _ = _button(home)

    async def scenario() -> bool:
        with _read_only(db) as writable:
            task = asyncio.create_task(engine.run(db, vault=vault, poll_s=0.2))
            await asyncio.sleep(0.5)
            with psycopg.connect(db, autocommit=True, options=WRITABLE) as conn:  # ingest stays writable
                conn.execute(
                    "INSERT INTO alarm_inbox (event_time, device_id, institution_id, kind, detail)"
                    " SELECT now(), id, institution_id, 'button', '{\"action\":\"press\"}' FROM devices"
                    " WHERE code = %s",
                    (button,),
                )
            await asyncio.sleep(1.5)  # the engine fails on FOR UPDATE in a read-only transaction
            writable()
        raised = await _until(lambda: len(alarms_of(db, home)) == 1, 15)
        alive = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return raised and alive

    assert run(scenario())
    [alarm] = alarms_of(db, home)
    assert alarm["kind"] == "button" and alarm["state"] == "raised"


def test_the_sender_carries_on_after_a_read_only_moment(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/json", 1)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)

    async def scenario() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            channels = build_channels(NotifySettings(), client)
            with _read_only(db):
                task = asyncio.create_task(
                    sender.run(db, vault=vault, channels=channels, policy=sender.SenderPolicy(), poll_s=0.2)
                )
                await asyncio.sleep(1.5)  # the claim (an UPDATE) fails in a read-only transaction
            told = await _until(lambda: len(webhooks.hits) == 1, 15)
            alive = not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return told and alive

    assert run(scenario())


def test_a_background_task_that_ends_is_restarted_and_shown_in_healthz(db: str, vault: Vault, home: SeededHome) -> None:
    """A NOTIFY whose payload is not an alarm id ends the live-stream hub's loop (it only retries database
    outages); the app restarts it, /healthz counts the restart, and the board hears the next alarm."""
    button, _ = _button(home)
    nurse = Principal(
        user_id=0, username="nurse", role=Role.STAFF, institution_id=home.institution_id, region_code=None
    )

    async def scenario() -> tuple[dict[str, object], str]:
        app = create_app(database_url=db, data_key=vault.data_key, ticker_period_s=60)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                hub: AlarmHub = app.state.alarm_hub
                await asyncio.wait_for(hub.ready.wait(), 10)
                assert (await client.get("/healthz")).json()["status"] == "ok"
                async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
                    await conn.execute("NOTIFY alarms, 'not-an-alarm-id'")
                health: dict[str, object] = {}
                for _ in range(100):
                    reply = await client.get("/healthz")
                    health = reply.json()
                    restarts = health.get("restarts")
                    if isinstance(restarts, dict) and restarts.get("alarm-stream") and reply.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # the restarted hub is listening again
                board = hub.subscribe(nurse)  # as a board does when its stream ends and it reconnects
                put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
                alarm = await asyncio.wait_for(board.queue.get(), 15)
                assert alarm is not None
                return health, alarm.kind

    health, kind = run(scenario())
    assert (
        health["status"] == "ok"
        and health["down"] == []
        and health["restarts"]
        == {
            "alarm-stream": 1,
            "alarm-engine": 0,
            "alarm-ticker": 0,
            "notification-sender": 0,
        }
    )
    assert kind == "button"
