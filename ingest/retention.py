"""Retention: raw telemetry chunks older than the configured period are dropped (``drop_chunks`` works on
the Apache edition), device events are kept longer, frame keys are pruned after the dedupe window.

The roll-ups are not touched: they are what remains of the dropped raw data. ``rollups.run`` never
recomputes an hour older than the raw retention for that reason, and every dropped chunk's range is recorded
in ``raw_dropped`` (TimescaleDB keeps no record of it) so that ``rollups.rebuild`` refuses those hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eldercare.ingest.registry import Conn

RAW_TABLES = ("bed_readings", "device_readings", "locations", "accel_chunks")
_DELETE_BATCH = 20_000
# The chunks drop_chunks is about to drop (show_chunks takes the same argument), by their time ranges. In one
# transaction with the drop, now() is the same in both.
_RECORD = """
INSERT INTO raw_dropped (table_name, range_start, range_end)
SELECT %(table)s::text, c.range_start, c.range_end
FROM timescaledb_information.chunks c
WHERE c.hypertable_schema = current_schema() AND c.hypertable_name::text = %(table)s::text
  AND format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass = ANY(ARRAY(
      SELECT show_chunks(%(table)s::text::regclass, older_than => now() - make_interval(secs => %(keep)s))))
ON CONFLICT (table_name, range_start) DO UPDATE
SET range_end = greatest(raw_dropped.range_end, excluded.range_end), dropped_at = excluded.dropped_at
"""
_DROP = "SELECT drop_chunks(%(table)s::text::regclass, older_than => now() - make_interval(secs => %(keep)s))"


@dataclass(slots=True)
class RetentionResult:
    chunks_dropped: dict[str, int] = field(default_factory=dict)
    frames_deleted: int = 0
    gaps_deleted: int = 0


def run(conn: Conn, *, raw_retention_s: float, events_retention_s: float, frames_retention_s: float) -> RetentionResult:
    with conn.transaction():  # a chunk is recorded if and only if it is dropped
        return _run(conn, raw_retention_s, events_retention_s, frames_retention_s)


def _run(conn: Conn, raw_retention_s: float, events_retention_s: float, frames_retention_s: float) -> RetentionResult:
    result = RetentionResult()
    plan = [(table, raw_retention_s) for table in RAW_TABLES] + [("device_events", events_retention_s)]
    for table, keep_s in plan:
        params = {"table": table, "keep": keep_s}
        recorded = conn.execute(_RECORD, params).rowcount
        rows = conn.execute(_DROP, params).fetchall()
        if len(rows) != recorded:  # rolls the drop back: a dropped chunk is never left unrecorded
            raise RuntimeError(f"retention of {table}: {recorded} chunks recorded, {len(rows)} to drop")
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
