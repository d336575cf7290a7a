"""How long ``eldercare db rekey`` takes, table by table, and what it costs the platform running beside it.

    .venv/bin/python bench/rekey.py [--beds 300 --hours 10 --rounds 1 --probe-idle-s 30]

Starts a throwaway stack and writes a home sealed with the stack's data key (``bench/rekey_world.py``: with the
defaults 2.16 M bed readings of 300 beds, 1.84 M of them sealed, 37,200 wristband fixes, 216,000 hourly and 109,500
daily roll-ups, 18,000 alarms and 36,000 alarm changes, residents, contacts, visits and the rest). Each round then:

1. the baseline, a plain rewrite: rekey's own walkers (``rekey._rekey_keyed`` and ``rekey._rekey_time``: the same
   batches, the same SELECT ... FOR NO KEY UPDATE and UPDATE ... FROM unnest) with a vault that hands every value back
   as it is, so that every row is read, sent back and updated without any crypto, then the same ``VACUUM (ANALYZE)``;
2. a rotation: a new key with the old one as its previous key, and ``rekey.rekey()`` end to end (key check, every
   table, the registers' hashes, ``VACUUM (ANALYZE)``, the rotation finished), per table from its log lines.

Before each, the sealed tables are rewritten packed (``VACUUM (FULL, ANALYZE)``, not timed), as ingest's COPY leaves
them, so that neither pass finds the free space the other left (an UPDATE that finds room on its page skips the
indexes). Printed per table and overall: rows/s, wall, this process's CPU (its thread) and the database's (the
postmaster and all its processes, ``/proc``), and rekey over the plain rewrite as a ratio. Then, unless
``--probe-idle-s 0``, an alarm lane beside it: a separate process inserting an event and an inbox row and committing
(with a NOTIFY, as ingest's alarm lane does), 50 times a second, alone for ``--probe-idle-s`` seconds, beside a plain
rewrite and beside a rotation; its commit latency p50/p99/max in each. Last, an extrapolation to a home of 200 beds
from the measured rates.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ingest_support import TICK, postgres_ticks, quantile, throwaway_stack
from bench.rekey_world import FIX_EVERY_S, READING_EVERY_S, seed

from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import DecryptionError, Vault
from eldercare.platform.db import rekey
from eldercare.platform.stack.model import StackInfo

PROBE_EVERY_S = 0.02
HOME_BEDS = 200  # the extrapolation's home
RAW_DAYS = 30  # ingest_raw_retention_days' default: bed readings and fixes older than that are dropped
SEALED_SHARE = 0.85  # of bed readings: in bed, with rates (the world's mix)
WRISTBAND_SHARE = 0.9 * 0.1  # of beds: occupied, and a resident at risk of wandering


class PlainVault(Vault):
    """The baseline's vault: every value handed back as it is (rewritten unchanged), no crypto."""

    __slots__ = ()

    def reseal(self, blob: bytes, *, column: str, row: str | None = None) -> bytes | None:
        return bytes(blob)

    def reseal_vitals(
        self, micros: Sequence[int], devices: Sequence[int], blobs: Sequence[bytes]
    ) -> list[bytes | DecryptionError | None]:
        return [bytes(b) for b in blobs]

    def decrypt(self, blob: bytes, *, column: str) -> str:
        raise DecryptionError("the plain rewrite opens nothing")  # residents' hashes: left as they are


@dataclass(frozen=True, slots=True)
class Step:
    table: str
    rows: int
    changed: int
    wall: float
    here: float  # this thread's CPU seconds
    database: float  # the database's CPU seconds


