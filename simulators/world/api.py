"""A small client of the platform's API for the simulators: log in, call, and turn errors into ApiError."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from eldercare.simulators.errors import ApiError, SimError

Json = Any


class Api:
    """One logged-in user over a shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, base: str, token: str = "") -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.token = token

    @classmethod
    async def login(cls, http: httpx.AsyncClient, base: str, username: str, password: str) -> Api:
        api = cls(http, base)
        reply = await api.call("POST", "/api/v1/auth/login", json={"username": username, "password": password})
        api.token = str(reply["token"])
        return api

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Json = None,
        params: Mapping[str, str | int] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        expect: tuple[int, ...] = (200, 201, 204),
    ) -> Json:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        for attempt in range(5):
            try:
                reply = await self.http.request(
                    method, self.base + path, json=json, params=params, files=files, headers=headers
                )
            except httpx.TransportError as exc:
                # A request that may have reached the server is repeated only if repeating is harmless.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt == 4 or not (unsent or method == "GET"):
                    raise SimError(f"{method} {path}: the API at {self.base} does not answer ({exc})") from exc
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if reply.status_code == 429 and attempt < 4:
                await asyncio.sleep(float(reply.headers.get("Retry-After", "1")))
                continue
            break
        if reply.status_code not in expect:
            raise _error(method, path, reply)
        if reply.status_code == 204 or not reply.content:
            return None
        return reply.json()

    async def pages(self, path: str, *, params: Mapping[str, str | int] | None = None, size: int = 200) -> list[Json]:
        """Every row of a list endpoint that takes ``limit`` and ``offset``."""
        out: list[Json] = []
        while True:
            page = await self.call("GET", path, params={**(params or {}), "limit": size, "offset": len(out)})
            assert isinstance(page, list)
            out.extend(page)
            if len(page) < size:
                return out


def _error(method: str, path: str, reply: httpx.Response) -> ApiError:
    try:
        body = reply.json()
    except ValueError:
        body = {"detail": reply.text[:200]}
    fields = [(str(e.get("field", "")), str(e.get("reason", ""))) for e in body.get("errors", []) or []]
    return ApiError(
        method=method, path=path, status=reply.status_code, detail=str(body.get("detail", "")), fields=fields
    )
