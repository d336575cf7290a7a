"""The maintenance jobs' advisory locks: one per job, held for a transaction, so that a job runs in one place at
a time whoever starts it (the schedule of any ingest process, ``eldercare ingest maintain``, a rebuild)."""

from __future__ import annotations

from typing import Final

from eldercare.ingest.registry import Conn

LOCK_CLASS: Final = 0x6D6E74  # "mnt"
JOBS: Final = ("gaps", "rollups", "retention")
_LOCK_IDS: Final = {name: index + 1 for index, name in enumerate(JOBS)}


def hold(conn: Conn, job: str, *, wait: bool) -> bool:
    """Take ``job``'s lock until the end of the current transaction; without ``wait``, False if it is taken."""
    lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    row = conn.execute(f"SELECT {lock}(%s, %s)::text", (LOCK_CLASS, _LOCK_IDS[job])).fetchone()
    return wait or (row is not None and row[0] == "true")
