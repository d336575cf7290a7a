"""The bed-presence rule on the real roll-ups: raw bed readings written for chosen nights, rolled up by ingest's
own code (``ingest.rollups.rebuild``), then verified. A night is 22:00-06:00 Asia/Shanghai; no evidence with
samples in fewer than 4 of its 8 hours; present when at least a quarter of the observed minutes show someone;
absent otherwise - whatever the sampling interval."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.registry.support import Database
from tests.subsidy.support import home, said_in_both, set_amounts, user
from tests.subsidy.world import TZ

from eldercare.devices import codes
from eldercare.ingest import rollups
from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading

OCT = date(2026, 10, 1)
_rng = random.Random(3)


def _minutes(start: datetime, count: int, *, present: int, step: int = 1) -> list[tuple[datetime, bool]]:
    """``count`` readings ``step`` minutes apart from ``start``, the first ``present`` of them showing someone."""
    return [(start + timedelta(minutes=m * step), m < present) for m in range(count)]


def night(day: int, hour: int = 22) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=TZ)


# (night, readings): what the sensor sent. The nights not listed sent nothing.
READINGS: dict[int, list[tuple[datetime, bool]]] = {
    1: _minutes(night(1), 480, present=120),  # a quarter of the night in bed: present
    2: _minutes(night(2), 480, present=119),  # just under a quarter: absent
    3: _minutes(night(3), 240, present=240),  # data in 4 hours (22:00-02:00), all in bed: present
    4: _minutes(night(4), 180, present=180),  # data in 3 hours only: no evidence, whatever it shows
    # in bed 20:00-22:00 and 06:00-09:00 (outside the window), watched and empty inside it: absent
    5: _minutes(night(5, 20), 120, present=120)
    + _minutes(night(5), 480, present=0)
    + _minutes(night(6, 6), 180, present=180),
    6: _minutes(night(6), 48, present=40, step=10),  # a sample every 10 minutes, 40 of 48 in bed: present
    7: _minutes(night(7), 48, present=11, step=10),  # 11 of 48 (23%): absent
}


@pytest.fixture(scope="module")
def line(api: str, sub_db: Database, vault: Vault) -> dict[str, Any]:
    home_id = home(sub_db.url)
    bed_code, person = codes.new_bed_code(_rng), codes.new_person_code(_rng)
    number = codes.generate_id_number(_rng, region6="420502", birth_date=date(1940, 2, 3), sex="female")
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        room = conn.execute(
            "WITH b AS (INSERT INTO buildings (institution_id, name) VALUES (%s, '1号楼') RETURNING id),"
            " f AS (INSERT INTO floors (building_id, name) SELECT id, '1层' FROM b RETURNING id)"
            " INSERT INTO rooms (floor_id, name) SELECT id, '101' FROM f RETURNING id",
            (home_id,),
        ).fetchone()
        assert room is not None
        bed = conn.execute(
            "INSERT INTO beds (institution_id, room_id, code, kind) VALUES (%s, %s, %s, 'nursing') RETURNING id",
            (home_id, room[0], bed_code),
        ).fetchone()
        resident = conn.execute(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, status, created_at) VALUES (%s, %s, %s, %s, %s, %s, '1940-02-03',"
            " 'female', 'admitted', '2026-01-01') RETURNING id",
            (
                home_id,
                person,
                vault.encrypt("李兰", column="residents.name"),
                vault.encrypt(number, column="residents.id_number"),
                vault.lookup_hash(number),
                number[:6] + "********" + number[14:],
            ),
        ).fetchone()
        device = conn.execute(
            "INSERT INTO devices (institution_id, code, kind) VALUES (%s, 'BS-1', 'bed_sensor') RETURNING id",
            (home_id,),
        ).fetchone()
        assert bed and resident and device
        conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, '[2026-01-02,)')",
            (bed[0], resident[0]),
        )
        conn.execute(
            "INSERT INTO device_bindings (device_id, bed_id, during) VALUES (%s, %s, '[2026-01-02,)')",
            (device[0], bed[0]),
        )
        sealer = vault.vitals_sealer()  # the rates sealed as ingest stores them; the roll-up counts them in clear
        with conn.cursor().copy("COPY bed_readings (time, device_id, presence, vitals_enc) FROM STDIN") as cp:
            for readings in READINGS.values():
                for at, present in readings:
                    rates = (66.0, 15.0) if present else (None, None)
                    cp.write_row((at, device[0], present, seal_reading(sealer, at, device[0], *rates)))
        rollups.rebuild(conn, vault=vault, start=night(1, 0), end=night(9, 0), timezone="Asia/Shanghai")
    admin = user(api, sub_db.url, "admin")
    set_amounts(admin)
    admin.ok(
        "POST",
        f"/api/v1/institutions/{home_id}/subsidy/claims",
        201,
        json={
            "month": "2026-10",
            "lines": [{"person_code": person, "bed_code": bed_code, "programme": "operating_subsidy", "days": 5}],
        },
    )
    admin.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-10", "region": "4205"})
    view: dict[str, Any] = admin.ok(
        "GET", f"/api/v1/institutions/{home_id}/subsidy/claims", params={"month": "2026-10"}
    )
    first: dict[str, Any] = view["lines"][0]
    return first


def test_each_night_is_present_absent_or_without_evidence(line: dict[str, Any]) -> None:
    nights = line["evidence"]["nights"]
    assert nights["present"] == [1, 3, 6]
    assert nights["absent"] == [2, 5, 7]
    assert nights["no_evidence"] == [4, *range(8, 32)]  # an outage is not an absence
    # heart and respiration readings inside the window on nights 1-4, 6 and 7; night 5's were outside it
    assert line["evidence"]["counts"]["vital_signs"] == 6


def test_a_month_mostly_without_data_goes_to_a_person(line: dict[str, Any]) -> None:
    assert line["verdict"] == "manual_check", line["reasons"]
    assert set(said_in_both([line])) >= {"sensor_offline", "absent_nights"}
    assert line["verified_days"] == 3 and line["payable_yuan"] == "0.00"


def test_the_rule_s_thresholds_are_checked() -> None:
    from eldercare.platform.subsidy.rules import Rules

    rules = Rules()
    assert (rules.min_observed_hours, rules.min_occupied_share) == (4, 0.25)
    with pytest.raises(ValueError, match="within"):
        Rules(min_observed_hours=9)
    with pytest.raises(ValueError, match="share"):
        Rules(min_occupied_share=0)
    with pytest.raises(ValueError, match="evening"):
        Rules(night_start_hour=2)
