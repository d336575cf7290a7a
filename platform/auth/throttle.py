"""Login throttling and fixed-window rate limits, kept in the database so every API process shares them.

Logins: after ``FREE_FAILURES`` failed attempts for one (username, client address) each further failure
locks the pair for ``BASE_LOCK`` doubled per failure, up to ``MAX_LOCK``; a success clears the pair. A
locked pair is answered 429 with ``Retry-After`` before the password is even checked, so guessing costs
time whatever the guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from eldercare.platform.api.errors import Problem
from eldercare.platform.auth.service import AsyncConn

FREE_FAILURES = 5
BASE_LOCK = timedelta(seconds=2)
MAX_LOCK = timedelta(minutes=15)


@dataclass(eq=False)
class TooMany(Problem):
    """429, with the seconds after which to try again."""

    retry_after: int = 1


def too_many(seconds: float, what: str) -> TooMany:
    wait = max(1, math.ceil(seconds))
    return TooMany(429, f"too many {what}; try again in {wait} s", (), wait)


async def check_login(conn: AsyncConn, *, username: str, client: str) -> None:
    row = await (
        await conn.execute(
            "SELECT extract(epoch FROM locked_until - now()) FROM login_failures"
            " WHERE username = %s AND client = %s AND locked_until > now()",
            (username.lower(), client),
        )
    ).fetchone()
    if row is not None:
        raise too_many(float(row[0]), "failed logins")


async def login_failed(conn: AsyncConn, *, username: str, client: str) -> None:
    await conn.execute(
        "INSERT INTO login_failures AS f (username, client, failures) VALUES (%(u)s, %(c)s, 1)"
        " ON CONFLICT (username, client) DO UPDATE SET failures = f.failures + 1, last_failed = now(),"
        " locked_until = CASE WHEN f.failures + 1 > %(free)s THEN now() + least(%(max)s,"
        " %(base)s * power(2, least(f.failures + 1 - %(free)s - 1, 20))) END",
        {"u": username.lower(), "c": client, "free": FREE_FAILURES, "max": MAX_LOCK, "base": BASE_LOCK},
    )


async def login_succeeded(conn: AsyncConn, *, username: str, client: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE username = %s AND client = %s", (username.lower(), client))


async def rate_limit(conn: AsyncConn, *, bucket: str, limit: int, window: timedelta) -> None:
    """Count a request in ``bucket``'s current window; 429 once more than ``limit`` came in it."""
    seconds = int(window.total_seconds())
    row = await (
        await conn.execute(
            "INSERT INTO rate_limits AS r (bucket, window_start, hits)"
            " VALUES (%(b)s, to_timestamp(floor(extract(epoch FROM now()) / %(s)s) * %(s)s), 1)"
            " ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + 1"
            " RETURNING hits, extract(epoch FROM window_start + %(w)s - now())",
            {"b": bucket, "s": seconds, "w": window},
        )
    ).fetchone()
    assert row is not None
    if row[0] > limit:
        raise too_many(float(row[1]), "requests")
    if row[0] == 1:  # first hit of a window: drop windows that have passed
        await conn.execute("DELETE FROM rate_limits WHERE window_start < now() - %s * 2", (window,))
