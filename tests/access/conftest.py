"""Fixtures of the access tests (see support.py)."""

from tests.registry.support import api, world, world_db

__all__ = ["api", "world", "world_db"]
