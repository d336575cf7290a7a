"""The ticker's vital-range rule over sealed rates: ingest stores a bed reading's heart and breathing rates sealed
(migration 0028), so the rule opens its window's readings in Python and judges them as SQL judged the rates in clear:
every in-bed reading of ``sustain_s`` with both rates (at least ``min_readings`` of them) out of the resident's range.
A block that does not open is left out, logged, and never stops the ticker; the alarm's rates are stored sealed.

The seeded residents' ranges are the defaults (heart 50..110, breathing 10..25) and the home's rule the default
(``sustain_s`` 120, ``min_readings`` 3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.alerting.conftest import alarm_text, alarms_of, device_id, run, tick, with_conn

from eldercare.platform.alarms import service
from eldercare.platform.alarms.models import Alarm
from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading
from eldercare.simulators.seed import SeededHome

Reading = tuple[int, float | None, float | None]  # seconds ago, heart rate, breathing rate
RANGES = {"heart_rate_range": [50.0, 110.0], "resp_rate_range": [10.0, 25.0]}  # the seeded residents' (defaults)


@pytest.fixture
def sensor(db: str, home: SeededHome) -> Iterator[int]:
    """The id of the home's first bed sensor; its readings and vitals alarms (health data) are removed afterwards."""
    dev = device_id(db, next(d.code for d in home.devices if d.kind == "bed_sensor"))
    yield dev
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM bed_readings WHERE device_id = %s", (dev,))
        alarms = "SELECT id FROM alarms WHERE device_id = %s AND kind = 'vitals'"
        conn.execute(f"DELETE FROM notifications WHERE alarm_id IN ({alarms})", (dev,))
        conn.execute(f"DELETE FROM alarm_changes WHERE alarm_id IN ({alarms})", (dev,))
        conn.execute("DELETE FROM alarms WHERE device_id = %s AND kind = 'vitals'", (dev,))


def _store(db: str, vault: Vault, dev: int, readings: Sequence[Reading], *, presence: bool = True) -> list[datetime]:
    """Readings (in bed unless said) as ingest stores them since 0028: the rates sealed, none in clear; their times."""
    sealer = vault.vitals_sealer()
    now = datetime.now(UTC)
    times = [now - timedelta(seconds=ago) for ago, _, _ in readings]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO bed_readings (time, device_id, presence, vitals_enc) VALUES (%s, %s, %s, %s)",
            [
                (at, dev, presence, seal_reading(sealer, at, dev, hr, rr))
                for at, (_, hr, rr) in zip(times, readings, strict=True)
            ],
        )
    return times


def _vitals_alarms(db: str, home: SeededHome) -> list[dict[str, Any]]:
    return [a for a in alarms_of(db, home) if a["kind"] == "vitals"]


def _delete_reading(db: str, dev: int, at: datetime) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM bed_readings WHERE device_id = %s AND time = %s", (dev, at))


def test_rates_out_of_range_for_the_sustain_time_raise_one_urgent_alarm_with_the_last_rates(
    db: str, vault: Vault, home: SeededHome, sensor: int
) -> None:
    _store(db, vault, sensor, [(s, 140.0 + s / 10, 16.0) for s in range(0, 100, 10)])  # 140 now, 149 90 s ago
    tick(db, vault)
    tick(db, vault)  # one alarm while it is open
    [alarm] = _vitals_alarms(db, home)
    assert (alarm["priority"], alarm["state"]) == ("urgent", "raised")
    assert alarm_text(db, vault, alarm["id"]).detail == {
        "out_of_range": ["heart_rate"],
        "heart_rate": 140.0,
        "resp_rate": 16.0,
        **RANGES,
    }


@pytest.mark.parametrize(
    ("hr", "rr", "named"),
    [(42.5, 31.25, ["heart_rate", "resp_rate"]), (72.0, 8.0, ["resp_rate"])],
    ids=["both out", "breathing alone out"],
)
def test_the_rates_out_of_range_are_named(
    db: str, vault: Vault, home: SeededHome, sensor: int, hr: float, rr: float, named: list[str]
) -> None:
    _store(db, vault, sensor, [(s, hr, rr) for s in (5, 15, 25)])
    tick(db, vault)
    [alarm] = _vitals_alarms(db, home)
    assert alarm_text(db, vault, alarm["id"]).detail == {
        "out_of_range": named,
        "heart_rate": hr,
        "resp_rate": rr,
        **RANGES,
    }


@pytest.mark.parametrize("last", ["damaged", "heart rate alone", "breathing rate alone"])
def test_a_last_reading_that_shows_no_two_rates_does_not_clear_the_bed(
    db: str, vault: Vault, home: SeededHome, sensor: int, last: str
) -> None:
    """Most beds are cleared by their last reading (in range on both rates: no alarm possible); one that does not
    open, or has one rate (in range), sends the whole window to be judged, without it."""
    _store(db, vault, sensor, [(s, 140.0, 16.0) for s in (10, 20, 30)])
    hr, rr = {"damaged": (72.0, 16.0), "heart rate alone": (72.0, None), "breathing rate alone": (None, 16.0)}[last]
    [at] = _store(db, vault, sensor, [(0, hr, rr)])
    if last == "damaged":  # the block of a reading a second earlier, in range: it does not open to this row
        earlier = seal_reading(vault.vitals_sealer(), at - timedelta(seconds=1), sensor, hr, rr)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "UPDATE bed_readings SET vitals_enc = %s WHERE device_id = %s AND time = %s", (earlier, sensor, at)
            )
    tick(db, vault)
    [alarm] = _vitals_alarms(db, home)
    assert alarm_text(db, vault, alarm["id"]).detail == {
        "out_of_range": ["heart_rate"],
        "heart_rate": 140.0,
        "resp_rate": 16.0,
        **RANGES,
    }


