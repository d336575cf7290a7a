"""Gaps in a gateway's frame sequence, found by a periodic scan of ``uplink_frames``.

``seq`` is one counter per gateway and epoch, shared by both lanes, and frames arrive out of order (the
alarm lane overtakes a telemetry batch, a broker backlog drains lane by lane, replays follow live
traffic). So nothing is decided per message. A scan looks at every stream that received frames lately;
its *horizon* is the highest seq stored more than ``grace_s`` ago, and every seq between what was checked
before and the horizon that has no frame is a gap. Per the contract a stream starts at seq 0.

A gap stays recorded: when late frames arrive, ``missing`` goes down, and at 0 the gap is closed with
``filled_at`` (data that was late, not lost). Open gaps are data lost between gateway and platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from eldercare.ingest.registry import Conn

_FIND = """
WITH candidates AS (
    SELECT DISTINCT gateway_pk, epoch FROM uplink_frames WHERE received_at >= %(since)s
), horizons AS (
    SELECT c.gateway_pk, c.epoch, coalesce(s.checked_seq, -1) AS checked,
           (SELECT max(f.seq) FROM uplink_frames f
             WHERE f.gateway_pk = c.gateway_pk AND f.epoch = c.epoch AND f.received_at <= %(cutoff)s) AS horizon
    FROM candidates c LEFT JOIN uplink_streams s USING (gateway_pk, epoch)
), moved AS (
    SELECT * FROM horizons WHERE horizon > checked
), found AS (
    INSERT INTO uplink_gaps (gateway_pk, epoch, first_seq, last_seq, missing)
    SELECT m.gateway_pk, m.epoch, x.first_seq, x.last_seq, x.last_seq - x.first_seq + 1
    FROM moved m CROSS JOIN LATERAL (
        SELECT coalesce(w.prev, m.checked) + 1 AS first_seq, w.seq - 1 AS last_seq
        FROM (SELECT f.seq, lag(f.seq) OVER (ORDER BY f.seq) AS prev FROM uplink_frames f
               WHERE f.gateway_pk = m.gateway_pk AND f.epoch = m.epoch
                 AND f.seq > m.checked AND f.seq <= m.horizon) w
        WHERE w.seq > coalesce(w.prev, m.checked) + 1
    ) x
    ON CONFLICT DO NOTHING
    RETURNING 1
), advanced AS (
    INSERT INTO uplink_streams (gateway_pk, epoch, checked_seq)
    SELECT gateway_pk, epoch, horizon FROM moved
    ON CONFLICT (gateway_pk, epoch) DO UPDATE SET checked_seq = excluded.checked_seq, checked_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM found), (SELECT count(*) FROM advanced)
"""

_FILL = """
WITH counted AS (
    SELECT g.gateway_pk, g.epoch, g.first_seq,
           g.last_seq - g.first_seq + 1 - (
               SELECT count(*) FROM uplink_frames f
               WHERE f.gateway_pk = g.gateway_pk AND f.epoch = g.epoch AND f.seq BETWEEN g.first_seq AND g.last_seq
           ) AS missing
    FROM uplink_gaps g WHERE g.filled_at IS NULL
)
UPDATE uplink_gaps g SET missing = c.missing, filled_at = CASE WHEN c.missing = 0 THEN now() END
FROM counted c
WHERE g.gateway_pk = c.gateway_pk AND g.epoch = c.epoch AND g.first_seq = c.first_seq AND g.missing <> c.missing
RETURNING g.filled_at IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class ScanResult:
    gaps_found: int
    streams_advanced: int
    gaps_changed: int
    gaps_filled: int
    open_gaps: int


@dataclass(frozen=True, slots=True)
class Gap:
    institution_code: str
    gateway_id: str
    epoch: int
    first_seq: int
    last_seq: int
    frames: int
    missing: int
    detected_at: datetime
    filled_at: datetime | None


def scan(conn: Conn, *, grace_s: float, lookback_s: float) -> ScanResult:
    """One pass: new gaps of streams with frames received in the last ``lookback_s``, then fills."""
    with conn.transaction():
        row = conn.execute(
            _FIND,
            {
                "since": _ago(conn, lookback_s),
                "cutoff": _ago(conn, grace_s),
            },
        ).fetchone()
        assert row is not None
        changed = conn.execute(_FILL).fetchall()
        open_row = conn.execute("SELECT count(*) FROM uplink_gaps WHERE filled_at IS NULL").fetchone()
    return ScanResult(
        gaps_found=int(row[0]),
        streams_advanced=int(row[1]),
        gaps_changed=len(changed),
        gaps_filled=sum(1 for (filled,) in changed if filled),
        open_gaps=int(open_row[0]) if open_row else 0,
    )


def _ago(conn: Conn, seconds: float) -> datetime:
    row = conn.execute("SELECT now() - make_interval(secs => %s)", (seconds,)).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def list_gaps(conn: Conn, *, open_only: bool = True, gateway: str | None = None, limit: int = 100) -> list[Gap]:
    with conn.cursor(row_factory=class_row(Gap)) as cur:
        return cur.execute(
            "SELECT institution_code, gateway_id, epoch, first_seq, last_seq, frames, missing, detected_at, filled_at"
            " FROM uplink_gaps_view WHERE (NOT %(open)s OR filled_at IS NULL)"
            " AND (%(gateway)s::text IS NULL OR gateway_id = %(gateway)s)"
            " ORDER BY detected_at DESC, gateway_id, epoch, first_seq LIMIT %(limit)s",
            {"open": open_only, "gateway": gateway, "limit": limit},
        ).fetchall()
