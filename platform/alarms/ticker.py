"""Time-based alarm rules, run every few seconds: each job is one SQL statement or a short transaction.

- a night bed exit not followed by a return within the rule's delay raises an urgent alarm, and turns
  emergency if the resident is still out of bed after ``emergency_after_s``;
- heart or respiration rate outside the resident's range for ``sustain_s`` raises an urgent alarm (the rates are
  sealed at rest: they are opened and judged here);
- a wander-risk resident's wristband seen beyond ``radius_m`` of the home raises an emergency (走失),
  with the last location;
- a resident's bed sensor reporting but never presence for ``hours`` raises a technical alarm;
- a gateway silent for ``silence_s`` (or dead by its last will) raises one technical alarm, under which the
  fault alarms it delivers are held back; it resolves itself when the gateway returns, and the held faults
  its devices have not cleared by then are released to staff;
- an alarm not acknowledged within ``ack_timeout_s`` escalates a tier each time the timeout passes (at the last
  tier its people are told again each time, technical alarms excepted), and an
  acknowledged one that nobody is attending does the same every ``attend_timeout_s`` (the engine escalates it
  at once when the resident presses again after the repeat window).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import AsyncConnection

from eldercare.platform.alarms import changes
from eldercare.platform.alarms.models import OutcomeCode, Priority, State
from eldercare.platform.alarms.retry import Retry
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import LOCATION_POSITION, DecryptionError, OpenedVitals, Vault
from eldercare.platform.map.geo import LonLat, distance_m
from eldercare.platform.sealed_vitals import micros_sql

log = logging.getLogger(__name__)

# A rule's parameters for a row (a bed, a wristband, a gateway, an alarm) are joined from ``rule_params_all(rule)``
# (migration 0030), computed once a query for every institution and every resident with a row of their own:
#     JOIN rule_params_all(rule) home ON home.institution_id = <institution> AND home.resident_id IS NULL
#     LEFT JOIN rule_params_all(rule) own ON own.institution_id = <institution> AND own.resident_id = <resident>
#     ... CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END
# which is ``rule_params(rule, institution, resident)`` (tests/alerting/test_rule_params_all.py) without a plpgsql
# call a row: on 20,000 beds those calls were 1.0 s of the database's 1.4 s a tick (docs/alerting.md). The bed-exit
# job still calls rule_params: its rows are the few exits being watched.


@asynccontextmanager
async def _transaction(conn: AsyncConn) -> AsyncIterator[None]:
    """A job's transaction, without JIT compilation. The jobs' queries probe indexes a bed at a time, which JIT does
    not speed up, but their estimated cost grows with the readings' table: on 20,000 beds the vital-range rule's
    crossed ``jit_optimize_above_cost`` and PostgreSQL spent 0.6 s compiling it, every tick, to run it in 0.2 s
    (bench/ticker_tick.py, docs/alerting.md)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        yield


async def bed_exits(conn: AsyncConn, vault: Vault) -> int:
    """Raise watched bed exits whose delay has passed; make long ones emergencies."""
    done = 0
    async with _transaction(conn):
        due = await (
            await conn.execute(
                "SELECT w.id, w.device_id, w.resident_id, w.exited_at, d.institution_id, ba.bed_id"
                " FROM bed_exit_watches w JOIN devices d ON d.id = w.device_id"
                " LEFT JOIN bed_assignments ba ON ba.resident_id = w.resident_id AND ba.during @> w.exited_at"
                " WHERE w.returned_at IS NULL AND w.alarm_id IS NULL"
                " AND w.exited_at + make_interval(secs => (rule_params('bed_exit_night', d.institution_id,"
                " w.resident_id)->>'delay_s')::float) <= now() FOR UPDATE OF w SKIP LOCKED"
            )
        ).fetchall()
        for watch_id, device_id, resident_id, exited_at, institution_id, bed_id in due:
            alarm_id = await changes.raise_alarm(
                conn,
                vault=vault,
                institution_id=institution_id,
                kind="bed_exit",
                priority=Priority.URGENT,
                device_id=device_id,
                bed_id=bed_id,
                resident_id=resident_id,
                occurred_at=exited_at,
                published_at=None,
                detail={"exited_at": exited_at.isoformat()},
                held_by=None,
                note="out of bed at night and not back",
            )
            await conn.execute("UPDATE bed_exit_watches SET alarm_id = %s WHERE id = %s", (alarm_id, watch_id))
            done += 1
        longer = await (
            await conn.execute(
                "UPDATE alarms a SET priority = 'emergency' FROM bed_exit_watches w"
                " WHERE w.alarm_id = a.id AND w.returned_at IS NULL AND a.priority = 'urgent'"
                " AND a.state IN ('raised', 'acknowledged', 'attending')"
                " AND w.exited_at + make_interval(secs => (rule_params('bed_exit_night', a.institution_id,"
                " a.resident_id)->>'emergency_after_s')::float) <= now() RETURNING a.id, a.state::text"
            )
        ).fetchall()
        for alarm_id, state in longer:
            await changes.record(
                conn,
                vault=vault,
                alarm_id=alarm_id,
                actor="system",
                old=State(state),
                new=State(state),
                note="still out of bed: now an emergency",
            )
            done += 1
    return done


