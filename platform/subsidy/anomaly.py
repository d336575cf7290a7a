"""Anomaly ranking of homes for a month (scikit-learn's IsolationForest), each score with what drove it.

Features of a home-month (computed in SQL from the run's verdicts and evidence tables, and the alarms and
stays of the month) are scaled robustly (median, inter-quartile range) and ranked together by an isolation
forest: the more easily a home is isolated from the others, the higher its score. What drove a score is
measured, not guessed: each feature in turn is set to the median of all homes and the home scored again;
the drop in its score is that feature's contribution. The three largest are shown.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from eldercare.platform.auth.service import AsyncConn

MIN_HOMES = 4  # fewer homes than this are listed without a score: there is nothing to compare with
DRIVERS = 3

# (name, what it measures); the SQL below yields one column per name, in this order.
FEATURES: tuple[tuple[str, str], ...] = (
    ("withheld_share", "share of the claimed yuan not paid"),
    ("rejected_share", "share of the claim lines rejected"),
    ("manual_share", "share of the claim lines sent to a manual check"),
    ("unverified_day_share", "share of the claimed bed days the evidence did not support"),
    ("presence_rate", "share of watched nights someone lay in the claimed beds"),
    ("presence_irregularity", "standard deviation of the nightly presence share over the month"),
    ("offline_share", "share of payable nights without sensor data"),
    ("alarms_per_bed", "alarms raised in the month per bed"),
    ("median_ack_s", "median seconds to acknowledge an alarm for a person"),
    ("churn", "admissions, discharges and transfers in the month per resident"),
    ("deaths_per_resident", "deaths recorded in the month per resident"),
    ("lines_per_bed", "claim lines per bed of the home"),
)

_SQL = """
WITH v AS (
    SELECT institution_id, count(*) AS lines, sum(claimed_yuan) AS claimed, sum(payable_yuan) AS payable,
           count(*) FILTER (WHERE verdict = 'rejected') AS rejected,
           count(*) FILTER (WHERE verdict = 'manual_check') AS manual,
           sum(claimed_days) FILTER (WHERE verified_days IS NOT NULL) AS claimed_days,
           sum(verified_days) AS verified_days
    FROM subsidy_verdicts WHERE run_id = %(run)s GROUP BY 1
),
nightly AS (
    SELECT l.institution_id, ln.night,
           count(*) FILTER (WHERE ln.sensor = 'present') AS p,
           count(*) FILTER (WHERE ln.sensor IN ('present', 'absent')) AS w,
           count(*) FILTER (WHERE ln.sensor IN ('no_evidence', 'no_sensor')) AS u,
           count(*) AS n
    FROM v_ln ln JOIN v_lines l ON l.line_id = ln.line_id
    WHERE l.in_run AND l.unit = 'bed_day' AND NOT ln.dead AND NOT ln.hospital
    GROUP BY 1, 2
),
occ AS (
    SELECT institution_id, sum(p)::float8 / nullif(sum(w), 0) AS presence,
           stddev_pop(p::float8 / nullif(w, 0)) AS irregularity, sum(u)::float8 / nullif(sum(n), 0) AS offline
    FROM nightly GROUP BY 1
),
al AS (
    SELECT a.institution_id, count(*) AS alarms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.raised_at))
               FILTER (WHERE a.priority <> 'technical') AS median_ack
    FROM alarms a
    WHERE a.institution_id IN (SELECT institution_id FROM v)
      AND a.raised_at >= %(t_month0)s AND a.raised_at < %(t_month1)s
    GROUP BY 1
),
bd AS (
    SELECT b.institution_id, count(*) AS beds FROM beds b
    WHERE b.institution_id IN (SELECT institution_id FROM v) AND b.retired_at IS NULL GROUP BY 1
),
stay AS (
    SELECT r.institution_id, count(DISTINCT a.resident_id) AS residents,
           count(*) FILTER (WHERE lower(a.during) >= %(t_month0)s AND lower(a.during) < %(t_month1)s)
           + count(*) FILTER (WHERE upper(a.during) >= %(t_month0)s AND upper(a.during) < %(t_month1)s) AS moves
    FROM bed_assignments a JOIN residents r ON r.id = a.resident_id
    WHERE r.institution_id IN (SELECT institution_id FROM v) AND a.during && tstzrange(%(t_month0)s, %(t_month1)s)
    GROUP BY 1
),
dd AS (
    SELECT r.institution_id, count(*) AS deaths FROM deaths d JOIN residents r ON r.id = d.resident_id
    WHERE r.institution_id IN (SELECT institution_id FROM v) AND d.died_at >= %(t_month0)s AND d.died_at < %(t_month1)s
    GROUP BY 1
)
SELECT v.institution_id,
       1 - v.payable / nullif(v.claimed, 0),
       v.rejected::float8 / v.lines,
       v.manual::float8 / v.lines,
       1 - v.verified_days::float8 / nullif(v.claimed_days, 0),
       occ.presence, occ.irregularity, occ.offline,
       coalesce(al.alarms, 0)::float8 / nullif(bd.beds, 0),
       al.median_ack,
       coalesce(stay.moves, 0)::float8 / nullif(stay.residents, 0),
       coalesce(dd.deaths, 0)::float8 / nullif(stay.residents, 0),
       v.lines::float8 / nullif(bd.beds, 0)
