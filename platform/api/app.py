"""The FastAPI application: the lifespan owns the pool and the background tasks of the alarm path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

import eldercare
from eldercare.platform.alarms import engine, ticker
from eldercare.platform.alarms.router import router as alarms_router
from eldercare.platform.alarms.rules_router import router as rules_router
from eldercare.platform.alarms.stream import AlarmHub
from eldercare.platform.alarms.stream import router as stream_router
from eldercare.platform.api import errors
from eldercare.platform.api.limits import BodyLimit
from eldercare.platform.auth.router import router as auth_router
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.map.router import router as map_router
from eldercare.platform.notify import sender
from eldercare.platform.notify.router import router as notify_router
from eldercare.platform.notify.settings import NotifySettings, build_channels
from eldercare.platform.registry.router import router as registry_router
from eldercare.platform.subsidy.router import router as subsidy_router
from eldercare.platform.supervision.router import router as supervision_router
from eldercare.platform.web import static
from eldercare.platform.web.router import router as web_router

log = logging.getLogger(__name__)


def create_app(
    *,
    database_url: str,
    data_key: bytes,
    notify: NotifySettings | None = None,
    run_background: bool = True,
    ticker_period_s: float = 5.0,
    sender_policy: sender.SenderPolicy | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            database_url, min_size=2, max_size=20, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        app.state.vault = Vault(data_key)
        hub = AlarmHub(database_url=database_url, pool=pool)
        app.state.alarm_hub = hub
        settings = notify or NotifySettings()
        async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as http:
            channels = build_channels(settings, http)
            app.state.channel_kinds = frozenset(channels)
            tasks: list[asyncio.Task[None]] = []
            if run_background:
                tasks = [
                    asyncio.create_task(hub.run(), name="alarm-stream"),
                    asyncio.create_task(engine.run(database_url), name="alarm-engine"),
                    asyncio.create_task(ticker.run(database_url, period_s=ticker_period_s), name="alarm-ticker"),
                    asyncio.create_task(
                        sender.run(
                            database_url,
                            vault=app.state.vault,
                            channels=channels,
                            policy=sender_policy or sender.SenderPolicy(),
                        ),
                        name="notification-sender",
                    ),
                ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
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
    app.include_router(subsidy_router)
    app.include_router(web_router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