# The vital-range rule's watched beds: a bed sensor bound to a bed with a resident, under a `vitals` rule, without an
# open vitals alarm; with the resident's ranges, the rule's window (from ``since``) and least number of readings, and
# the last in-bed reading of the window whose rates are sealed (a reading with neither rate has no block): its time as
# the block is bound to it (PostgreSQL microseconds) and the block. The rule needs every judged reading out of range,
# so a bed whose last reading opens in range on both rates cannot alarm, which is most beds at most times: only the
# others' windows are read (_VITALS_WINDOWS). Measured on 18,093 watched beds with a reading every 5 s (460,000
# readings in the default 120 s window): the rule judged in SQL over clear rates took 4.4 s and more a tick (it hashed
# the whole chunk); every bed's window opened here, 1.6 s, 0.3 s of them in this process (the web's event loop); this
# query and the suspects' windows, 0.5 s, the rules' parameters (rule_params, a bed) 0.24 s of it; joined from
# rule_params_all since, 0.2 s on 18,032 watched beds (bench/ticker_tick.py).
_VITALS_WATCHED = f"""
WITH bound AS MATERIALIZED (
    SELECT d.id AS device_id, d.institution_id, db.bed_id, r.id AS resident_id,
           r.heart_rate_min, r.heart_rate_max, r.resp_rate_min, r.resp_rate_max,
           CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END AS p
    FROM devices d
    JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
    JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> now()
    JOIN residents r ON r.id = ba.resident_id
    JOIN rule_params_all('vitals') home ON home.institution_id = d.institution_id AND home.resident_id IS NULL
    LEFT JOIN rule_params_all('vitals') own ON own.institution_id = d.institution_id AND own.resident_id = r.id
    WHERE d.kind = 'bed_sensor' AND d.retired_at IS NULL
), watched AS (
    SELECT b.*, now() - make_interval(secs => (b.p->>'sustain_s')::float) AS since,
           coalesce((b.p->>'min_readings')::int, 3) AS least
    FROM bound b WHERE b.p IS NOT NULL
)
SELECT b.device_id, b.institution_id, b.bed_id, b.resident_id, b.heart_rate_min, b.heart_rate_max, b.resp_rate_min,
       b.resp_rate_max, b.least, b.since, last.micros, last.vitals_enc
FROM watched b CROSS JOIN LATERAL (
    SELECT {micros_sql("br.time")} AS micros, br.vitals_enc FROM bed_readings br
    WHERE br.device_id = b.device_id AND br.time > b.since AND br.presence AND br.vitals_enc IS NOT NULL
    ORDER BY br.time DESC LIMIT 1) last
WHERE NOT EXISTS (
    SELECT 1 FROM alarms a WHERE a.device_id = b.device_id AND a.kind = 'vitals'
    AND a.state IN ('raised', 'acknowledged', 'attending'))
"""  # noqa: S608 - the one piece put in is micros_sql's, of a column name of this module's

# The in-bed sealed readings of some beds' windows (devices and window starts, in the same transaction as the beds were
# found, so at the same now()), by device and time.
_VITALS_WINDOWS = f"""
SELECT w.device_id, {micros_sql("br.time")}, br.vitals_enc
FROM unnest(%s::bigint[], %s::timestamptz[]) AS w (device_id, since)
JOIN bed_readings br ON br.device_id = w.device_id AND br.time > w.since AND br.presence AND br.vitals_enc IS NOT NULL
ORDER BY w.device_id, br.time
"""  # noqa: S608 - as above


