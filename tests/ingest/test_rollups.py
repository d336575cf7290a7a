"""Hourly and daily roll-ups against the raw data computed here, independently, in Python: on the watermark's
way forward, for late data, re-run, rebuilt, and never from raw data older than the retention. The rates'
statistics are read by opening the roll-ups' sealed summaries (nothing of them is in clear)."""

from __future__ import annotations

import math
import random
import struct
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
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
from eldercare.platform.crypto import BED_DAILY_VITALS, BED_HOURLY_VITALS, Vault, VitalsSummary
from eldercare.platform.sealed_vitals import seal_reading, summary_row
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import forget_rates, ingest_cli, now_ms

TZ = "Asia/Shanghai"
DAY_S = 86_400.0
_seq = iter(range(10**9))


@pytest.fixture
def world(world: LoadWorld, db: str) -> Iterator[LoadWorld]:
    """The home of the conftest, whose readings and roll-ups (rates: health data) are removed afterwards."""
    yield world
    forget_rates(db, world)


def _f32(value: float) -> float:
    return float(struct.unpack("!f", struct.pack("!f", value))[0])


def _opened(rate: float) -> float:
    """A rate as its sealed block gives it back: in hundredths."""
    return int(rate * 100 + 0.5) / 100


def _run(
    conn: psycopg.Connection[Any], vault: Vault, *, lag_s: float = 120, retention_days: float = 30
) -> rollups.RollupResult:
    """Run until the watermark has caught up (the first run of a session may have history to roll up)."""
    while True:
        result = rollups.run(conn, vault=vault, lag_s=lag_s, timezone=TZ, raw_retention_s=retention_days * DAY_S)
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


