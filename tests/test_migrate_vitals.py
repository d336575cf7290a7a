"""``eldercare db migrate`` seals the heart and breathing rates an older version stored in clear (before 0028): the
bed readings' ``heart_rate`` and ``resp_rate`` and the hourly and daily roll-ups' minimum, maximum and sum of each;
``eldercare db scrub`` then rewrites the three tables. Every rate comes out of the seal as it went in (a reading's to
the hundredth its block keeps), nothing else of the rows changes, and rows an older ingest writes in clear after the
start are left to the next migrate."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from tests.platform_procs import scrub_command
from tests.registry.support import Database, data_key, drop_database, old_database

from eldercare.platform.crypto import (
    BED_DAILY_VITALS,
    BED_HOURLY_VITALS,
    DecryptionError,
    Vault,
    VitalsSealer,
    VitalsSummary,
)
from eldercare.platform.db import migrate as mig
from eldercare.platform.db import vitals
from eldercare.platform.sealed_vitals import micros_sql, seal_reading, summary_row
from eldercare.platform.stack.model import StackInfo

_T0 = datetime(2026, 11, 1, tzinfo=UTC)
_READINGS = 2 * vitals.READING_BATCH_ROWS  # 3 in 4 with a rate: more than a batch, over 14 daily chunks
_IN_CLEAR = _READINGS - _READINGS // 4 + 2  # and the reading delivered twice
_LATE = _T0 + timedelta(days=30)  # after every reading of the fixture

# A few hours and days as an older roll-up job wrote them: (hr count, min, max, sum, rr count, min, max, sum).
_HOURS = [
    (_T0, (120, 58.5, 91.25, 8400.75, 118, 12.0, 19.5, 1800.5)),
    (_T0 + timedelta(hours=1), (30, 60.0, 70.0, 1950.0, 0, None, None, None)),  # heart rate only
    (_T0 + timedelta(hours=2), (0, None, None, None, 25, 14.25, 16.0, 375.0)),  # breathing rate only
]
_EMPTY_HOUR = _T0 + timedelta(hours=3)  # nobody in bed: no rate, nothing to seal
_DAYS = [(date(2026, 11, 1), (150, 58.5, 91.25, 10350.75, 143, 12.0, 19.5, 2175.5))]
_EMPTY_DAY = date(2026, 11, 2)


@dataclass(frozen=True, slots=True)
class OldDb:
    db: Database
    device: int


@pytest.fixture
def old_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[OldDb]:
    """A database of the version before rates were sealed, with readings and roll-ups in clear; and the bed sensor."""
    db, home = old_database(stack, monkeypatch, below=28, prefix="ec_vit")
    with psycopg.connect(db.url, autocommit=True) as conn:
        device = conn.execute(
            "INSERT INTO devices (institution_id, code, kind) VALUES (%s, 'BS-OLD-1', 'bed_sensor') RETURNING id",
            (home,),
        ).fetchone()
        assert device is not None
        # both rates, then one of them only, then neither (out of bed), in turn; rates with hundredths, as sent
        conn.execute(
            "INSERT INTO bed_readings (time, device_id, presence, heart_rate, resp_rate, movement)"
            " SELECT %s + n * interval '2 minutes', %s, n %% 4 <> 3,"
            " CASE WHEN n %% 4 IN (0, 1) THEN 50 + (n %% 5000) / 100.0 END,"
            " CASE WHEN n %% 4 IN (0, 2) THEN 10 + (n %% 1500) / 100.0 END, (n %% 10) / 10.0"
            " FROM generate_series(1, %s) AS n",
            (_T0, device[0], _READINGS),
        )
        # the same reading delivered twice (before frames were deduplicated): both copies are sealed
        conn.execute(
            "INSERT INTO bed_readings (time, device_id, presence, heart_rate, resp_rate)"
            " VALUES (%s, %s, true, 72.3, 16.7), (%s, %s, true, 72.3, 16.7)",
            (_T0, device[0], _T0, device[0]),
        )
        for bucket, stats in [*_HOURS, (_EMPTY_HOUR, (0, None, None, None, 0, None, None, None))]:
            _old_hour(conn, int(device[0]), bucket, stats)
        for day, stats in [*_DAYS, (_EMPTY_DAY, (0, None, None, None, 0, None, None, None))]:
            conn.execute(
                "INSERT INTO bed_daily (day, device_id, samples, observed_minutes, occupied_minutes,"
                " hr_count, hr_min, hr_max, hr_sum, rr_count, rr_min, rr_max, rr_sum)"
                " VALUES (%s, %s, 200, 180, 150, %s, %s, %s, %s, %s, %s, %s, %s)",
                (day, device[0], *stats),
            )
    yield OldDb(db, int(device[0]))
    drop_database(stack, db)


def _old_hour(conn: psycopg.Connection[Any], device: int, bucket: datetime, stats: tuple[Any, ...]) -> None:
    conn.execute(
        "INSERT INTO bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes,"
        " hr_count, hr_min, hr_max, hr_sum, rr_count, rr_min, rr_max, rr_sum)"
        " VALUES (%s, %s, 120, 60, 55, %s, %s, %s, %s, %s, %s, %s, %s)",
        (bucket, device, *stats),
    )


def _rows(url: str, query: str, *, timezone: str = "UTC") -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute(f"SET TimeZone = '{timezone}'")
        return conn.execute(query).fetchall()


def _no_valid_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings' data key, as an operator who has not set it right gives it (the environment wins over a file)."""
    monkeypatch.setenv("ELDERCARE_DATA_KEY", "not a key")