def _inside(rates: npt.NDArray[np.float64], low: npt.ArrayLike, high: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Which rates are within the range (False for NaN: no rate, or a block that did not open), compared as ``real``
    with ``real``, as the database compared them when it judged the rates in clear: a limit of 36.6 and a rate of
    36.6 are equal, not 36.599998 and 36.6."""
    as_real = rates.astype(np.float32)
    return (as_real >= np.asarray(low, dtype=np.float32)) & (as_real <= np.asarray(high, dtype=np.float32))


class _Bed(NamedTuple):
    """A watched bed whose last reading did not show both rates in range: its window is judged."""

    device_id: int
    institution_id: int
    bed_id: int
    resident_id: int
    heart: tuple[float, float]
    breath: tuple[float, float]
    least: int
    since: datetime


def _out_of_range(bed: _Bed, window: OpenedVitals) -> tuple[list[str], float, float] | None:
    """Which rates were out of the resident's range in every judged reading of the bed's window (opened, with both
    rates), with the last one's rates; None when neither was, or fewer than the rule's least could be judged."""
    judged = window.ok & ~np.isnan(window.hr) & ~np.isnan(window.rr)
    if np.count_nonzero(judged) < bed.least:
        return None
    hr, rr = window.hr[judged], window.rr[judged]
    out = [
        name
        for name, rates, (low, high) in (("heart_rate", hr, bed.heart), ("resp_rate", rr, bed.breath))
        if not _inside(rates, low, high).any()
    ]
    return (out, float(hr[-1]), float(rr[-1])) if out else None


async def _suspects(conn: AsyncConn, vault: Vault) -> list[_Bed]:
    """The watched beds whose last reading of the window did not open in range on both rates."""
    rows = await (await conn.execute(_VITALS_WATCHED, binary=True)).fetchall()
    last = vault.open_vitals([r[10] for r in rows], [r[0] for r in rows], [r[11] for r in rows])
    limits = np.array([r[4:8] for r in rows], dtype=np.float32).reshape(-1, 4)
    cleared = _inside(last.hr, limits[:, 0], limits[:, 1]) & _inside(last.rr, limits[:, 2], limits[:, 3])
    return [
        _Bed(r[0], r[1], r[2], r[3], (r[4], r[5]), (r[6], r[7]), r[8], r[9])
        for r, done in zip(rows, cleared.tolist(), strict=True)
        if not done
    ]


async def vitals(conn: AsyncConn, vault: Vault) -> int:
    """Raise an urgent alarm for each watched bed whose every in-bed reading of the rule's ``sustain_s`` (at least
    ``min_readings`` of them) had its heart rate, or every one its breathing rate, out of the resident's range. The
    rates are sealed: each query's blocks are opened in one call. A block that does not open is left out of its bed's
    judgment and logged; the bed's other readings, and the other beds, are judged all the same."""
    raised = 0
    async with _transaction(conn):
        beds = await _suspects(conn, vault)
        if not beds:
            return 0
        rows = await (
            await conn.execute(_VITALS_WINDOWS, ([b.device_id for b in beds], [b.since for b in beds]), binary=True)
        ).fetchall()
        opened = vault.open_vitals([r[1] for r in rows], [r[0] for r in rows], [r[2] for r in rows])
        devices = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        for bed in beds:
            start, end = np.searchsorted(devices, (bed.device_id, bed.device_id + 1)).tolist()
            window = OpenedVitals(opened.hr[start:end], opened.rr[start:end], opened.ok[start:end])
            if not window.ok.all():
                log.error(  # no rate, no block: the device is enough to find the rows
                    "vitals: %d of the %d readings of device %d in the window do not open with this data key;"
                    " judged without them",
                    np.count_nonzero(~window.ok),
                    end - start,
                    bed.device_id,
                )
            found = _out_of_range(bed, window)
            if found is None:
                continue
            what, last_hr, last_rr = found
            await changes.raise_alarm(
                conn,
                vault=vault,
                institution_id=bed.institution_id,
                kind="vitals",
                priority=Priority.URGENT,
                device_id=bed.device_id,
                bed_id=bed.bed_id,
                resident_id=bed.resident_id,
                occurred_at=await _now(conn),
                published_at=None,
                detail={  # sealed: text.py; the ranges so that the nurse sees how far out the rates are
                    "out_of_range": what,
                    "heart_rate": last_hr,
                    "resp_rate": last_rr,
                    "heart_rate_range": list(bed.heart),
                    "resp_rate_range": list(bed.breath),
                },
                held_by=None,
                note="vital signs out of the resident's range",
            )
            raised += 1
    return raised


