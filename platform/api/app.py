"""The FastAPI application: lifespan owns the connection pool and the alarm engine task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

import eldercare
from eldercare.platform.alarms import engine
from eldercare.platform.alarms.router import router as alarms_router
from eldercare.platform.api import errors
from eldercare.platform.auth.router import router as auth_router

log = logging.getLogger(__name__)


def create_app(*, database_url: str, run_engine: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            database_url, min_size=2, max_size=20, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        async with asyncio.TaskGroup() as tasks:
            engine_task = tasks.create_task(engine.run(database_url), name="alarm-engine") if run_engine else None
            try:
                yield
            finally:
                if engine_task is not None:
                    engine_task.cancel()
                    with suppress(asyncio.CancelledError):
                        await engine_task
                await pool.close()

    app = FastAPI(
        title="eldercare platform",
        version=eldercare.__version__,
        description="Smart elderly-care platform API: alarms, registry, supervision.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(auth_router)
    app.include_router(alarms_router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
