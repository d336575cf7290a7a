"""The platform serves the front-end libraries itself (installed from the npm registry by make setup)."""

from __future__ import annotations

import asyncio

import httpx

from eldercare.platform.api.app import create_app
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo


def test_vendor_libraries_are_served_locally(stack: StackInfo, db: str, vault: Vault) -> None:
    async def go() -> list[httpx.Response]:
        app = create_app(database_url=db, data_key=vault.data_key, run_background=False)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            return [
                await client.get(p)
                for p in (
                    "/static/vendor/leaflet/leaflet.js",
                    "/static/vendor/uplot/uPlot.iife.min.js",
                    "/static/vendor/leaflet/../../package.json",
                )
            ]

    leaflet, uplot, escape = asyncio.run(go())
    assert leaflet.status_code == 200 and b"Leaflet" in leaflet.content[:2000]
    assert uplot.status_code == 200 and len(uplot.content) > 10_000
    assert escape.status_code == 404