# The last fix of each worn wristband of a wander-risk resident, fresh by the rule, whose wanderer has no open wander
# alarm. The fix is sealed (``position_enc``, written by ingest) or, written by an older version before `db migrate`
# sealed it, in clear: the distance from home is measured here, once it is opened.
_WANDER = """
WITH worn AS (
    SELECT d.id AS device_id, d.institution_id, r.id AS resident_id, i.lat AS home_lat, i.lon AS home_lon,
           CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END AS p
    FROM devices d
    JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
    JOIN residents r ON r.id = db.resident_id AND r.wander_risk
    JOIN institutions i ON i.id = d.institution_id AND i.lat IS NOT NULL
    JOIN rule_params_all('wander') home ON home.institution_id = d.institution_id AND home.resident_id IS NULL
    LEFT JOIN rule_params_all('wander') own ON own.institution_id = d.institution_id AND own.resident_id = r.id
    WHERE d.kind = 'wristband'
)
SELECT w.device_id, w.institution_id, w.resident_id, l.time, l.position_enc, l.lat, l.lon, w.home_lat, w.home_lon,
       (w.p->>'radius_m')::float
FROM worn w CROSS JOIN LATERAL (
    SELECT time, position_enc, lat, lon FROM locations WHERE device_id = w.device_id
    AND time > now() - make_interval(secs => (w.p->>'fresh_s')::float) ORDER BY time DESC LIMIT 1) l
WHERE w.p IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM alarms a WHERE a.device_id = w.device_id AND a.kind = 'wander'
    AND a.state IN ('raised', 'acknowledged', 'attending'))
"""


def _fix(vault: Vault, device_id: int, sealed: bytes | None, lat: float | None, lon: float | None) -> LonLat | None:
    """A wristband's last fix, opened; None (logged) if it does not open with this key."""
    if sealed is None:
        assert lat is not None and lon is not None  # the table's CHECK: in clear when not sealed
        return LonLat(lon, lat)
    try:
        lat, lon = vault.open_position(sealed, column=LOCATION_POSITION)
    except DecryptionError:
        log.error("wander: the last fix of device %d does not open with this data key", device_id)  # noqa: TRY400
        return None
    return LonLat(lon, lat)


async def wander(conn: AsyncConn, vault: Vault) -> int:
    raised = 0
    async with _transaction(conn):
        rows = await (await conn.execute(_WANDER)).fetchall()
        for device_id, institution_id, resident_id, at, sealed, lat, lon, home_lat, home_lon, radius_m in rows:
            fix = _fix(vault, device_id, sealed, lat, lon)
            if fix is None:
                continue
            metres = distance_m(LonLat(home_lon, home_lat), fix)
            if metres <= radius_m:
                continue
            await changes.raise_alarm(
                conn,
                vault=vault,
                institution_id=institution_id,
                kind="wander",
                priority=Priority.EMERGENCY,
                device_id=device_id,
                bed_id=None,
                resident_id=resident_id,
                occurred_at=at,
                published_at=None,
                detail={"lat": fix.lat, "lon": fix.lon, "metres_from_home": round(metres)},
                held_by=None,
                note="wristband outside the home's area",
            )
            raised += 1
    return raised


