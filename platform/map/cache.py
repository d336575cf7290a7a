"""A small in-process cache of public responses, with ETags, so a popular view is computed once per TTL.

Entries live ``ttl_s`` seconds (the staleness the docs promise for "free beds right now") and the whole
cache holds at most ``max_bytes`` of bodies, least recently used dropped first. Concurrent requests for
the same key wait for the one computation in flight instead of each running the query (single flight).
Each process has its own cache; HTTP caches in front (``Cache-Control: public, max-age``) share the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Response


@dataclass(frozen=True, slots=True)
class Body:
    """What a computation produces: the bytes and their media type, plus headers such as a file name."""

    content: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Cached:
    body: Body
    etag: str
    stored_at: float


def etag_of(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:32] + '"'


class ResponseCache:
    def __init__(self, *, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0 or max_bytes < 0:
            raise ValueError("ttl_s and max_bytes must not be negative")
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Future[Cached]] = {}
        self.hits = 0
        self.misses = 0

    def _fresh(self, key: str) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry.stored_at >= self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body.content)

    def _store(self, key: str, entry: Cached) -> None:
        size = len(entry.body.content)
        if self.ttl_s == 0 or size > self.max_bytes // 4:  # a huge body would evict everything else
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def get(self, key: str, make: Callable[[], Awaitable[Body]]) -> Cached:
        """The fresh entry for ``key``, computing it with ``make`` at most once at a time."""
        entry = self._fresh(key)
        if entry is not None:
            self.hits += 1
            return entry
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[Cached] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            body = await make()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # the waiters (if any) get it too; mark it retrieved
            raise
        finally:
            del self._inflight[key]
        entry = Cached(body=body, etag=etag_of(body.content), stored_at=self._clock())
        self._store(key, entry)
        future.set_result(entry)
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def respond(request: Request, entry: Cached, *, max_age_s: int) -> Response:
    """200 with the body, or 304 when the client already has this version (If-None-Match)."""
    headers = {"ETag": entry.etag, "Cache-Control": f"public, max-age={max_age_s}", **dict(entry.body.headers)}
    wanted = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    if entry.etag in tags or "*" in tags:
        return Response(status_code=304, headers={"ETag": entry.etag, "Cache-Control": headers["Cache-Control"]})
    return Response(content=entry.body.content, media_type=entry.body.media_type, headers=headers)