FROM v
LEFT JOIN occ ON occ.institution_id = v.institution_id
LEFT JOIN al ON al.institution_id = v.institution_id
LEFT JOIN bd ON bd.institution_id = v.institution_id
LEFT JOIN stay ON stay.institution_id = v.institution_id
LEFT JOIN dd ON dd.institution_id = v.institution_id
ORDER BY v.institution_id
"""


@dataclass(frozen=True, slots=True)
class Ranked:
    institution_id: int
    score: float | None
    rank: int | None
    features: dict[str, float | None]
    drivers: list[dict[str, Any]]


def _matrix(rows: list[tuple[Any, ...]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Raw values (NaN where unknown) and the robustly scaled matrix the forest sees (NaN -> median)."""
    raw = np.array([[math.nan if v is None else float(v) for v in row[1:]] for row in rows], dtype=float)
    medians = np.nanmedian(np.where(np.isnan(raw).all(axis=0), 0.0, raw), axis=0)
    filled = np.where(np.isnan(raw), medians, raw)
    q75, q25 = np.percentile(filled, [75, 25], axis=0)
    spread = np.where(q75 - q25 > 1e-9, q75 - q25, np.maximum(np.abs(medians), 1.0))
    return raw, (filled - medians) / spread


def score(rows: list[tuple[Any, ...]], *, seed: int = 0) -> list[Ranked]:
    """Rank the homes of ``rows`` (institution id, then one value per feature of :data:`FEATURES`)."""
    names = [name for name, _ in FEATURES]
    if len(rows) < MIN_HOMES:
        return [Ranked(int(r[0]), None, None, dict(zip(names, _floats(r[1:]), strict=True)), []) for r in rows]
    from sklearn.ensemble import IsolationForest

    raw, x = _matrix(rows)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(x)
    scores = -forest.score_samples(x)
    contributions = np.zeros_like(x)
    for j in range(x.shape[1]):
        typical = x.copy()
        typical[:, j] = 0.0  # the median, after scaling
        contributions[:, j] = scores - (-forest.score_samples(typical))
    order = np.argsort(-scores, kind="stable")
    rank_of = {int(i): n for n, i in enumerate(order, start=1)}
    medians = np.nanmedian(np.where(np.isnan(raw).all(axis=0), 0.0, raw), axis=0)
    out = []
    for i, row in enumerate(rows):
        top = [j for j in np.argsort(-contributions[i], kind="stable") if contributions[i, j] > 1e-6][:DRIVERS]
        drivers = [
            {"feature": names[j], "value": _round(raw[i, j]), "typical": _round(medians[j]),
             "contribution": round(float(contributions[i, j]), 4), "means": FEATURES[j][1]}
            for j in top
        ]  # fmt: skip
        features = dict(zip(names, _floats(row[1:]), strict=True))
        out.append(Ranked(int(row[0]), round(float(scores[i]), 4), rank_of[i], features, drivers))
    return out


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def _floats(values: tuple[Any, ...]) -> list[float | None]:
    return [None if v is None else round(float(v), 4) for v in values]


async def rank(conn: AsyncConn, *, run_id: int, month: date, values: dict[str, Any]) -> int:
    """Score the run's homes (inside the run's transaction) and store the ranking; how many were ranked."""
    rows = await (await conn.execute(_SQL, values)).fetchall()
    ranked = await asyncio.to_thread(score, [tuple(r) for r in rows])  # CPU work off the event loop
    await conn.execute(
        "DELETE FROM subsidy_anomalies WHERE month = %s AND institution_id IN (SELECT institution_id FROM v_homes)",
        (month,),
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO subsidy_anomalies (month, institution_id, run_id, score, rank, ranked, features, drivers)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(month, r.institution_id, run_id, r.score, r.rank, len(ranked), Jsonb(r.features), Jsonb(r.drivers))
             for r in ranked],
        )  # fmt: skip
    return len(ranked)