# The watched beds (a bed sensor bound to a bed with a resident, under a `no_presence` rule, assigned before the
# rule's window began) first, each with its window's start, then each bed's probes of its readings by the index,
# a bed at a time (``OFFSET 0`` keeps each EXISTS a probe: turned into a join, the planner at times read the last
# 10 minutes of every sensor into a hash, then every reading of each bed, 0.9 s a tick on 20,000 beds against 0.17 s).
_NO_PRESENCE = """
WITH watched AS MATERIALIZED (
    SELECT d.id AS device_id, d.institution_id, db.bed_id, ba.resident_id, w.since
    FROM devices d
    JOIN device_bindings db ON db.device_id = d.id AND db.during @> now()
    JOIN bed_assignments ba ON ba.bed_id = db.bed_id AND ba.during @> now()
    JOIN rule_params_all('no_presence') home ON home.institution_id = d.institution_id AND home.resident_id IS NULL
    LEFT JOIN rule_params_all('no_presence') own ON own.institution_id = d.institution_id
         AND own.resident_id = ba.resident_id
    CROSS JOIN LATERAL (SELECT CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END AS p) r
    CROSS JOIN LATERAL (SELECT now() - make_interval(hours => (r.p->>'hours')::int) AS since) w
    WHERE d.kind = 'bed_sensor' AND r.p IS NOT NULL AND lower(ba.during) < w.since
)
SELECT b.device_id, b.institution_id, b.bed_id, b.resident_id
FROM watched b
WHERE EXISTS (SELECT 1 FROM bed_readings x WHERE x.device_id = b.device_id AND x.time > now() - interval '10 minutes'
              OFFSET 0)
  -- evidence for the whole window: the sensor was already reporting when it began (a sensor that has only
  -- just started, or came back after an outage, has not watched an empty bed for hours)
  AND EXISTS (SELECT 1 FROM bed_readings x WHERE x.device_id = b.device_id
              AND x.time <= b.since AND x.time > b.since - interval '30 minutes' OFFSET 0)
  -- a resident in hospital at any time of the window keeps the bed, empty for a reason
  AND NOT EXISTS (SELECT 1 FROM hospital_stays h WHERE h.resident_id = b.resident_id
                  AND h.during && tstzrange(b.since, now()))
  AND NOT EXISTS (SELECT 1 FROM bed_readings x WHERE x.device_id = b.device_id AND x.presence AND x.time > b.since
                  OFFSET 0)
  AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.device_id = b.device_id AND a.kind = 'no_presence'
                  AND a.state IN ('raised', 'acknowledged', 'attending'))
"""


async def no_presence(conn: AsyncConn, vault: Vault) -> int:
    async with _transaction(conn):
        rows = await (await conn.execute(_NO_PRESENCE)).fetchall()
        for device_id, institution_id, bed_id, resident_id in rows:
            await changes.raise_alarm(
                conn,
                vault=vault,
                institution_id=institution_id,
                kind="no_presence",
                priority=Priority.TECHNICAL,
                device_id=device_id,
                bed_id=bed_id,
                resident_id=resident_id,
                occurred_at=await _now(conn),
                published_at=None,
                detail={},
                held_by=None,
                note="no one in bed for hours: sensor or resident?",
            )
    return len(rows)


# The gateways silent for their home's ``silence_s`` (or dead by their last will) without an open gateway alarm; and
# the open gateway alarms whose gateway has been seen again since, within ``silence_s`` (60 s where the rule is off).
_SILENT = """
SELECT g.id, g.institution_id, g.gateway_id, g.last_seen_at, g.last_status FROM gateways g
JOIN rule_params_all('gateway_offline') home ON home.institution_id = g.institution_id AND home.resident_id IS NULL
WHERE g.revoked_at IS NULL AND g.last_seen_at IS NOT NULL AND home.params IS NOT NULL
  AND (g.last_status = 'death' OR g.last_seen_at < now() - make_interval(secs => (home.params->>'silence_s')::float))
  AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.gateway_pk = g.id AND a.kind = 'gateway_offline'
                  AND a.state IN ('raised', 'acknowledged', 'attending'))
FOR UPDATE OF g SKIP LOCKED
"""
_BACK = """
SELECT a.id, a.state::text FROM alarms a JOIN gateways g ON g.id = a.gateway_pk
JOIN rule_params_all('gateway_offline') home ON home.institution_id = g.institution_id AND home.resident_id IS NULL
WHERE a.kind = 'gateway_offline' AND a.state IN ('raised', 'acknowledged', 'attending')
  AND g.last_status <> 'death' AND g.last_seen_at > a.occurred_at
  AND g.last_seen_at >= now() - make_interval(secs => (coalesce(home.params->>'silence_s', '60'))::float)
FOR UPDATE OF a SKIP LOCKED
"""


async def gateways(conn: AsyncConn, vault: Vault) -> int:
    """One technical alarm per silent gateway; resolved (with what it held back) when it returns."""
    done = 0
    async with _transaction(conn):
        silent = await (await conn.execute(_SILENT)).fetchall()
        for gateway_pk, institution_id, gateway_id, last_seen, last_status in silent:
            await changes.raise_alarm(
                conn,
                vault=vault,
                institution_id=institution_id,
                kind="gateway_offline",
                priority=Priority.TECHNICAL,
                device_id=None,
                bed_id=None,
                resident_id=None,
                occurred_at=last_seen,
                published_at=None,
                detail={"gateway": gateway_id, "last_status": last_status},
                held_by=None,
                note="gateway silent: its devices' faults are held back under this alarm",
                gateway_pk=gateway_pk,
            )
            done += 1
        back = await (await conn.execute(_BACK)).fetchall()
        for alarm_id, state in back:
            await changes.close(
                conn,
                vault=vault,
                alarm_id=alarm_id,
                old=State(state),
                new=State.RESOLVED,
                outcome="gateway back online",
                outcome_code=OutcomeCode.DEVICE_ISSUE,
                actor="system",
            )
            done += 1 + await changes.release_held(
                conn,
                vault=vault,
                holder=alarm_id,
                note=f"gateway back and the fault not cleared: released from gateway alarm {alarm_id}",
            )
    return done


