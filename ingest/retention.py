"""Retention: raw telemetry chunks older than the configured period are dropped (``drop_chunks`` works on
the Apache edition), device events are kept longer, frame keys are pruned after the dedupe window.

The roll-ups are not touched: they are what remains of the dropped raw data. ``rollups.run`` never
recomputes an hour older than the raw retention for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from eldercare.ingest.registry import Conn

RAW_TABLES = ("bed_readings", "device_readings", "locations", "accel_chunks")
_DELETE_BATCH = 20_000


@dataclass(slots=True)
class RetentionResult:
    chunks_dropped: dict[str, int] = field(default_factory=dict)
    frames_deleted: int = 0
    gaps_deleted: int = 0


def run(conn: Conn, *, raw_retention_s: float, events_retention_s: float, frames_retention_s: float) -> RetentionResult:
    result = RetentionResult()
    plan = [(table, raw_retention_s) for table in RAW_TABLES] + [("device_events", events_retention_s)]
    for table, keep_s in plan:
        rows = conn.execute(
            sql.SQL("SELECT drop_chunks({}, older_than => now() - make_interval(secs => %s))").format(
                sql.Literal(table)
            ),
            (keep_s,),
        ).fetchall()
        result.chunks_dropped[table] = len(rows)
    while True:
        cur = conn.execute(
            "DELETE FROM uplink_frames WHERE ctid = ANY(ARRAY(SELECT ctid FROM uplink_frames"
            " WHERE received_at < now() - make_interval(secs => %s) LIMIT %s))",
            (frames_retention_s, _DELETE_BATCH),
        )
        result.frames_deleted += cur.rowcount
        if cur.rowcount < _DELETE_BATCH:
            break
    cur = conn.execute(
        "DELETE FROM uplink_gaps WHERE filled_at < now() - make_interval(secs => %s)", (frames_retention_s,)
    )
    result.gaps_deleted = cur.rowcount
    return result
