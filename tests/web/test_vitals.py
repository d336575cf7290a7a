"""The vital-signs chart opens the sealed rates (migration 0028) and shows exactly what was stored: each reading for
an hour, the mean, minimum and maximum per bucket beyond; a reading whose block does not open is left out of the
rates (and logged), its presence still counted. Through the endpoint: the same figures, the read audited, and
nothing for staff of another home.

The readings are written straight into the database for the bed sensor of a resident of another home of the world
(its gateway sends nothing), at times the roll-up job has passed: the figures are then exactly these readings."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.web.support import World

from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading
from eldercare.platform.web.vitals import Vitals, vitals

STEP = timedelta(seconds=10)  # a sensor's sampling, as in the field


@dataclass(frozen=True, slots=True)
class Reading:
    time: datetime
    present: bool
    hr: float | None
    rr: float | None


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """A resident of another home, their bed sensor, the readings written for it, and that home's nurse."""

    resident_id: int
    device_id: int
    nurse: str
    past: list[Reading]  # two hours up to PAST_END, one block damaged
    damaged: Reading
    week: list[Reading]  # three hours, some six days ago


def _readings(start: datetime, count: int, rng: random.Random) -> list[Reading]:
    """``count`` readings ``STEP`` apart: out of bed now and then (no rates), sometimes a heart rate alone."""
    found = []
    for n in range(count):
        present = n % 37 >= 5
        hr = round(rng.uniform(52, 96), 2) if present else None
        rr = round(rng.uniform(11, 24), 2) if present and n % 11 else None
        found.append(Reading(start + n * STEP, present, hr, rr))
    return found


@pytest.fixture(scope="module")
def elsewhere(web: World, vault: Vault) -> Iterator[Elsewhere]:
    home = web.other_homes[0]
    sensor = next(d for d in home.devices if d.kind == "bed_sensor")
    rng = random.Random(28)
    now = datetime.now(UTC).replace(microsecond=0)
    past = _readings(now - timedelta(days=20, hours=2), 720, rng)
    six_days_ago = now - timedelta(days=6)
    week = _readings(six_days_ago.replace(minute=7, second=0), 1080, rng)  # 7 minutes past: seven half hours
    with psycopg.connect(web.db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT r.id, d.id FROM residents r, devices d WHERE r.person_code = %s AND d.code = %s",
            (sensor.person_code, sensor.code),
        ).fetchone()
        assert row is not None
        resident_id, device_id = row
        sealer = vault.vitals_sealer()
        with conn.cursor().copy("COPY bed_readings (time, device_id, presence, vitals_enc) FROM STDIN") as copy:
            for r in past + week:
                copy.write_row((r.time, device_id, r.present, seal_reading(sealer, r.time, device_id, r.hr, r.rr)))
        # A block copied over another row's (as a tampering or a bug would): it does not open to that row.
        damaged, source = past[-100], past[-99]
        assert damaged.hr is not None and source.hr is not None
        conn.execute(
            "UPDATE bed_readings SET vitals_enc = (SELECT vitals_enc FROM bed_readings WHERE device_id = %(d)s"
            " AND time = %(s)s) WHERE device_id = %(d)s AND time = %(t)s",
            {"d": device_id, "s": source.time, "t": damaged.time},
        )
    try:
        yield Elsewhere(resident_id, device_id, home.staff_username, past, damaged, week)
    finally:
        with psycopg.connect(web.db, autocommit=True) as conn:
            conn.execute("DELETE FROM bed_readings WHERE device_id = %s", (device_id,))


def _chart(web: World, vault: Vault, resident_id: int, *, end: datetime, hours: int) -> Vitals:
    """The service itself, at a chosen end (the endpoint's is now)."""

    async def read() -> Vitals:
        async with await psycopg.AsyncConnection.connect(web.db) as conn:
            return await vitals(conn, vault=vault, resident_id=resident_id, end=end, hours=hours)

    return asyncio.run(read())


def _unix(when: datetime) -> float:
    return when.timestamp()