def test_too_few_readings_raise_nothing_until_there_are_enough(
    db: str, vault: Vault, home: SeededHome, sensor: int
) -> None:
    """Only readings of the window, in bed, with both rates count (as when SQL judged ``heart_rate IS NOT NULL AND
    resp_rate IS NOT NULL``)."""
    _store(db, vault, sensor, [(10, 140.0, 16.0), (20, 140.0, 16.0)])
    _store(db, vault, sensor, [(30, 140.0, None), (40, None, 30.0)])  # one rate each
    _store(db, vault, sensor, [(50, 140.0, 16.0)], presence=False)  # out of bed
    _store(db, vault, sensor, [(300, 140.0, 16.0), (310, 140.0, 16.0)])  # before the window
    tick(db, vault)
    assert _vitals_alarms(db, home) == []

    _store(db, vault, sensor, [(0, 140.0, 16.0)])  # the third
    tick(db, vault)
    assert len(_vitals_alarms(db, home)) == 1


def test_a_reading_in_range_within_the_window_raises_nothing(
    db: str, vault: Vault, home: SeededHome, sensor: int
) -> None:
    _store(db, vault, sensor, [(0, 140.0, 16.0), (10, 140.0, 16.0), (30, 140.0, 16.0)])
    [in_range] = _store(db, vault, sensor, [(20, 110.0, 16.0)])  # the limit itself is in range
    tick(db, vault)
    assert _vitals_alarms(db, home) == []

    _delete_reading(db, sensor, in_range)
    tick(db, vault)
    assert len(_vitals_alarms(db, home)) == 1


def test_a_damaged_block_is_left_out_and_the_rest_judged(
    db: str, vault: Vault, home: SeededHome, sensor: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Another row's block copied over a reading's, a changed byte, a cut block: none opens, none is taken for a rate
    in range, the tick goes on, and each is logged (without a rate: they did not open)."""
    [moved, flipped, cut] = _store(db, vault, sensor, [(15, 72.0, 16.0), (25, 72.0, 16.0), (35, 72.0, 16.0)])
    _store(db, vault, sensor, [(0, 140.0, 16.0), (10, 140.0, 16.0)])
    with psycopg.connect(db, autocommit=True) as conn:
        other = conn.execute(
            "SELECT vitals_enc FROM bed_readings WHERE device_id = %s AND time = %s", (sensor, flipped)
        ).fetchone()
        assert other is not None
        block: bytes = other[0]
        for at, damaged in ((moved, block), (flipped, bytes([block[0] ^ 1]) + block[1:]), (cut, block[:8])):
            conn.execute(
                "UPDATE bed_readings SET vitals_enc = %s WHERE device_id = %s AND time = %s", (damaged, sensor, at)
            )
    with caplog.at_level(logging.ERROR, logger="eldercare.platform.alarms.ticker"):
        results = tick(db, vault)
    assert results["vitals"] >= 0  # the job ran to its end
    assert _vitals_alarms(db, home) == []  # two readings could be judged: fewer than three
    [logged] = [r.getMessage() for r in caplog.records if f"device {sensor} " in r.getMessage()]
    assert "3 of the 5 readings" in logged

    _store(db, vault, sensor, [(5, 140.0, 16.0)])  # a third that opens: judged with the other two, the damaged left out
    tick(db, vault)
    assert len(_vitals_alarms(db, home)) == 1


def test_no_rate_is_stored_in_clear_and_staff_see_them(db: str, vault: Vault, home: SeededHome, sensor: int) -> None:
    """The alarm's detail (which rate, and the last rates) is sealed with its text (``alarms.detail_enc``): the old
    clear columns stay empty; staff read the rates, a regulator only that the alarm has them."""
    _store(db, vault, sensor, [(s, 138.0, 16.0) for s in (5, 15, 25)])
    tick(db, vault)
    [raised] = _vitals_alarms(db, home)
    alarm_id = raised["id"]
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT a.detail, a.outcome, a.detail_enc IS NOT NULL,"
            " (SELECT array_agg(c.note) FROM alarm_changes c WHERE c.alarm_id = a.id) FROM alarms a WHERE a.id = %s",
            (alarm_id,),
        ).fetchone()
        readings = conn.execute(
            "SELECT count(*) FROM bed_readings WHERE device_id = %s"
            " AND (heart_rate IS NOT NULL OR resp_rate IS NOT NULL)",
            (sensor,),
        ).fetchone()
    assert row == ({}, None, True, [""])
    assert readings == (0,)

    def as_seen_by(role: Role) -> Alarm:
        who = Principal(user_id=0, username="x", role=role, institution_id=home.institution_id, region_code="4205")

        async def read(conn: AsyncConn) -> Alarm:
            return await service.get_alarm(conn, principal=who, vault=vault, alarm_id=alarm_id)

        return run(with_conn(db, read))

    assert as_seen_by(Role.STAFF).detail == {
        "out_of_range": ["heart_rate"],
        "heart_rate": 138.0,
        "resp_rate": 16.0,
        **RANGES,
    }
    assert as_seen_by(Role.REGULATOR).detail == dict.fromkeys(
        ("out_of_range", "heart_rate", "resp_rate", "heart_rate_range", "resp_rate_range"), "***"
    )
