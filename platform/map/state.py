"""The map's per-application state: settings, response cache and rate limiter."""

from __future__ import annotations

from fastapi import Request

from eldercare.platform.map.cache import ResponseCache
from eldercare.platform.map.ratelimit import TokenBuckets
from eldercare.platform.map.settings import MapSettings


class MapState:
    def __init__(self, settings: MapSettings) -> None:
        self.settings = settings
        self.cache = ResponseCache(ttl_s=settings.map_cache_ttl_s, max_bytes=settings.map_cache_max_bytes)
        self.limiter = TokenBuckets(rate_per_s=settings.map_rate_per_s, burst=settings.map_burst)


def state_of(request: Request) -> MapState:
    """The application's map state, made from the environment's settings on first use (a test may set
    ``app.state.map`` itself before the first request)."""
    found: MapState | None = getattr(request.app.state, "map", None)
    if found is None:
        found = MapState(MapSettings())
        request.app.state.map = found
    return found
