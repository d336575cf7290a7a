"""The short-batch loop that rewrites rows beside a live platform: ``migrate.py``, ``vitals.py`` and ``positions.py``
seal what an older version stored in clear with it, ``outcomes.py`` gives old alarms their outcome codes, and
``rekey.py`` re-seals what a retiring data key sealed.

Each batch is a transaction of its own: it takes the migrations' advisory lock (so it never runs while a migrate
changes the SQL under it), selects its rows (locking them, ``FOR NO KEY UPDATE``, where the caller's SQL says so),
rewrites them and commits; then the loop moves on past the batch's last row. Nothing is held between batches, so
ingest goes on writing, the alarm engine on raising and readers on reading, each waiting at most one batch for a
row of it; a run that is killed has committed its batches and is taken up again from the start by the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

LOCK_KEY = 0x656C646572  # "elder": the migrations' advisory lock (``migrate.py`` takes it to apply them)

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]
Row = tuple[Any, ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Walked:
    """What a loop did: ``rows`` read in ``batches`` transactions, ``changed`` of them rewritten."""

    rows: int
    batches: int
    changed: int


def in_batches(
    conn: Conn,
    *,
    start: T,
    select: Callable[[T], list[Row]],
    rewrite: Callable[[list[Row]], int],
    after: Callable[[list[Row]], T],
    what: str,
) -> Walked:
    """From ``start`` on: ``select(position)`` a batch, ``rewrite(batch)`` it (the rows it changed), move to
    ``after(batch)``; until a batch is empty. ``conn`` is in autocommit mode; ``what`` names the rows in the log."""
    position, rows, batches, changed = start, 0, 0, 0
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # not while a migrate changes the SQL
            batch = select(position)
            if not batch:
                break
            changed += rewrite(batch)
        rows, batches, position = rows + len(batch), batches + 1, after(batch)
        log.debug("%s: %d rows, %d rewritten (up to %s)", what, rows, changed, position)
    return Walked(rows, batches, changed)