@dataclass(slots=True)
class Meter:
    """Wall, this thread's CPU and the database's CPU since the last mark."""

    stack: StackInfo
    steps: list[Step] = field(default_factory=list)
    _at: tuple[float, float, int] = (0.0, 0.0, 0)

    def start(self) -> None:
        self._at = (time.perf_counter(), time.thread_time(), postgres_ticks(self.stack))

    def mark(self, table: str, rows: int, changed: int) -> None:
        now = (time.perf_counter(), time.thread_time(), postgres_ticks(self.stack))
        wall, here, ticks = (b - a for a, b in zip(self._at, now, strict=True))
        self.steps.append(Step(table, rows, changed, wall, here, ticks / TICK))
        self._at = now


class _Marks(logging.Handler):
    """rekey's log line for each table it finished ("%s: %d rows read, %d sealed again"), as a mark."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(logging.INFO)
        self.meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%s: %d rows read, %d sealed again" and isinstance(record.args, tuple):
            table, rows, changed = record.args
            self.meter.mark(str(table), int(str(rows)), int(str(changed)))


def packed(url: str) -> None:
    """The sealed tables rewritten packed, their dead rows gone (not timed)."""
    names = [t.table for t in rekey.sealed_tables()]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.SQL(", ").join(map(sql.Identifier, names))))
    time.sleep(1.0)  # its backend gone and reaped: its CPU counted once (postgres_ticks)


def plain_pass(stack: StackInfo, key: bytes) -> list[Step]:
    """The baseline: every sealed value read and written back unchanged, by rekey's own walkers, then vacuumed."""
    meter, vault = Meter(stack), PlainVault(key)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        meter.start()
        for table in rekey.sealed_tables():
            if isinstance(table, rekey.KeyedTable):
                done = rekey._rekey_keyed(conn, vault, table)
            else:
                done = rekey._rekey_time(conn, vault, table)
            meter.mark(done.table, done.rows, done.resealed)
        names = sql.SQL(", ").join(sql.Identifier(s.table) for s in meter.steps if s.changed)
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(names))
        meter.mark("(vacuum)", 0, 0)
    return meter.steps


def rekey_pass(stack: StackInfo, key: bytes, previous: bytes) -> list[Step]:
    """``rekey.rekey()`` end to end, per table from its log lines; what follows the last table (the registers, the
    VACUUM, finishing the rotation) as one more step."""
    meter = Meter(stack)
    marks = _Marks(meter)
    logger = logging.getLogger(rekey.__name__)
    logger.addHandler(marks)
    logger.setLevel(logging.INFO)
    try:
        meter.start()
        rotation = rekey.rekey(stack.database_url, data_key=key, previous=previous)
        meter.mark("(registers, vacuum)", 0, 0)
    finally:
        logger.removeHandler(marks)
    unreadable = sum(t.unreadable for t in rotation.tables)
    assert rotation.finished and not unreadable, (rotation.finished, unreadable)
    readings = next(s for s in meter.steps if s.table == "bed_readings")
    assert readings.changed == readings.rows > 0, readings  # every sealed reading was under the previous key
    return meter.steps


def _total(steps: list[Step]) -> Step:
    return Step(
        "all",
        sum(s.rows for s in steps),
        sum(s.changed for s in steps),
        sum(s.wall for s in steps),
        sum(s.here for s in steps),
        sum(s.database for s in steps),
    )


def report(plain: list[Step], rotated: list[Step]) -> None:
    head = f"{'table':24}{'rows':>11}{'plain s':>9}{'rows/s':>10}{'rekey s':>9}{'rows/s':>10}{'ratio':>7}"
    print(head + f"{'CPU s here':>11}{'CPU s db':>10}{'(plain: here':>13}{'db)':>7}")
    by_table = {s.table: s for s in plain}
    for r in [*rotated, _total(rotated)]:
        p = _total(plain) if r.table == "all" else by_table.get(r.table)
        if p is None:  # rekey's last step: registers and VACUUM, against the baseline's VACUUM
            p = by_table["(vacuum)"]
        rate = f"{r.rows / r.wall:10,.0f}" if r.rows else f"{'':10}"
        base = f"{p.rows / p.wall:10,.0f}" if p.rows else f"{'':10}"
        ratio = r.wall / p.wall if p.wall else float("nan")
        print(f"{r.table:24}{r.rows:11,}{p.wall:9.2f}{base}{r.wall:9.2f}{rate}{ratio:6.2f}x"
              f"{r.here:11.2f}{r.database:10.2f}{p.here:13.2f}{p.database:7.2f}")  # fmt: skip


