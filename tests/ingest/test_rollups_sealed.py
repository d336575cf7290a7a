"""The roll-ups of sealed rates: a reading whose block does not open is left out of the rates and named in the log,
never a stop of the job nor a silent loss; so is an hourly summary that does not open, from its day; an hour without
rates has nothing sealed; and the row a summary is bound to is the same string for writer and reader."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from eldercare.ingest import rollups
from eldercare.platform.crypto import BED_DAILY_VITALS, BED_HOURLY_VITALS, Vault, VitalsSummary
from eldercare.platform.sealed_vitals import seal_reading, summary_row
from eldercare.simulators.load import LoadWorld

from .helpers import forget_rates

TZ = "Asia/Shanghai"
_LOGGER = "eldercare.ingest.rollups"


@pytest.fixture
def world(world: LoadWorld, db: str) -> Iterator[LoadWorld]:
    """The home of the conftest, whose readings and roll-ups (rates: health data) are removed afterwards."""
    yield world
    forget_rates(db, world)


def _beds(conn: psycopg.Connection[Any], world: LoadWorld) -> tuple[int, int]:
    ids = [
        conn.execute("SELECT id FROM devices WHERE code = %s", (code,)).fetchone()
        for code in world.gateways[0].beds[:2]
    ]
    assert ids[0] is not None and ids[1] is not None
    return int(ids[0][0]), int(ids[1][0])


def _morning(days_ago: int) -> tuple[datetime, date]:
    """09:00 local of a day no other test writes to (every test of the session shares the database), in UTC."""
    day = (datetime.now(ZoneInfo(TZ)) - timedelta(days=days_ago)).date()
    return datetime(day.year, day.month, day.day, 9, tzinfo=ZoneInfo(TZ)).astimezone(UTC), day


def _insert(
    conn: psycopg.Connection[Any], vault: Vault, device: int, readings: list[tuple[datetime, Any, Any]]
) -> None:
    sealer = vault.vitals_sealer()
    with conn.cursor().copy("COPY bed_readings (time, device_id, presence, vitals_enc) FROM STDIN") as copy:
        for when, hr, rr in readings:
            copy.write_row((when, device, hr is not None, seal_reading(sealer, when, device, hr, rr)))


def _rollup(conn: psycopg.Connection[Any], table: str, period: str, device: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT {period}, samples, hr_count, rr_count, vitals_enc, hr_min, hr_max, hr_sum, rr_min, rr_max, rr_sum"
        f" FROM {table} WHERE device_id = %s ORDER BY 1",
        (device,),
    ).fetchall()


def _stats(hr: list[float], rr: list[float]) -> tuple[float, ...]:
    return min(hr), max(hr), sum(hr) / len(hr), min(rr), max(rr), sum(rr) / len(rr)


def _opened(summary: VitalsSummary, hr_count: int, rr_count: int) -> tuple[float, ...]:
    return (
        summary.hr_min, summary.hr_max, summary.hr_sum / hr_count,
        summary.rr_min, summary.rr_max, summary.rr_sum / rr_count,
    )  # fmt: skip


def test_a_reading_whose_block_does_not_open_is_left_out_named_and_the_rest_rolled_up(
    db: str, vault: Vault, world: LoadWorld, caplog: pytest.LogCaptureFixture
) -> None:
    start, day = _morning(100)
    times = [start + timedelta(minutes=5 * i) for i in range(12)]
    readings = [(t, 60.0 + i, 14 + i / 4) for i, t in enumerate(times)]
    with psycopg.connect(db, autocommit=True) as conn:
        bed, other = _beds(conn, world)
        _insert(conn, vault, bed, [*readings, (start + timedelta(minutes=59), None, None)])  # one out of bed
        damaged = start + timedelta(minutes=3)  # the other bed's one reading with rates
        _insert(conn, vault, other, [(start + timedelta(minutes=1), None, None), (damaged, 65.0, 15.0)])
        for device, at in ((bed, times[3]), (other, damaged)):  # a changed byte
            conn.execute(
                "UPDATE bed_readings SET vitals_enc = set_byte(vitals_enc, 5, get_byte(vitals_enc, 5) # 1)"
                " WHERE device_id = %s AND time = %s",
                (device, at),
            )
        conn.execute(  # another reading's block (of the same device, a minute later) copied over it
            "UPDATE bed_readings SET vitals_enc = (SELECT vitals_enc FROM bed_readings WHERE device_id = %(bed)s"
            " AND time = %(next)s) WHERE device_id = %(bed)s AND time = %(at)s",
            {"bed": bed, "at": times[7], "next": times[8]},
        )
        with caplog.at_level(logging.ERROR, logger=_LOGGER):
            done = rollups.rebuild(conn, vault=vault, start=start, end=start + timedelta(hours=1), timezone=TZ)
        hourly, daily = _rollup(conn, "bed_hourly", "bucket", bed), _rollup(conn, "bed_daily", "day", bed)
        empty = _rollup(conn, "bed_hourly", "bucket", other) + _rollup(conn, "bed_daily", "day", other)

    assert done.unopened == 3
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == _LOGGER and r.levelno == logging.ERROR)
    assert f"device {bed} at {times[3].isoformat()}" in logged and f"device {bed} at {times[7].isoformat()}" in logged
    assert f"device {other} at {damaged.isoformat()}" in logged

    kept = [r for i, r in enumerate(readings) if i not in (3, 7)]
    expected = _stats([hr for _, hr, _ in kept], [rr for _, _, rr in kept])
    assert [row[:4] for row in hourly] == [(start, 13, 10, 10)]  # every reading a sample; 10 rates of each opened
    assert [row[:4] for row in daily] == [(day, 13, 10, 10)]
    assert hourly[0][5:] == daily[0][5:] == (None,) * 6  # nothing of the rates in clear
    summary = vault.open_vitals_summary(hourly[0][4], column=BED_HOURLY_VITALS, row=summary_row(bed, start))
    assert _opened(summary, 10, 10) == pytest.approx(expected)
    summary = vault.open_vitals_summary(daily[0][4], column=BED_DAILY_VITALS, row=summary_row(bed, day))
    assert _opened(summary, 10, 10) == pytest.approx(expected)

    # a bed whose only rates did not open: its readings counted as samples, no rate, and nothing sealed
    assert [row[1:] for row in empty] == [(2, 0, 0, None, *(None,) * 6)] * 2


def test_an_hourly_summary_that_does_not_open_is_left_out_of_its_day_and_named(
    db: str, vault: Vault, world: LoadWorld, caplog: pytest.LogCaptureFixture
) -> None:
    first, day = _morning(101)
    second = first + timedelta(hours=1)
    with psycopg.connect(db, autocommit=True) as conn:
        bed, _ = _beds(conn, world)
        _insert(conn, vault, bed, [(first + timedelta(minutes=m), 50.0 + m, 12.5) for m in range(0, 60, 10)])
        _insert(conn, vault, bed, [(second + timedelta(minutes=m), 70.0 + m, None) for m in range(0, 60, 20)])
        done = rollups.rebuild(conn, vault=vault, start=first, end=second + timedelta(hours=1), timezone=TZ)
        assert done.unopened == 0
        whole = _rollup(conn, "bed_daily", "day", bed)
        assert [row[:4] for row in whole] == [(day, 9, 9, 6)]
        summary = vault.open_vitals_summary(whole[0][4], column=BED_DAILY_VITALS, row=summary_row(bed, day))
        assert summary == (50.0, 110.0, 450.0 + 270.0, 12.5, 12.5, 75.0)  # the hours combined

        conn.execute(  # the second hour's summary copied over the first's: bound to another row, it does not open
            "UPDATE bed_hourly SET vitals_enc = (SELECT vitals_enc FROM bed_hourly WHERE device_id = %(bed)s"
            " AND bucket = %(second)s) WHERE device_id = %(bed)s AND bucket = %(first)s",
            {"bed": bed, "first": first, "second": second},
        )
        with caplog.at_level(logging.ERROR, logger=_LOGGER):  # the second hour again: its day is recomputed
            done = rollups.rebuild(conn, vault=vault, start=second, end=second + timedelta(hours=1), timezone=TZ)
        daily = _rollup(conn, "bed_daily", "day", bed)

    assert (done.hours, done.days, done.unopened) == (1, 1, 1)
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == _LOGGER and r.levelno == logging.ERROR)
    assert f"device {bed}'s hour {first.isoformat()}" in logged
    # the day holds what opened: the second hour, its counts with it (the samples are not rates: all are kept)
    assert [row[:4] for row in daily] == [(day, 9, 3, 0)] and daily[0][5:] == (None,) * 6
    summary = vault.open_vitals_summary(daily[0][4], column=BED_DAILY_VITALS, row=summary_row(bed, day))
    assert summary[:3] == (70.0, 110.0, 270.0) and math.isnan(summary.rr_min) and math.isnan(summary.rr_max)
    assert summary.rr_sum == 0


def test_a_summary_is_bound_to_one_string_per_row_whatever_the_readers_time_zone() -> None:
    hour = datetime(2026, 10, 1, 8, tzinfo=UTC)
    assert summary_row(7, hour) == "7/2026-10-01T08:00:00+00:00"
    assert summary_row(7, hour.astimezone(ZoneInfo(TZ))) == summary_row(7, hour)
    assert summary_row(7, date(2026, 10, 1)) == "7/2026-10-01"
    with pytest.raises(ValueError, match="time zone"):
        summary_row(7, datetime(2026, 10, 1, 8))  # naive: refused
