"""Fixtures of the map tests: a database of their own (so the public map shows exactly the test's homes),
the world of tests/map/world.py in it, and the real app on it through ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from tests.map.world import World, build
from tests.registry.support import Database, create_database, data_key, drop_database

from eldercare.platform.api.app import create_app
from eldercare.platform.crypto import Vault
from eldercare.platform.map.settings import MapSettings
from eldercare.platform.map.state import MapState
from eldercare.platform.stack.model import StackInfo

Work = Callable[[httpx.AsyncClient], Awaitable[Any]]


@pytest.fixture(scope="session")
def map_db(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "ec_map")
    yield db
    drop_database(stack, db)


@pytest.fixture(scope="session")
def map_world(stack: StackInfo, map_db: Database) -> World:
    async def go() -> World:
        async with await psycopg.AsyncConnection.connect(map_db.url, autocommit=True) as conn:
            return await build(conn, Vault(data_key(stack)))

    return asyncio.run(go())


def settings(**overrides: Any) -> MapSettings:
    """Map settings for a test: no tiles, no caching and a generous rate unless the test says otherwise."""
    values: dict[str, Any] = {"map_cache_ttl_s": 0.0, "map_rate_per_s": 1000.0, "map_burst": 1000.0}
    values.update(overrides)
    return MapSettings(**values)


class Api:
    """Runs ``work`` with an HTTP client on a fresh app (lifespan on, background tasks off)."""

    def __init__(self, stack: StackInfo, db: Database) -> None:
        self.stack = stack
        self.db = db

    def __call__(
        self, work: Work, *, map_settings: MapSettings | None = None, client: tuple[str, int] = ("127.0.0.1", 5000)
    ) -> Any:
        async def go() -> Any:
            app = create_app(database_url=self.db.url, data_key=data_key(self.stack), run_background=False)
            app.state.map = MapState(map_settings or settings())
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app, client=client)
                async with httpx.AsyncClient(transport=transport, base_url="http://map.test") as http:
                    return await work(http)

        return asyncio.run(go())


@pytest.fixture
def api(stack: StackInfo, map_db: Database, map_world: World) -> Api:
    return Api(stack, map_db)


def get(api: Api, path: str, **params: Any) -> httpx.Response:
    async def work(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get(path, params=params)

    reply: httpx.Response = api(work)
    return reply