def _expected(
    samples: list[m.BedSample], ids: dict[str, int], period: Callable[[int], Any]
) -> dict[tuple[int, Any], tuple[Any, ...]]:
    """Per (device, period of a reading's ms): samples, observed and occupied minutes, then for each rate its count,
    minimum, maximum and mean (None for none), as the roll-ups' sealed summaries should give them back."""
    groups: dict[tuple[int, Any], list[m.BedSample]] = defaultdict(list)
    for s in samples:
        groups[(ids[s.dev], period(s.ts))].append(s)
    expected = {}
    for key, group in groups.items():
        hr = [_opened(s.hr) for s in group if s.hr is not None]
        rr = [_opened(s.rr) for s in group if s.rr is not None]
        expected[key] = (
            len(group),
            len({s.ts // 60_000 for s in group}),
            len({s.ts // 60_000 for s in group if s.presence}),
            *_rate(hr),
            *_rate(rr),
        )
    return expected


def _rate(values: list[float]) -> tuple[Any, ...]:
    if not values:
        return 0, None, None, None
    return len(values), _f32(min(values)), _f32(max(values)), sum(values) / len(values)


def _expected_bed(samples: list[m.BedSample], ids: dict[str, int]) -> dict[tuple[int, Any], tuple[Any, ...]]:
    return _expected(samples, ids, lambda ts: ts // HOUR_MS)


def _local_day(hour: int) -> date:
    return datetime.fromtimestamp(hour * 3600, ZoneInfo(TZ)).date()


def _expected_bed_daily(samples: list[m.BedSample], ids: dict[str, int]) -> dict[tuple[int, Any], tuple[Any, ...]]:
    return _expected(samples, ids, lambda ts: datetime.fromtimestamp(ts / 1000, ZoneInfo(TZ)).date())


_BED_COLUMNS = (
    "samples, observed_minutes, occupied_minutes, hr_count, rr_count, vitals_enc,"
    " hr_min, hr_max, hr_sum, rr_min, rr_max, rr_sum"
)


def _opened_rows(vault: Vault, rows: list[tuple[Any, ...]], column: str) -> dict[tuple[int, Any], tuple[Any, ...]]:
    """Roll-up rows ``(device, key, period, samples, ..., vitals_enc, clear statistics...)`` as :func:`_expected`
    gives them, their rates opened; and nothing of the rates in clear."""
    out = {}
    for device, key, period, samples, observed, occupied, hr_count, rr_count, sealed, *clear in rows:
        assert clear == [None] * 6, f"rates in clear in {column} of device {device} at {period}: {clear}"
        if sealed is None:
            assert hr_count == rr_count == 0, (device, period)
            summary = VitalsSummary(math.nan, math.nan, 0.0, math.nan, math.nan, 0.0)
        else:
            summary = vault.open_vitals_summary(sealed, column=column, row=summary_row(device, period))
        assert math.isnan(summary.hr_min) == (hr_count == 0) and math.isnan(summary.rr_min) == (rr_count == 0)
        out[(device, key)] = (
            samples, observed, occupied,
            hr_count, *_stats(summary.hr_min, summary.hr_max, summary.hr_sum, hr_count),
            rr_count, *_stats(summary.rr_min, summary.rr_max, summary.rr_sum, rr_count),
        )  # fmt: skip
    return out


def _stats(low: float, high: float, total: float, count: int) -> tuple[Any, ...]:
    if count == 0:
        assert total == 0.0
        return None, None, None
    return low, high, total / count


def _actual_bed(db: str, vault: Vault, ids: dict[str, int]) -> dict[tuple[int, Any], tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            f"SELECT device_id, extract(epoch FROM bucket)::bigint / 3600, bucket, {_BED_COLUMNS}"
            " FROM bed_hourly WHERE device_id = ANY(%s)",
            (list(ids.values()),),
        ).fetchall()
    return _opened_rows(vault, rows, BED_HOURLY_VITALS)


def _actual_bed_daily(db: str, vault: Vault, ids: dict[str, int]) -> dict[tuple[int, Any], tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            f"SELECT device_id, day, day, {_BED_COLUMNS} FROM bed_daily WHERE device_id = ANY(%s)",
            (list(ids.values()),),
        ).fetchall()
    return _opened_rows(vault, rows, BED_DAILY_VITALS)


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
        _run(conn, vault)  # the watermark is now at the last closed hour: everything below is "late"
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
        result = _run(conn, vault)
    assert result.late_hours >= 4
    expected = _expected_bed(samples, ids)
    _same(_actual_bed(db, vault, ids), expected)
    _same(_actual_bed_daily(db, vault, ids), _expected_bed_daily(samples, ids))

    messages: dict[tuple[int, int], list[int]] = defaultdict(list)
    for msg in [*samples, *battery, *presses]:
        messages[(ids[msg.dev], msg.ts // HOUR_MS)].append(msg.ts // 60_000)
    assert _device_hourly(db, ids) == {key: (len(v), len(set(v))) for key, v in messages.items()}

    # a re-run changes nothing, and neither does a rebuild of the range from raw data
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, vault)
        rollups.rebuild(
            conn,
            vault=vault,
            start=datetime.fromtimestamp(first * 3600, UTC),
            end=datetime.fromtimestamp((first + 4) * 3600, UTC),
            timezone=TZ,
        )
    _same(_actual_bed(db, vault, ids), expected)
    _same(_actual_bed_daily(db, vault, ids), _expected_bed_daily(samples, ids))

    # later still, more data for one of those hours: that hour and its day are recomputed
    later = _samples(world, first + 1, rng, 40)
    _store(db, vault, world, list(later))
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, vault)
    _same(_actual_bed(db, vault, ids), _expected_bed([*samples, *later], ids))
    _same(_actual_bed_daily(db, vault, ids), _expected_bed_daily([*samples, *later], ids))


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
        _run(conn, vault, lag_s=120)
        assert not any(h == hour for _, h in _actual_bed(db, vault, ids))  # not over yet: not rolled up
        result = rollups.run(
            conn, vault=vault, lag_s=-3600, timezone=TZ, raw_retention_s=30 * DAY_S
        )  # as if it were over
    assert result.hours_rolled >= 1
    _same(_actual_bed(db, vault, ids), _expected_bed(samples, ids))
    more = [m.BedSample(dev=world.gateways[0].beds[0], ts=now_ms() - 5, presence=True, hr=66.0)]
    _store(db, vault, world, list(more))  # recorded as (hour, all devices): the hour is recomputed whole
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, vault, lag_s=120)
    _same(_actual_bed(db, vault, ids), _expected_bed([*samples, *more], ids))


def test_an_hour_older_than_the_raw_retention_is_never_recomputed(db: str, vault: Vault, world: LoadWorld) -> None:
    rng = random.Random(13)
    ids = _ids(db, world)
    hour = (now_ms() - 3 * 24 * HOUR_MS) // HOUR_MS
    samples = _samples(world, hour, rng, 50)
    _store(db, vault, world, list(samples))
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, vault, retention_days=30)
    before = _actual_bed(db, vault, ids)
    _same(before, _expected_bed(samples, ids))
    with psycopg.connect(db, autocommit=True) as conn:  # most of the hour's raw data is gone (a dropped chunk)
        conn.execute("DELETE FROM bed_readings WHERE device_id = ANY(%s)", (list(ids.values()),))
    _store(db, vault, world, _samples(world, hour, rng, 1))  # and one late reading arrives for it
    with psycopg.connect(db, autocommit=True) as conn:
        _run(conn, vault, retention_days=2)
    assert _actual_bed(db, vault, ids) == before  # the roll-up is all that is left of that hour: kept as it was


@pytest.mark.parametrize("job", ["rollups", "retention"])
def test_a_rebuild_waits_while_the_roll_up_or_retention_job_runs(db: str, vault: Vault, job: str) -> None:
    """The roll-up job deletes and inserts the same hours: side by side, one would fail on the other's rows (seen
    when a test rebuilt a backfilled month while ingest's schedule rolled up). The retention job could drop a
    chunk the rebuild is about to read, and the rebuild would take the hours' roll-ups with it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rebuilt = threading.Event()

    def rebuild() -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            rollups.rebuild(conn, vault=vault, start=start, end=start.replace(hour=2), timezone=TZ)
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


def test_a_rebuild_refuses_the_hours_of_a_chunk_retention_dropped(db: str, vault: Vault, world: LoadWorld) -> None:
    """The rebuild deletes an hour's roll-up before it recomputes it: over a dropped chunk it would replace what
    is left of the dropped readings with nothing. Retention records each chunk it drops; the rebuild reads that."""
    ids = _ids(db, world)
    bed = ids[world.gateways[0].beds[0]]
    hour = (now_ms() - 160 * 24 * HOUR_MS) // HOUR_MS  # a day no other test writes to
    day = _local_day(hour)

    def mine() -> tuple[dict[Any, tuple[Any, ...]], dict[Any, tuple[Any, ...]]]:
        hourly = {k: v for k, v in _actual_bed(db, vault, ids).items() if k == (bed, hour)}
        return hourly, {k: v for k, v in _actual_bed_daily(db, vault, ids).items() if k == (bed, day)}

    with psycopg.connect(db, autocommit=True) as conn:
        sealer = vault.vitals_sealer()
        for minute in range(0, 60, 10):
            when = rollups.hour_start(hour) + timedelta(minutes=minute)
            conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence, vitals_enc) VALUES (%s, %s, true, %s)",
                (when, bed, seal_reading(sealer, when, bed, 61, None)),
            )
        done = rollups.rebuild(
            conn, vault=vault, start=rollups.hour_start(hour), end=rollups.hour_start(hour + 1), timezone=TZ
        )
        assert (done.hours, done.days, done.unopened) == (1, 1, 0)
        before = mine()
        assert before[0][(bed, hour)] == (6, 6, 6, 6, 61, 61, 61, 0, None, None, None)  # rates opened
        assert before[1][(bed, day)] == (6, 6, 6, 6, 61, 61, 61, 0, None, None, None)
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
            rollups.rebuild(conn, vault=vault, start=chunk_start - timedelta(hours=3), end=chunk_end, timezone=TZ)
        assert [(d.table, d.start, d.end) for d in refused.value.dropped if d.table == "bed_readings"] == [
            ("bed_readings", chunk_start, chunk_end)
        ]
        assert mine() == before  # nothing was deleted

        rollups.rebuild(conn, vault=vault, start=chunk_end, end=chunk_end + timedelta(hours=2), timezone=TZ)  # fine

        # told that the raw data is restored, it rebuilds, from what raw data there is: here, none
        rollups.rebuild(conn, vault=vault, start=chunk_start, end=chunk_end, timezone=TZ, over_dropped=True)
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
