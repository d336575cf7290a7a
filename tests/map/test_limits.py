"""The token buckets and the response cache on a controlled clock (pure logic; the HTTP behaviour is in
test_api.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from eldercare.platform.auth.throttle import TooMany
from eldercare.platform.map.cache import Body, ResponseCache
from eldercare.platform.map.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_its_rate_per_client() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3.0, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a", cost=10) == pytest.approx(1.5)  # a cost above the burst waits for a full bucket
    with pytest.raises(TooMany) as caught:
        buckets.check("a", cost=10)
    assert caught.value.retry_after == 2 and caught.value.status == 429


def test_idle_clients_are_forgotten_when_the_table_is_full() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=2.0, max_clients=3, clock=clock)
    for name in "abc":
        buckets.take(name)
    clock.now += 10  # all refilled
    buckets.take("d")
    assert set(buckets._buckets) == {"d"}


def test_cache_single_flight_ttl_and_byte_budget() -> None:
    clock = Clock()
    cache = ResponseCache(ttl_s=30, max_bytes=400, clock=clock)
    calls: list[str] = []

    def maker(key: str, size: int = 10) -> Callable[[], Awaitable[Body]]:
        async def make() -> Body:
            calls.append(key)
            await asyncio.sleep(0.01)
            return Body(key.encode() * size, "text/plain")

        return make

    async def go() -> None:
        first, second = await asyncio.gather(cache.get("k", maker("k")), cache.get("k", maker("k")))
        assert first is second and calls == ["k"]
        clock.now += 29
        await cache.get("k", maker("k"))
        assert calls == ["k"]
        clock.now += 1
        await cache.get("k", maker("k"))
        assert calls == ["k", "k"]
        await cache.get("big", maker("big", 50))  # 150 bytes > 400 // 4: not kept
        await cache.get("big", maker("big", 50))
        assert calls.count("big") == 2
        for key in "abcdefghij":  # 10 x 90 bytes > 400: the oldest go
            await cache.get(key, maker(key, 90))
        assert sum(len(e.body.content) for e in cache._entries.values()) <= 400
        assert "j" in cache._entries and "a" not in cache._entries

    asyncio.run(go())


def test_a_failed_computation_is_not_cached_and_reaches_every_waiter() -> None:
    cache = ResponseCache(ttl_s=30, max_bytes=1000)

    async def boom() -> Body:
        await asyncio.sleep(0.01)
        raise ValueError("no")

    async def go() -> list[object]:
        return list(await asyncio.gather(cache.get("x", boom), cache.get("x", boom), return_exceptions=True))

    results = asyncio.run(go())
    assert all(isinstance(r, ValueError) for r in results)
    assert cache._entries == {}
