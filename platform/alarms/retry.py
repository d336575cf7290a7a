"""The pause of the alarm path's background loops (engine, ticker, notification sender) between attempts.

Every loop retries whatever goes wrong: the database going away, a read-only moment during a fail-over, or a
bug met by one row. The pause grows with failures in a row but stays short, because while a loop waits no
alarm is raised or told: 0.5 s at first, at most 5 s, with jitter so that restarted processes do not reconnect
in step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

import psycopg

log = logging.getLogger(__name__)
RETRY_MAX_S: Final = 5.0


def retry_delay(failures: int) -> float:
    """Seconds to wait before the ``failures``-th attempt in a row: 0.5, 1, 2, 4, 5 ..., less up to half."""
    return min(RETRY_MAX_S, 0.5 * 2.0 ** max(failures - 1, 0)) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)


class Retry:
    """``ok()`` after a pass that worked; ``await after(exc)`` in the loop's ``except Exception``."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def ok(self) -> None:
        self.failures = 0

    async def after(self, exc: Exception) -> None:
        self.failures += 1
        delay = retry_delay(self.failures)
        if isinstance(exc, psycopg.OperationalError):
            log.warning("%s: database unavailable (%s); retrying in %.1f s", self.what, exc, delay)
        else:
            log.error("%s: unexpected error; reconnecting in %.1f s", self.what, delay, exc_info=exc)
        await asyncio.sleep(delay)