def _hundredths(rate: float | None) -> float | None:
    """What a reading's block keeps of a ``real`` rate: its hundredths, as the sealer rounds them."""
    return None if rate is None else int(rate * 100 + 0.5) / 100


def _rate(opened: float) -> float | None:
    """An opened rate, None for none (NaN)."""
    return None if math.isnan(opened) else float(opened)


def _summary(stats: tuple[Any, ...]) -> VitalsSummary:
    _, hr_min, hr_max, hr_sum, _, rr_min, rr_max, rr_sum = stats
    nan = math.nan
    return VitalsSummary(
        nan if hr_min is None else hr_min,
        nan if hr_max is None else hr_max,
        hr_sum or 0.0,
        nan if rr_min is None else rr_min,
        nan if rr_max is None else rr_max,
        rr_sum or 0.0,
    )


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Equal, NaN included."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def test_migrate_seals_every_rate_left_in_clear_and_each_opens_to_what_it_was(
    stack: StackInfo, old_db: OldDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, vault = old_db.db.url, Vault(data_key(stack))
    readings = "SELECT time, device_id, presence, movement, heart_rate, resp_rate FROM bed_readings"
    before = sorted(_rows(url, readings), key=repr)
    assert sum(1 for *_, hr, rr in before if hr is None and rr is None) == _READINGS // 4  # out of bed: not sealed

    with monkeypatch.context() as patch:
        _no_valid_key(patch)
        with pytest.raises(mig.MigrationError) as refused:
            mig.migrate(url)
    assert refused.value.version == vitals.SINCE
    assert "heart and breathing rates are stored in clear" in str(refused.value)
    assert "ELDERCARE_DATA_KEY" in str(refused.value)
    with psycopg.connect(url, autocommit=True) as conn:
        assert mig.is_applied(conn, vitals.SINCE)  # the SQL went ahead of the key
    assert sorted(_rows(url, readings), key=repr) == before

    mig.migrate(url, data_key=data_key(stack))

    sealed = _rows(url, f"{readings.replace('FROM', ', vitals_enc, ' + micros_sql('time') + ' FROM')}")
    assert all(hr is None and rr is None for _, _, _, _, hr, rr, _, _ in sealed)
    blocks = [r for r in sealed if r[6] is not None]
    opened = vault.open_vitals([r[7] for r in blocks], [r[1] for r in blocks], [r[6] for r in blocks])
    assert len(blocks) == _IN_CLEAR and opened.ok.all()
    got = [(*r[:4], _rate(hr), _rate(rr)) for r, hr, rr in zip(blocks, opened.hr, opened.rr, strict=True)]
    got += [(*r[:4], None, None) for r in sealed if r[6] is None]
    assert sorted(got, key=repr) == sorted(((*r[:4], _hundredths(r[4]), _hundredths(r[5])) for r in before), key=repr)

    with monkeypatch.context() as patch:  # nothing left in clear: no key needed, nothing done
        _no_valid_key(patch)
        assert mig.migrate(url) == []
        assert vitals.seal_vitals(url) == []


def test_the_roll_ups_statistics_open_under_their_rows(stack: StackInfo, old_db: OldDb) -> None:
    url, vault = old_db.db.url, Vault(data_key(stack))
    mig.migrate(url, data_key=data_key(stack))

    stats = "hr_count, hr_min, hr_max, hr_sum, rr_count, rr_min, rr_max, rr_sum, vitals_enc, samples, occupied_minutes"
    # read in another time zone than the migrate's: the row an hour's summary is bound to does not depend on it
    hours = _rows(url, f"SELECT device_id, bucket, {stats} FROM bed_hourly ORDER BY bucket", timezone="Asia/Shanghai")
    assert [h[1] for h in hours] == [*(b for b, _ in _HOURS), _EMPTY_HOUR]
    for (device, bucket, hr_count, *clear, rr_count, rr_min, rr_max, rr_sum, enc, samples, occupied), (_, want) in zip(
        hours, [*_HOURS, (None, None)], strict=True
    ):
        assert clear == [None, None, None] and (rr_min, rr_max, rr_sum) == (None, None, None)
        assert (samples, occupied) == (120, 55)  # the rest of the row as it was
        if want is None:
            assert enc is None and (hr_count, rr_count) == (0, 0)  # nothing was in clear: nothing to seal
            continue
        assert (hr_count, rr_count) == (want[0], want[4])  # the counts stay in clear
        summary = vault.open_vitals_summary(enc, column=BED_HOURLY_VITALS, row=summary_row(device, bucket))
        assert _same(summary, _summary(want))
    days = _rows(url, f"SELECT device_id, day, {stats} FROM bed_daily ORDER BY day")
    (device, day, *_, enc, _, _), empty = days
    opened = vault.open_vitals_summary(enc, column=BED_DAILY_VITALS, row=summary_row(device, day))
    assert _same(opened, _summary(_DAYS[0][1]))
    assert empty[1] == _EMPTY_DAY and empty[-3] is None
    with pytest.raises(DecryptionError):  # bound to its row: another day's fails
        vault.open_vitals_summary(enc, column=BED_DAILY_VITALS, row=summary_row(device, _EMPTY_DAY))


