"""The FastAPI application: the lifespan owns the pool and the background tasks of the alarm path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request, Response
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

import eldercare
from eldercare.platform.alarms import engine, ticker
from eldercare.platform.alarms.retry import retry_delay
from eldercare.platform.alarms.router import router as alarms_router
from eldercare.platform.alarms.rules_router import router as rules_router
from eldercare.platform.alarms.stream import AlarmHub
from eldercare.platform.alarms.stream import router as stream_router
from eldercare.platform.api import errors
from eldercare.platform.api.limits import BodyLimit
from eldercare.platform.auth.router import router as auth_router
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.db.keycheck import checked_vault, tagged
from eldercare.platform.map.router import router as map_router
from eldercare.platform.notify import sender
from eldercare.platform.notify.router import router as notify_router
from eldercare.platform.notify.settings import NotifySettings, build_channels
from eldercare.platform.registry.router import router as registry_router
from eldercare.platform.subsidy.router import router as subsidy_router
from eldercare.platform.supervision.router import router as supervision_router
from eldercare.platform.visits.router import router as visits_router
from eldercare.platform.web import static
from eldercare.platform.web.router import router as web_router

log = logging.getLogger(__name__)


class Health(BaseModel):
    status: Literal["ok", "down"]
    down: list[str] = Field(default_factory=list, description="background tasks not running right now")
    restarts: dict[str, int] = Field(default_factory=dict, description="times each task ended and was restarted")


class Supervisor:
    """Keeps the alarm path's background loops running.

    Each loop retries its own errors, so a task that ends on its own is a bug: it is logged with its
    exception, reported by ``/healthz`` (503) until it runs again, and restarted after a growing pause.
    """

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._stopping = False

    def start(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._factories[name] = factory
        self._restarts.setdefault(name, 0)
        self._spawn(name)

    def _spawn(self, name: str) -> None:
        self._timers.pop(name, None)
        if self._stopping:
            return
        task = asyncio.create_task(self._factories[name](), name=name)
        task.add_done_callback(lambda done: self._ended(name, done))
        self._tasks[name] = task

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if self._stopping:
            return
        self._restarts[name] += 1
        delay = retry_delay(self._restarts[name])
        exc = None if task.cancelled() else task.exception()
        log.error(
            "background task %s ended unexpectedly (%s); restarting in %.1f s",
            name,
            "cancelled" if task.cancelled() else repr(exc),
            delay,
            exc_info=exc,
        )
        self._timers[name] = asyncio.get_running_loop().call_later(delay, self._spawn, name)

    def down(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if task.done())

    def restarts(self) -> dict[str, int]:
        return dict(self._restarts)

    async def stop(self) -> None:
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


async def _open(
    pool: AsyncConnectionPool[AsyncConn], database_url: str, data_key: bytes, previous_key: bytes | None
) -> Vault:
    """Open the pool, then check the data key before anything else (a platform on another key than the database's
    would seal what nobody could open): the key's vault. The pool is closed again if the key is refused."""
    await pool.open(wait=True, timeout=30)
    try:
        return await asyncio.to_thread(checked_vault, database_url, data_key, previous=previous_key)
    except BaseException:
        await pool.close()
        raise


def create_app(
    *,
    database_url: str,
    data_key: bytes,
    previous_key: bytes | None = None,
    notify: NotifySettings | None = None,
    run_background: bool = True,
    ticker_period_s: float = 5.0,
    sender_policy: sender.SenderPolicy | None = None,
) -> FastAPI:
    # Every connection says which data key this process holds, for `eldercare db rekey` to find one left on an old key.
    database_url = tagged(database_url, Vault(data_key), "eldercare-platform")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            database_url, min_size=2, max_size=20, open=False, kwargs={"autocommit": True}
        )
        vault = await _open(pool, database_url, data_key, previous_key)
        app.state.pool = pool
        app.state.vault = vault
        hub = AlarmHub(database_url=database_url, pool=pool, vault=vault)
        app.state.alarm_hub = hub
        settings = notify or NotifySettings()
        policy = sender_policy or sender.SenderPolicy()
        app.state.sender_policy = policy  # the undelivered list counts attempts as the sender does
        async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as http:
            channels = build_channels(settings, http)
            app.state.channel_kinds = frozenset(channels)
            supervisor = Supervisor()
            app.state.supervisor = supervisor
            if run_background:
                supervisor.start("alarm-stream", hub.run)
                supervisor.start("alarm-engine", lambda: engine.run(database_url, vault=vault))
                supervisor.start(
                    "alarm-ticker", lambda: ticker.run(database_url, vault=vault, period_s=ticker_period_s)
                )
                supervisor.start(
                    "notification-sender",
                    lambda: sender.run(
                        database_url,
                        vault=vault,
                        channels=channels,
                        policy=policy,
                    ),
                )
            try:
                yield
            finally:
                await supervisor.stop()
                await pool.close()

    app = FastAPI(
        title="eldercare platform",
        version=eldercare.__version__,
        description="Smart elderly-care platform API: alarms, registry, supervision.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(BodyLimit)  # 413 for any body over limits.MAX_BODY, before routes and logins
    app.include_router(auth_router)
    app.include_router(stream_router)  # before the alarms router: /stream is not an alarm id
    app.include_router(alarms_router)
    app.include_router(notify_router)
    app.include_router(rules_router)
    static.mount(app)
    app.include_router(registry_router)
    app.include_router(map_router)
    app.include_router(supervision_router)
    app.include_router(visits_router)
    app.include_router(subsidy_router)
    app.include_router(web_router)

    @app.get("/healthz", tags=["ops"], responses={503: {"description": "a background task of the alarm path is down"}})
    async def healthz(request: Request, response: Response) -> Health:
        supervisor: Supervisor | None = getattr(request.app.state, "supervisor", None)
        down = supervisor.down() if supervisor else []
        restarts = supervisor.restarts() if supervisor else {}
        if down:
            response.status_code = 503
        return Health(status="down" if down else "ok", down=down, restarts=restarts)

    return app
