"""A low battery's alarm says how low: the level the gateway sent with the fault, or, for a gateway that sends none,
the device's last battery reading of the hour before the fault (engine.LEVEL_READING_BEFORE/AFTER); else none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from tests.alerting.conftest import alarm_text, alarms_of, device_id, process, put_event

from eldercare.platform.alarms import engine
from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome


def _readings(db: str, code: str, *readings: tuple[datetime, float]) -> None:
    """Battery readings as ingest stores them (``device_readings``, metric ``battery``)."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO device_readings (time, device_id, metric, value) VALUES (%s, %s, 'battery', %s)",
            [(at, device_id(db, code), value) for at, value in readings],
        )


def test_the_alarm_detail_has_the_battery_level(db: str, vault: Vault, home: SeededHome) -> None:
    sent, read, recent, old, later, offline = [d.code for d in home.devices][:6]  # buttons and bed sensors
    at = datetime.now(UTC) - timedelta(minutes=30)
    low = {"fault": "low_battery", "active": True}
    # The gateway's level wins over any reading.
    _readings(db, sent, (at - timedelta(minutes=1), 40.0))
    put_event(db, home, sent, "fault", {**low, "level": 12}, at)
    # No level sent: the latest reading of the hour before (an older one is not the level now).
    _readings(db, read, (at - timedelta(minutes=50), 16.0), (at - timedelta(minutes=10), 14.0))
    put_event(db, home, read, "fault", low, at)
    # A reading a few seconds after the fault's time (the device's clock a little ahead) is the one that raised it.
    _readings(db, recent, (at + timedelta(seconds=20), 9.0))
    put_event(db, home, recent, "fault", low, at)
    # Too old, or read long after the fault (charged since): no level rather than a wrong one.
    _readings(db, old, (at - engine.LEVEL_READING_BEFORE - timedelta(minutes=1), 18.0))
    put_event(db, home, old, "fault", low, at)
    _readings(db, later, (at + engine.LEVEL_READING_AFTER + timedelta(minutes=1), 80.0))
    put_event(db, home, later, "fault", low, at)
    # Other faults carry no level, whatever the device's battery.
    _readings(db, offline, (at - timedelta(minutes=5), 15.0))
    put_event(db, home, offline, "fault", {"fault": "offline", "active": True}, at)
    assert process(db, vault) == 6

    details = {a["device"]: alarm_text(db, vault, a["id"]).detail for a in alarms_of(db, home)}
    assert details == {
        sent: {**low, "level": 12},
        read: {**low, "level": 14},
        recent: {**low, "level": 9},
        old: low,
        later: low,
        offline: {"fault": "offline", "active": True},
    }
    kinds = {a["device"]: a["kind"] for a in alarms_of(db, home)}
    assert kinds[sent] == kinds[read] == "device_low_battery"
    assert kinds[offline] == "device_offline"