_ESCALATIONS = """
WITH due AS (
    SELECT a.id, (r.p->>'tiers')::int AS tiers FROM alarms a
    JOIN rule_params_all('escalation') home ON home.institution_id = a.institution_id AND home.resident_id IS NULL
    LEFT JOIN rule_params_all('escalation') own ON own.institution_id = a.institution_id
         AND own.resident_id = a.resident_id
    CROSS JOIN LATERAL (SELECT CASE WHEN own.resident_id IS NULL THEN home.params ELSE own.params END AS p) r
    WHERE a.held_by IS NULL AND r.p IS NOT NULL AND (
        -- nobody has said they saw it: a tier up each time the timeout passes, up to the last tier
        (a.state = 'raised' AND a.escalation_level < (r.p->>'tiers')::int
         AND a.raised_at + (a.escalation_level + 1) * make_interval(secs => (r.p->>'ack_timeout_s')::float) <= now())
        -- still nobody at the last tier: its people told again each time the timeout passes (a fault, once)
        OR (a.state = 'raised' AND a.priority <> 'technical' AND (r.p->>'tiers')::int > 0
            AND a.escalation_level >= (r.p->>'tiers')::int
            AND greatest(a.raised_at + a.escalation_level * make_interval(secs => (r.p->>'ack_timeout_s')::float),
                         a.escalated_at) + make_interval(secs => (r.p->>'ack_timeout_s')::float) <= now())
        -- seen but nobody at the bedside: a tier up (at the last tier, its people told again) each time it passes
        OR (a.state = 'acknowledged' AND a.priority <> 'technical' AND (r.p->>'tiers')::int > 0
            AND greatest(a.acknowledged_at, a.escalated_at)
                + make_interval(secs => (r.p->>'attend_timeout_s')::float) <= now()))
    FOR UPDATE OF a SKIP LOCKED)
UPDATE alarms SET escalation_level = least(escalation_level + 1, due.tiers), escalated_at = clock_timestamp()
FROM due WHERE alarms.id = due.id
RETURNING alarms.id, alarms.state::text, alarms.escalation_level
"""


async def escalations(conn: AsyncConn, vault: Vault) -> int:
    async with _transaction(conn):
        rows = await (await conn.execute(_ESCALATIONS)).fetchall()
        for alarm_id, state, level in rows:
            why = "not acknowledged" if state == State.RAISED else "acknowledged, but nobody is attending"
            await changes.escalated(conn, vault=vault, alarm_id=alarm_id, state=State(state), level=level, why=why)
    return len(rows)


async def _now(conn: AsyncConn) -> datetime:
    row = await (await conn.execute("SELECT now()")).fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


JOBS: tuple[tuple[str, Callable[[AsyncConn, Vault], Awaitable[int]]], ...] = (
    ("bed_exits", bed_exits),
    ("vitals", vitals),
    ("wander", wander),
    ("no_presence", no_presence),
    ("gateways", gateways),
    ("escalations", escalations),
)


async def tick(conn: AsyncConn, *, vault: Vault) -> dict[str, int]:
    """Run every job once; a failing job is logged and the others still run. ``vault`` seals the alarms' text."""
    results: dict[str, int] = {}
    for name, job in JOBS:
        try:
            results[name] = await job(conn, vault)
        except psycopg.DatabaseError as exc:
            if isinstance(exc, psycopg.OperationalError):
                raise
            log.exception("alarm ticker: job %s failed", name)
            results[name] = -1
    return results


async def run(database_url: str, *, vault: Vault, period_s: float = 5.0) -> None:
    """Tick every ``period_s`` until cancelled; any error is logged and the loop reconnects after a pause."""
    retry = Retry("alarm ticker")
    while True:
        try:
            async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
                while True:
                    await tick(conn, vault=vault)
                    retry.ok()
                    await asyncio.sleep(period_s)
        except Exception as exc:  # noqa: BLE001 - logged by Retry, with the traceback when not the database
            await retry.after(exc)