def _expected_buckets(readings: list[Reading], width: int) -> dict[float, dict[str, float | None]]:
    """Each bucket's figures, worked out plainly from the readings (bucket start in seconds since 1970)."""
    by_bucket: dict[float, list[Reading]] = defaultdict(list)
    for r in readings:
        by_bucket[_unix(r.time) // width * width].append(r)
    found = {}
    for start, group in by_bucket.items():
        hrs = [r.hr for r in group if r.hr is not None]
        rrs = [r.rr for r in group if r.rr is not None]
        found[start] = {
            "hr": sum(hrs) / len(hrs) if hrs else None,
            "hr_min": min(hrs, default=None),
            "hr_max": max(hrs, default=None),
            "rr": sum(rrs) / len(rrs) if rrs else None,
            "rr_min": min(rrs, default=None),
            "rr_max": max(rrs, default=None),
            "in_bed": sum(r.present for r in group) / len(group),
        }
    return found


def _same(got: float | None, want: float | None) -> bool:
    return (got is None and want is None) or (got is not None and want is not None and math.isclose(got, want))


def _assert_buckets(chart: dict[str, Any], readings: list[Reading]) -> None:
    want = _expected_buckets(readings, chart["bucket_s"])
    assert chart["t"] == sorted(want)
    for i, start in enumerate(chart["t"]):
        for name, value in want[start].items():
            assert _same(chart[name][i], value), (name, start, chart[name][i], value)


def test_the_readings_of_an_hour_are_the_stored_rates(web: World, vault: Vault, elsewhere: Elsewhere) -> None:
    end = elsewhere.past[-1].time + STEP
    chart = _chart(web, vault, elsewhere.resident_id, end=end, hours=1)
    shown = [r for r in elsewhere.past if r.time >= end - timedelta(hours=1)]
    assert chart.bucket_s is None and len(shown) == 360
    assert chart.t == [_unix(r.time) for r in shown]
    damaged = shown.index(elsewhere.damaged)
    hr = [None if i == damaged else r.hr for i, r in enumerate(shown)]
    rr = [None if i == damaged else r.rr for i, r in enumerate(shown)]
    assert all(_same(g, w) for g, w in zip(chart.hr, hr, strict=True))
    assert chart.hr_min == chart.hr == chart.hr_max
    assert all(_same(g, w) for g, w in zip(chart.rr, rr, strict=True))
    assert chart.rr_min == chart.rr == chart.rr_max
    assert chart.in_bed == [float(r.present) for r in shown]  # the damaged reading's presence is still shown
    assert chart.hr[damaged] is None and chart.in_bed[damaged] == 1.0


def test_buckets_are_the_mean_minimum_and_maximum_of_the_stored_rates(
    web: World, vault: Vault, elsewhere: Elsewhere
) -> None:
    end = elsewhere.past[-1].time + STEP
    chart = _chart(web, vault, elsewhere.resident_id, end=end, hours=2)
    assert chart.bucket_s == 30
    # the damaged reading counts in its bucket's presence only
    readings = [
        Reading(r.time, r.present, None, None) if r == elsewhere.damaged else r
        for r in elsewhere.past
        if r.time >= end - timedelta(hours=2)
    ]
    _assert_buckets(chart.model_dump(), readings)


def test_a_block_that_does_not_open_is_logged(
    web: World, vault: Vault, elsewhere: Elsewhere, caplog: pytest.LogCaptureFixture
) -> None:
    end = elsewhere.past[-1].time + STEP
    with caplog.at_level(logging.WARNING, logger="eldercare.platform.web.vitals"):
        _chart(web, vault, elsewhere.resident_id, end=end, hours=6)
    [record] = [r for r in caplog.records if r.name == "eldercare.platform.web.vitals"]
    message = record.getMessage()
    assert f"resident {elsewhere.resident_id}: 1 of " in message and f"device {elsewhere.device_id}" in message


def test_the_weeks_chart_through_the_endpoint_and_its_read_audited(web: World, elsewhere: Elsewhere) -> None:
    reply = web.api(elsewhere.nurse, "GET", f"/api/v1/residents/{elsewhere.resident_id}/vitals?hours=168")
    assert reply.status_code == 200, reply.text
    chart = reply.json()
    assert chart["bucket_s"] == 1800 and len(chart["t"]) == 7  # three hours from 7 past: seven half hours
    _assert_buckets(chart, elsewhere.week)
    with psycopg.connect(web.db) as conn:
        row = conn.execute(
            "SELECT actor, object_type, institution_id, detail FROM audit_log WHERE action = 'read_health'"
            " AND object_id = %s ORDER BY seq DESC LIMIT 1",
            (elsewhere.resident_id,),
        ).fetchone()
    assert row is not None
    actor, object_type, institution_id, detail = row
    assert (actor, object_type, institution_id) == (elsewhere.nurse, "resident", web.other_homes[0].institution_id)
    assert detail == {"fields": ["heart_rate", "resp_rate", "presence"], "hours": 168}


def test_staff_of_another_home_do_not_see_the_chart(web: World, elsewhere: Elsewhere) -> None:
    for username in (web.users.nurse, web.users.family_a):
        reply = web.api(username, "GET", f"/api/v1/residents/{elsewhere.resident_id}/vitals?hours=168")
        assert reply.status_code == 404, reply.text
    mine = web.api(web.users.nurse, "GET", f"/api/v1/residents/{web.beds[0].resident_id}/vitals?hours=1")
    assert mine.status_code == 200
    theirs = web.api(elsewhere.nurse, "GET", f"/api/v1/residents/{web.beds[0].resident_id}/vitals?hours=1")
    assert theirs.status_code == 404, theirs.text