def probe(url: str, device: int, home: int, gateway: int, out: Connection, stop: Any) -> None:  # noqa: ANN401
    """An alarm lane: an event, an inbox row and a NOTIFY committed every 20 ms; the latencies (ms) to ``out``."""
    took: list[float] = []
    # named, as a service's connections are: `db rekey` refuses to run beside a connection of its role with no name
    with psycopg.connect(url, application_name="bench-alarm-lane") as conn:
        deadline = time.perf_counter()
        while not stop.is_set():
            start = time.perf_counter()
            conn.execute(
                "INSERT INTO device_events (time, device_id, gateway_pk, kind) VALUES (now(), %s, %s, 'button')",
                (device, gateway),
            )
            conn.execute(
                "INSERT INTO alarm_inbox (event_time, device_id, institution_id, kind)"
                " VALUES (now(), %s, %s, 'button')",
                (device, home),
            )
            conn.execute("SELECT pg_notify('bench_probe', '')")
            conn.commit()
            took.append((time.perf_counter() - start) * 1e3)
            deadline += PROBE_EVERY_S
            time.sleep(max(0.0, deadline - time.perf_counter()))
    out.send(took)


def beside(url: str, work: Callable[[], object]) -> tuple[list[float], object]:
    """``work`` run with the alarm lane in another process; the lane's latencies and ``work``'s result."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT d.id, d.institution_id, g.id FROM devices d JOIN gateways g USING (institution_id)"
            " WHERE d.kind = 'bed_sensor' ORDER BY d.id LIMIT 1"
        ).fetchone()
    assert row is not None
    ctx = mp.get_context("spawn")
    stop, (theirs, ours) = ctx.Event(), ctx.Pipe(duplex=False)
    lane = ctx.Process(target=probe, args=(url, *row, ours, stop), name="alarm-lane")
    lane.start()
    time.sleep(1.0)  # connected and looping
    try:
        result = work()
    finally:
        stop.set()
        took: list[float] = theirs.recv()
        lane.join(10)
    return took[25:], result  # the first half second: connecting


def lane_line(name: str, took: list[float]) -> str:
    return (f"  {name:26} {len(took):6,} commits  p50 {quantile(took, 0.5):6.1f} ms  p99 {quantile(took, 0.99):6.1f} ms"
            f"  max {max(took):7.1f} ms")  # fmt: skip


def extrapolate(rotated: list[Step], world_beds: int) -> None:
    """A home of ``HOME_BEDS`` beds, each table's rows over the measured rate (and CPU per row)."""
    day_readings = 86_400 // READING_EVERY_S
    rows = {s.table: s.rows * HOME_BEDS / world_beds for s in rotated if s.rows}  # per bed or per resident
    rows["bed_readings"] = HOME_BEDS * day_readings * RAW_DAYS * SEALED_SHARE
    rows["locations"] = HOME_BEDS * WRISTBAND_SHARE * 86_400 / FIX_EVERY_S * RAW_DAYS
    rows["bed_hourly"] = HOME_BEDS * 24 * 365
    rows["bed_daily"] = HOME_BEDS * 365
    measured = {s.table: s for s in rotated}
    world_readings = measured["bed_readings"].rows
    tail = measured["(registers, vacuum)"]

    def cost(raw_days: float) -> tuple[float, float, float, float]:
        scaled = dict(rows)
        scaled["bed_readings"] *= raw_days / RAW_DAYS
        scaled["locations"] *= raw_days / RAW_DAYS
        wall = here = db = 0.0
        for table, n in scaled.items():
            s = measured[table]
            wall, here, db = wall + n / s.rows * s.wall, here + n / s.rows * s.here, db + n / s.rows * s.database
        grow = scaled["bed_readings"] / world_readings  # the VACUUM follows the readings
        return sum(scaled.values()), wall + tail.wall * grow, here + tail.here * grow, db + tail.database * grow

    print(f"\nEXTRAPOLATION (not measured) to a home of {HOME_BEDS} beds, from this run's rate per table: a reading"
          f" per bed every {READING_EVERY_S} s, {SEALED_SHARE:.0%} sealed; {WRISTBAND_SHARE:.0%} of beds with a"
          f" wristband fix every {FIX_EVERY_S} s; a year of hourly and daily roll-ups; alarms, visits and the rest as"
          f" here per bed")  # fmt: skip
    for label, days in ((f"raw readings kept {RAW_DAYS} days (the default retention)", RAW_DAYS),
                        ("raw readings kept a year (retention set to 365 days)", 365)):  # fmt: skip
        n, wall, here, db = cost(days)
        print(f"  {label}: {n / 1e6:,.1f} M sealed values, {rows['bed_readings'] * days / RAW_DAYS / 1e6:,.1f} M of"
              f" them readings: about {wall / 60:,.0f} min ({wall / 3600:.1f} h); CPU {here / 60:,.0f} min here,"
              f" {db / 60:,.0f} min in the database")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, default=300, help="in homes of 100")
    parser.add_argument("--hours", type=float, default=10.0, help="of bed readings every 5 s and fixes every 30 s")
    parser.add_argument("--rollup-days", type=int, default=30, help="of hourly roll-ups (the daily: a year)")
    parser.add_argument("--rounds", type=int, default=1, help="plain rewrite and rotation, without the alarm lane")
    parser.add_argument("--probe-idle-s", type=float, default=30.0, help="0: no alarm lane (and one rotation less)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    with throwaway_stack() as info:
        url = info.database_url
        key = SecuritySettings(_env_file=info.state_dir / "eldercare.env").key_bytes()
        started = time.perf_counter()
        world = seed(url, Vault(key), beds=args.beds, hours=args.hours, rollup_days=args.rollup_days,
                     rng=random.Random(5))  # fmt: skip
        print(f"home: {world.beds} beds, {world.residents} residents, {world.readings:,} bed readings;"
              f" written in {time.perf_counter() - started:.0f} s")  # fmt: skip
        rotated: list[Step] = []
        for n in range(args.rounds):
            packed(url)
            plain = plain_pass(info, key)
            packed(url)
            new = os.urandom(32)
            rotated = rekey_pass(info, new, key)
            key = new
            p, r = _total(plain), _total(rotated)
            print(f"\nround {n + 1}: rekey {r.wall:.1f} s, {r.rows / r.wall:,.0f} rows/s, {r.wall / p.wall:.2f}x the"
                  f" plain rewrite ({p.wall:.1f} s); CPU here {r.here:.1f} s ({r.here / p.here:.2f}x), database"
                  f" {r.database:.1f} s ({r.database / p.database:.2f}x)")  # fmt: skip
            report(plain, rotated)
        if args.probe_idle_s > 0:
            print("\nalarm lane (another process, an event + inbox row + NOTIFY committed every 20 ms):")
            idle, _ = beside(url, lambda: time.sleep(args.probe_idle_s))
            print(lane_line("alone", idle))
            packed(url)
            took, _ = beside(url, lambda: plain_pass(info, key))
            print(lane_line("beside the plain rewrite", took))
            packed(url)
            new = os.urandom(32)
            took, _ = beside(url, lambda: rekey_pass(info, new, key))
            print(lane_line("beside rekey", took))
            print(f"  p99 beside rekey / alone: {quantile(took, 0.99) / quantile(idle, 0.99):.2f}x")
    if rotated:
        extrapolate(rotated, world.beds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