def test_the_row_string_names_an_hour_in_utc_whatever_its_zone() -> None:
    shanghai = datetime(2026, 11, 1, 8, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert summary_row(7, shanghai) == "7/2026-11-01T00:00:00+00:00" == summary_row(7, _T0)
    assert summary_row(7, date(2026, 11, 1)) == "7/2026-11-01"
    with pytest.raises(ValueError, match="time zone"):
        summary_row(7, datetime(2026, 11, 1))  # a naive hour


def test_rows_written_in_clear_after_the_start_are_left_to_the_next_migrate(
    stack: StackInfo, old_db: OldDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older ingest and roll-up job still writing in clear while the seal runs do not keep it from ending."""
    url, key = old_db.db.url, data_key(stack)
    with monkeypatch.context() as patch:
        _no_valid_key(patch)
        with pytest.raises(mig.MigrationError):
            mig.migrate(url)  # the SQL only: the rates stay in clear for want of the key

    writer = psycopg.connect(url, autocommit=True)
    wrote: list[bool] = []

    def sealing_while_old_writers_write(
        sealer: VitalsSealer, when: datetime, device_id: int, hr: float | None, rr: float | None
    ) -> bytes | None:
        if not wrote:  # during the first batch, which holds its rows' locks: an insert does not wait for them
            writer.execute(
                "INSERT INTO bed_readings (time, device_id, presence, heart_rate, resp_rate)"
                " VALUES (%s, %s, true, 64, 15)",
                (_LATE, old_db.device),
            )
            _old_hour(writer, old_db.device, _LATE, (60, 60.0, 68.0, 3840.0, 60, 14.0, 16.0, 900.0))
            wrote.append(True)
        return seal_reading(sealer, when, device_id, hr, rr)

    monkeypatch.setattr(vitals, "seal_reading", sealing_while_old_writers_write)
    with writer:
        first = {s.table: (s.rows, s.batches) for s in vitals.seal_vitals(url, data_key=key)}
    assert wrote == [True]
    assert first == {"bed_readings": (_IN_CLEAR, 2), "bed_hourly": (len(_HOURS), 1), "bed_daily": (len(_DAYS), 1)}
    with psycopg.connect(url, autocommit=True) as conn:
        assert vitals.vitals_in_clear(conn) == {"bed_readings": _LATE, "bed_hourly": _LATE}

    refused = scrub_command(url)  # nothing is rewritten while a rate is in clear
    assert refused.returncode == 1 and "bed_readings" in refused.stderr and "db migrate" in refused.stderr, refused

    second = {s.table: s.rows for s in vitals.seal_vitals(url, data_key=key)}
    assert second == {"bed_readings": 1, "bed_hourly": 1}
    with psycopg.connect(url, autocommit=True) as conn:
        assert vitals.vitals_in_clear(conn) == {}


def test_scrub_waits_for_the_seal_then_rewrites_the_vitals_tables(
    stack: StackInfo, old_db: OldDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = old_db.db.url
    with monkeypatch.context() as patch:
        _no_valid_key(patch)
        with pytest.raises(mig.MigrationError):
            mig.migrate(url)  # the SQL only: the rates stay in clear for want of the key
    refused = scrub_command(url)
    assert refused.returncode == 1 and "bed_readings" in refused.stderr and "db migrate" in refused.stderr, refused

    mig.migrate(url, data_key=data_key(stack))
    chunks = "SELECT relfilenode FROM pg_class WHERE oid IN (SELECT tableoid FROM bed_readings)"
    rollups = (
        "SELECT relfilenode FROM pg_class WHERE oid IN ('public.bed_hourly'::regclass, 'public.bed_daily'::regclass)"
    )
    files_before = set(_rows(url, chunks)) | set(_rows(url, rollups))
    scrubbed = scrub_command(url)
    assert scrubbed.returncode == 0, scrubbed.stderr
    assert all(table in scrubbed.stdout for table in vitals.TABLES), scrubbed.stdout
    assert files_before.isdisjoint(set(_rows(url, chunks)) | set(_rows(url, rollups)))  # every file written anew
