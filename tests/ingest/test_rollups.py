"""Hourly and daily roll-ups against the raw data computed here, independently, in Python: on the watermark's
way forward, for late data, re-run, rebuilt, and never from raw data older than the retention."""

from __future__ import annotations

import random
import struct
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest import locks, retention, rollups
from eldercare.ingest.cli import parse_range, parse_when
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.rows import HOUR_MS
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import ingest_cli, now_ms

TZ = "Asia/Shanghai"
DAY_S = 86_400.0
_seq = iter(range(10**9))


def _f32(value: float) -> float:
    return float(struct.unpack("!f", struct.pack("!f", value))[0])


def _run(conn: psycopg.Connection[Any], *, lag_s: float = 120, retention_days: float = 30) -> rollups.RollupResult:
    """Run until the watermark has caught up (the first run of a session may have history to roll up)."""
    while True:
        result = rollups.run(conn, lag_s=lag_s, timezone=TZ, raw_retention_s=retention_days * DAY_S)
        if result.hours_rolled < 48:
            return result


def _samples(world: LoadWorld, hour: int, rng: random.Random, count: int) -> list[m.BedSample]:
    beds = world.gateways[0].beds[:3]
    out = []
    for _ in range(count):
        present = rng.random() < 0.7
        hr = round(rng.uniform(50, 100), 1) if present and rng.random() < 0.9 else None
        rr = round(rng.uniform(10, 25), 1) if present and rng.random() < 0.9 else None
        ts = hour * HOUR_MS + rng.randrange(HOUR_MS)
        out.append(m.BedSample(dev=rng.choice(beds), ts=ts, presence=present, hr=hr, rr=rr))
    return out


def _store(db: str, vault: Vault, world: LoadWorld, msgs: Sequence[m.DeviceMessage], *, alarm: bool = False) -> None:
    gateway = world.gateways[0]
    channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
    topic = topics.uplink(world.institution_code, gateway.gateway_id, channel)
    items = [
        Received(topic, m.encode(m.Frame(v=1, epoch=77, seq=next(_seq), sent=now_ms(), msgs=list(msgs[i : i + 50]))))
        for i in range(0, len(msgs), 50)
    ]
    with psycopg.connect(db, autocommit=True) as conn:
        BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, items)


def _ids(db: str, world: LoadWorld) -> dict[str, int]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT code, id FROM devices WHERE institution_id = %s", (world.institution_id,))
        return dict(rows.fetchall())


