"""Per-client token buckets for the public map endpoints (in-process).

A client (its address, as uvicorn reports it: behind a reverse proxy run uvicorn with
``--proxy-headers --forwarded-allow-ips`` so it is the real client) has a bucket of ``burst`` tokens
refilled at ``rate_per_s``; a request takes ``cost`` tokens (an export costs more than a page of the map),
and a request that finds too few is answered 429 with ``Retry-After``.

The buckets live in one process. Several API processes would each allow the full rate; to share one
limit across them, the same interface can count in PostgreSQL (the fixed-window ``rate_limits`` table of
``platform/auth/throttle.py`` that the login and public application endpoints use: one upsert per
request) or, cheaper, the reverse proxy limits per address (nginx ``limit_req``) in front of all of them.
See docs/map.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from eldercare.platform.auth.throttle import TooMany, too_many


class TokenBuckets:
    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: float,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket has refilled: they are indistinguishable from new ones."""
        full_after = self.burst / self.rate_per_s
        self._buckets = {c: (t, at) for c, (t, at) in self._buckets.items() if now - at < full_after}

    def take(self, client: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 when allowed, else the seconds until enough have refilled."""
        cost = min(cost, self.burst)
        now = self._clock()
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens >= cost:
            if client not in self._buckets and len(self._buckets) >= self.max_clients:
                self._prune(now)
            self._buckets[client] = (tokens - cost, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (cost - tokens) / self.rate_per_s

    def check(self, client: str, cost: float = 1.0) -> None:
        """:meth:`take`, raising 429 (with the whole seconds to wait) when the bucket is short."""
        wait = self.take(client, cost)
        if wait > 0:
            raise too_many(math.ceil(wait), "map requests from this address")


__all__ = ["TokenBuckets", "TooMany"]