def _expected_bed(samples: list[m.BedSample], ids: dict[str, int]) -> dict[tuple[int, int], tuple[Any, ...]]:
    groups: dict[tuple[int, int], list[m.BedSample]] = defaultdict(list)
    for s in samples:
        groups[(ids[s.dev], s.ts // HOUR_MS)].append(s)
    expected = {}
    for key, group in groups.items():
        hr = [_f32(s.hr) for s in group if s.hr is not None]
        rr = [_f32(s.rr) for s in group if s.rr is not None]
        expected[key] = (
            len(group),
            len({s.ts // 60_000 for s in group}),
            len({s.ts // 60_000 for s in group if s.presence}),
            len(hr), min(hr, default=None), max(hr, default=None), sum(hr) if hr else None,
            len(rr), min(rr, default=None), max(rr, default=None), sum(rr) if rr else None,
        )  # fmt: skip
    return expected


def _local_day(hour: int) -> date:
    return datetime.fromtimestamp(hour * 3600, ZoneInfo(TZ)).date()


def _expected_bed_daily(hourly: dict[tuple[int, int], tuple[Any, ...]]) -> dict[tuple[int, date], tuple[Any, ...]]:
    days: dict[tuple[int, date], list[tuple[Any, ...]]] = defaultdict(list)
    for (device, hour), row in hourly.items():
        days[(device, _local_day(hour))].append(row)
    out = {}
    for key, rows in days.items():
        hr_mins = [r[4] for r in rows if r[4] is not None]
        rr_mins = [r[8] for r in rows if r[8] is not None]
        out[key] = (
            sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows),
            sum(r[3] for r in rows), min(hr_mins, default=None),
            max((r[5] for r in rows if r[5] is not None), default=None),
            sum(r[6] for r in rows if r[6] is not None) if hr_mins else None,
            sum(r[7] for r in rows), min(rr_mins, default=None),
            max((r[9] for r in rows if r[9] is not None), default=None),
            sum(r[10] for r in rows if r[10] is not None) if rr_mins else None,
        )  # fmt: skip
    return out


_BED_COLUMNS = (
    "samples, observed_minutes, occupied_minutes, hr_count, hr_min, hr_max, hr_sum, rr_count, rr_min, rr_max, rr_sum"
)


def _actual_bed(db: str, ids: dict[str, int]) -> dict[tuple[int, int], tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            f"SELECT device_id, extract(epoch FROM bucket)::bigint / 3600, {_BED_COLUMNS}"
            " FROM bed_hourly WHERE device_id = ANY(%s)",
            (list(ids.values()),),
        ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _actual_bed_daily(db: str, ids: dict[str, int]) -> dict[tuple[int, date], tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            f"SELECT device_id, day, {_BED_COLUMNS} FROM bed_daily WHERE device_id = ANY(%s)", (list(ids.values()),)
        ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _same(actual: dict[Any, tuple[Any, ...]], expected: dict[Any, tuple[Any, ...]]) -> None:
    assert set(actual) == set(expected)
    for key, row in expected.items():
        got = actual[key]
        assert [v is None for v in got] == [v is None for v in row], (key, got, row)
        assert [v for v in got if v is not None] == pytest.approx([v for v in row if v is not None], rel=1e-6), key


def _device_hourly(db: str, ids: dict[str, int]) -> dict[tuple[int, int], tuple[int, int]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT device_id, extract(epoch FROM bucket)::bigint / 3600, messages, active_minutes"
            " FROM device_hourly WHERE device_id = ANY(%s)",
            (list(ids.values()),),
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_late_data_is_rolled_up_and_matches_the_raw_data(db: str, vault: Vault, world: LoadWorld) -> None:
    rng = random.Random(11)
    ids = _ids(db, world)
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn)  # the watermark is now at the last closed hour: everything below is "late"
    first = (now_ms() - 30 * HOUR_MS) // HOUR_MS
    samples = [s for hour in range(first, first + 4) for s in _samples(world, hour, rng, 120)]
    button = world.gateways[0].button
    battery = [m.Battery(dev=world.gateways[0].beds[0], ts=first * HOUR_MS + 60_000 * i, level=90) for i in range(3)]
    presses = [
        m.Button(dev=button, ts=(first + 1) * HOUR_MS + 5_000 * i, action=m.ButtonAction.PRESS) for i in range(2)
    ]
    _store(db, vault, world, [*samples, *battery])
    _store(db, vault, world, [*presses], alarm=True)
    with psycopg.connect(db, autocommit=True) as conn:
        result = _run(conn)
    assert result.late_hours >= 4
    expected = _expected_bed(samples, ids)
    _same(_actual_bed(db, ids), expected)
    _same(_actual_bed_daily(db, ids), _expected_bed_daily(expected))

    messages: dict[tuple[int, int], list[int]] = defaultdict(list)
    for msg in [*samples, *battery, *presses]:
        messages[(ids[msg.dev], msg.ts // HOUR_MS)].append(msg.ts // 60_000)
    assert _device_hourly(db, ids) == {key: (len(v), len(set(v))) for key, v in messages.items()}

    # a re-run changes nothing, and neither does a rebuild of the range from raw data
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn)
        rollups.rebuild(
            conn,
            start=datetime.fromtimestamp(first * 3600, UTC),
            end=datetime.fromtimestamp((first + 4) * 3600, UTC),
            timezone=TZ,
        )
    _same(_actual_bed(db, ids), expected)
    _same(_actual_bed_daily(db, ids), _expected_bed_daily(expected))

    # later still, more data for one of those hours: that hour and its day are recomputed
    later = _samples(world, first + 1, rng, 40)
    _store(db, vault, world, list(later))
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn)
    expected = _expected_bed([*samples, *later], ids)
    _same(_actual_bed(db, ids), expected)
    _same(_actual_bed_daily(db, ids), _expected_bed_daily(expected))


def test_the_hour_in_progress_is_rolled_up_when_it_closes_and_again_when_more_comes(
    db: str, vault: Vault, world: LoadWorld
) -> None:
    rng = random.Random(12)
    ids = _ids(db, world)
    hour = now_ms() // HOUR_MS
    samples = _samples(world, hour, rng, 60)
    samples = [s for s in samples if s.ts < now_ms()]  # nothing from the future
    _store(db, vault, world, list(samples))
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, lag_s=120)
        assert not any(h == hour for _, h in _actual_bed(db, ids))  # not over yet: not rolled up
        result = rollups.run(conn, lag_s=-3600, timezone=TZ, raw_retention_s=30 * DAY_S)  # as if it were over
    assert result.hours_rolled >= 1
    _same(_actual_bed(db, ids), _expected_bed(samples, ids))
    more = [m.BedSample(dev=world.gateways[0].beds[0], ts=now_ms() - 5, presence=True, hr=66.0)]
    _store(db, vault, world, list(more))  # recorded as (hour, all devices): the hour is recomputed whole
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, lag_s=120)
    _same(_actual_bed(db, ids), _expected_bed([*samples, *more], ids))


def test_an_hour_older_than_the_raw_retention_is_never_recomputed(db: str, vault: Vault, world: LoadWorld) -> None:
    rng = random.Random(13)
    ids = _ids(db, world)
    hour = (now_ms() - 3 * 24 * HOUR_MS) // HOUR_MS
    samples = _samples(world, hour, rng, 50)
    _store(db, vault, world, list(samples))
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, retention_days=30)
    before = _actual_bed(db, ids)
    _same(before, _expected_bed(samples, ids))
    with psycopg.connect(db, autocommit=True) as conn:  # most of the hour's raw data is gone (a dropped chunk)
        conn.execute("DELETE FROM bed_readings WHERE device_id = ANY(%s)", (list(ids.values()),))
    _store(db, vault, world, _samples(world, hour, rng, 1))  # and one late reading arrives for it
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, retention_days=2)
    assert _actual_bed(db, ids) == before  # the roll-up is all that is left of that hour: kept as it was


@pytest.mark.parametrize("job", ["rollups", "retention"])
def test_a_rebuild_waits_while_the_roll_up_or_retention_job_runs(db: str, job: str) -> None:
    """The roll-up job deletes and inserts the same hours: side by side, one would fail on the other's rows (seen
    when a test rebuilt a backfilled month while ingest's schedule rolled up). The retention job could drop a
    chunk the rebuild is about to read, and the rebuild would take the hours' roll-ups with it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rebuilt = threading.Event()

    def rebuild() -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            rollups.rebuild(conn, start=start, end=start.replace(hour=2), timezone=TZ)
        rebuilt.set()

    with psycopg.connect(db) as holder:  # the job's transaction, holding its lock
        assert locks.hold(holder, job, wait=False)
        thread = threading.Thread(target=rebuild)
        thread.start()
        with psycopg.connect(db, autocommit=True) as watch:
            for _ in range(300):
                waiting = watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                if (row := waiting.fetchone()) is not None and row[0] == 1:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the rebuild did not wait for the lock")
        assert not rebuilt.is_set()
        holder.rollback()
    thread.join(30)
    assert rebuilt.is_set()


def test_a_rebuild_refuses_the_hours_of_a_chunk_retention_dropped(db: str, world: LoadWorld) -> None:
    """The rebuild deletes an hour's roll-up before it recomputes it: over a dropped chunk it would replace what
    is left of the dropped readings with nothing. Retention records each chunk it drops; the rebuild reads that."""
    ids = _ids(db, world)
    bed = ids[world.gateways[0].beds[0]]
    hour = (now_ms() - 160 * 24 * HOUR_MS) // HOUR_MS  # a day no other test writes to
    day = _local_day(hour)

    def mine() -> tuple[dict[Any, tuple[Any, ...]], dict[Any, tuple[Any, ...]]]:
        hourly = {k: v for k, v in _actual_bed(db, ids).items() if k == (bed, hour)}
        return hourly, {k: v for k, v in _actual_bed_daily(db, ids).items() if k == (bed, day)}

    with psycopg.connect(db, autocommit=True) as conn:
        for minute in range(0, 60, 10):
            conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence, heart_rate) VALUES (%s, %s, true, 61)",
                (rollups.hour_start(hour) + timedelta(minutes=minute), bed),
            )
        done = rollups.rebuild(conn, start=rollups.hour_start(hour), end=rollups.hour_start(hour + 1), timezone=TZ)
        assert (done.hours, done.days) == (1, 1)
        before = mine()
        assert before[0][(bed, hour)][:3] == (6, 6, 6)  # samples, observed and occupied minutes
        dropped = retention.run(
            conn, raw_retention_s=30 * DAY_S, events_retention_s=365 * DAY_S, frames_retention_s=30 * DAY_S
        )
        assert dropped.chunks_dropped["bed_readings"] >= 1
        recorded = conn.execute(
            "SELECT range_start, range_end FROM raw_dropped WHERE table_name = 'bed_readings'"
            " AND range_start <= %(t)s AND range_end > %(t)s",
            {"t": rollups.hour_start(hour)},
        ).fetchall()
        assert len(recorded) == 1, recorded
        chunk_start, chunk_end = recorded[0]
        assert chunk_end - chunk_start == timedelta(days=1)  # the table's chunk interval

        with pytest.raises(rollups.RawDataGoneError, match="bed_readings") as refused:
            rollups.rebuild(conn, start=chunk_start - timedelta(hours=3), end=chunk_end, timezone=TZ)
        assert [(d.table, d.start, d.end) for d in refused.value.dropped if d.table == "bed_readings"] == [
            ("bed_readings", chunk_start, chunk_end)
        ]
        assert mine() == before  # nothing was deleted

        rollups.rebuild(conn, start=chunk_end, end=chunk_end + timedelta(hours=2), timezone=TZ)  # after it: fine

        # told that the raw data is restored, it rebuilds, from what raw data there is: here, none
        rollups.rebuild(conn, start=chunk_start, end=chunk_end, timezone=TZ, over_dropped=True)
        assert mine()[0] == {}


def test_the_rebuild_cli_parses_its_range_and_refuses_dropped_hours(stack: StackInfo, db: str) -> None:
    assert parse_when("2026-10-01", TZ) == datetime(2026, 10, 1, tzinfo=ZoneInfo(TZ))
    assert parse_when("2026-10-01T08:30+00:00", TZ) == datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a date"):
        parse_when("1 Oct", TZ)
    with pytest.raises(ValueError, match="must be later"):
        parse_range("2026-10-02", "2026-10-01", TZ)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return ingest_cli(stack, "rebuild", *args)

    bad = cli("--from", "2026-10-02", "--until", "2026-10-01")
    assert bad.returncode == 2 and "must be later than --from" in bad.stderr

    old = datetime.fromtimestamp(now_ms() / 1000 - 230 * DAY_S, ZoneInfo(TZ)).date()  # a day no other test writes to
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO raw_dropped (table_name, range_start, range_end) VALUES ('locations', %s, %s)"
            " ON CONFLICT DO NOTHING",
            (datetime(old.year, old.month, old.day, tzinfo=UTC), datetime(old.year, old.month, old.day, tzinfo=UTC)
             + timedelta(days=1)),
        )  # fmt: skip
    refused = cli("--from", old.isoformat(), "--until", (old + timedelta(days=1)).isoformat())
    assert refused.returncode == 1, refused.stderr
    assert "refused: raw data of 1 chunk(s)" in refused.stderr and "locations" in refused.stderr
    assert "--over-dropped" in refused.stderr

    after = old + timedelta(days=2)
    done = cli("--from", after.isoformat(), "--until", (after + timedelta(days=1)).isoformat())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rebuilt 24 hours (") and "and 1 days (Asia/Shanghai)" in done.stdout
