"""Alarm rules against the real database: the engine (events) and the ticker (time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tests.alerting.conftest import (
    alarm_text,
    alarms_of,
    device_id,
    on_shift_all_day,
    process,
    put_event,
    set_rule,
    tick,
)

from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome


def _codes(home: SeededHome, kind: str) -> list[str]:
    return [d.code for d in home.devices if d.kind == kind]


def _resident_of(db: str, bed_code: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT ba.resident_id FROM bed_assignments ba JOIN beds b ON b.id = ba.bed_id WHERE b.code = %s",
            (bed_code,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_each_press_is_one_alarm_repeats_are_counted_and_cancel_is_at_the_bedside(
    db: str, vault: Vault, home: SeededHome
) -> None:
    button = _codes(home, "button")[0]
    now = datetime.now(UTC)
    put_event(db, home, button, "button", {"action": "press"}, now)
    put_event(db, home, button, "button", {"action": "press"}, now + timedelta(seconds=20))
    assert process(db, vault) == 2
    [alarm] = alarms_of(db, home)
    assert (alarm["kind"], alarm["priority"], alarm["state"], alarm["repeat_count"]) == (
        "button",
        "emergency",
        "raised",
        2,
    )

    put_event(db, home, button, "button", {"action": "cancel"}, now + timedelta(seconds=30))
    process(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["state"], alarm_text(db, vault, alarm["id"]).outcome) == ("cancelled", "cancelled at the bedside")

    put_event(db, home, button, "button", {"action": "press"}, now + timedelta(seconds=40))
    process(db, vault)
    assert [a["state"] for a in alarms_of(db, home)] == ["cancelled", "raised"]  # a new happening, a new alarm


def test_a_press_after_the_repeat_window_is_a_new_alarm(db: str, vault: Vault, home: SeededHome) -> None:
    button = _codes(home, "button")[0]
    now = datetime.now(UTC)
    put_event(db, home, button, "button", {"action": "press"}, now - timedelta(seconds=120))
    put_event(db, home, button, "button", {"action": "press"}, now)
    process(db, vault)
    assert [a["repeat_count"] for a in alarms_of(db, home)] == [1, 1]


def test_rules_are_data_per_resident(db: str, vault: Vault, home: SeededHome) -> None:
    first, second = home.devices[1], home.devices[3]  # buttons of two beds
    assert first.kind == second.kind == "button"
    resident = _resident_of(db, first.bed_code or "")
    set_rule(
        db, rule="button", params={"priority": "emergency"}, institution_id=home.institution_id, resident_id=resident
    )
    set_rule(db, rule="button", params={"priority": "urgent"}, institution_id=home.institution_id)
    now = datetime.now(UTC)
    put_event(db, home, first.code, "button", {"action": "press"}, now)
    put_event(db, home, second.code, "button", {"action": "press"}, now)
    process(db, vault)
    assert sorted((a["device"], a["priority"]) for a in alarms_of(db, home)) == sorted(
        [(first.code, "emergency"), (second.code, "urgent")]
    )


def test_a_call_for_help_cannot_be_switched_off(db: str, home: SeededHome) -> None:
    """Not for a home, not for a resident: a disabled rule made the engine drop the press without an alarm."""
    resident = _resident_of(db, home.devices[1].bed_code or "")
    for rule in ("button", "sos", "fall", "environment"):
        for resident_id in (None, resident):
            with pytest.raises(psycopg.errors.CheckViolation):
                set_rule(
                    db, rule=rule, params={}, institution_id=home.institution_id, resident_id=resident_id, enabled=False
                )
    set_rule(db, rule="wander", params={}, institution_id=home.institution_id, enabled=False)  # others may be


def _night_everywhere(db: str, home: SeededHome, **params: object) -> None:
    base = {"from": "00:00", "to": "23:59", "delay_s": 60, "emergency_after_s": 600, "min_fall_risk": "low"}
    set_rule(db, rule="bed_exit_night", params={**base, **params}, institution_id=home.institution_id)


def test_a_night_bed_exit_becomes_urgent_after_the_delay_then_an_emergency(
    db: str, vault: Vault, home: SeededHome
) -> None:
    _night_everywhere(db, home)
    sensor = _codes(home, "bed_sensor")[0]
    now = datetime.now(UTC)
    put_event(db, home, sensor, "bed_exit", {"back": False}, now - timedelta(seconds=30))
    process(db, vault)
    tick(db, vault)
    assert alarms_of(db, home) == []  # still within the delay: the resident may be back at once

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE bed_exit_watches SET exited_at = exited_at - interval '2 minutes' WHERE device_id = %s",
            (device_id(db, sensor),),
        )
    tick(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["kind"], alarm["priority"]) == ("bed_exit", "urgent")

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE bed_exit_watches SET exited_at = exited_at - interval '20 minutes' WHERE device_id = %s",
            (device_id(db, sensor),),
        )
    tick(db, vault)
    [alarm] = alarms_of(db, home)
    assert alarm["priority"] == "emergency"

    put_event(db, home, sensor, "bed_exit", {"back": True}, now)
    process(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["state"], alarm_text(db, vault, alarm["id"]).outcome) == ("resolved", "back in bed")


def test_a_quick_return_raises_nothing_and_low_risk_or_daytime_exits_are_ignored(
    db: str, vault: Vault, home: SeededHome
) -> None:
    sensor = _codes(home, "bed_sensor")[0]
    now = datetime.now(UTC)
    _night_everywhere(db, home)
    put_event(db, home, sensor, "bed_exit", {"back": False}, now - timedelta(seconds=200))
    put_event(db, home, sensor, "bed_exit", {"back": True}, now - timedelta(seconds=170))
    process(db, vault)
    tick(db, vault)
    assert alarms_of(db, home) == []

    _night_everywhere(db, home, min_fall_risk="high")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE residents SET fall_risk = 'low' WHERE institution_id = %s", (home.institution_id,))
    put_event(db, home, sensor, "bed_exit", {"back": False}, now - timedelta(minutes=5))
    process(db, vault)
    tick(db, vault)
    assert alarms_of(db, home) == []


def test_a_clean_goodbye_raises_nothing_until_the_gateway_stays_silent(db: str, vault: Vault, home: SeededHome) -> None:
    def said(status: str, seconds_ago: int) -> list[str]:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "UPDATE gateways SET last_seen_at = now() - make_interval(secs => %s), last_status = %s"
                " WHERE institution_id = %s",
                (seconds_ago, status, home.institution_id),
            )
        tick(db, vault)
        return [a["kind"] for a in alarms_of(db, home)]

    assert said("goodbye", 5) == []  # a planned restart: back before anyone needs to know
    assert said("goodbye", 300) == ["gateway_offline"]  # it did not come back: the home is unwatched
    assert said("birth", 0) == ["gateway_offline"]  # resolved, not removed
    assert [a["state"] for a in alarms_of(db, home)] == ["resolved"]
    assert said("death", 0) == ["gateway_offline", "gateway_offline"]  # a last will: at once


def test_a_gateway_outage_is_one_alarm_that_holds_back_device_faults(db: str, vault: Vault, home: SeededHome) -> None:
    _nurse_on_shift(db, home)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE gateways SET last_seen_at = now() - interval '5 minutes', last_status = 'heartbeat'"
            " WHERE institution_id = %s",
            (home.institution_id,),
        )
    tick(db, vault)
    now = datetime.now(UTC)
    sensors = _codes(home, "bed_sensor")
    for code in sensors:
        put_event(db, home, code, "fault", {"fault": "offline", "active": True}, now)
    process(db, vault)
    alarms = alarms_of(db, home)
    gateway = [a for a in alarms if a["kind"] == "gateway_offline"]
    held = [a for a in alarms if a["kind"] == "device_offline"]
    assert len(gateway) == 1 and gateway[0]["priority"] == "technical"
    assert len(held) == len(sensors) and all(a["held_by"] == gateway[0]["id"] for a in held)
    assert _told(db, [a["id"] for a in held]) == 0  # nobody is told of each device while the gateway is out

    put_event(db, home, sensors[0], "fault", {"fault": "offline", "active": False}, now + timedelta(seconds=1))
    process(db, vault)  # the gateway's replay: the first sensor was heard again
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE gateways SET last_seen_at = now(), last_status = 'birth' WHERE institution_id = %s",
            (home.institution_id,),
        )
    tick(db, vault)
    by_device = {a["device"]: a for a in alarms_of(db, home) if a["kind"] == "device_offline"}
    assert [a["state"] for a in alarms_of(db, home) if a["kind"] == "gateway_offline"] == ["resolved"]
    assert by_device[sensors[0]]["state"] == "resolved"  # cleared by the device: gone
    still = [by_device[code] for code in sensors[1:]]
    # the faults the gateway did not clear are real: released to staff, and they are told now
    assert [(a["state"], a["held_by"]) for a in still] == [("raised", None)] * len(still)
    assert _told(db, [a["id"] for a in still]) > 0
    assert alarm_text(db, vault, still[0]["id"]).notes[-1].startswith("gateway back and the fault not cleared")


def test_only_the_gateway_that_delivers_a_fault_can_hold_it_back(db: str, vault: Vault, home: SeededHome) -> None:
    """A home with two gateways: one out does not hide the faults the other one reports."""
    _nurse_on_shift(db, home)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO gateways (institution_id, gateway_id, last_seen_at, last_status)"
            " VALUES (%s, %s, now() - interval '5 minutes', 'heartbeat')",
            (home.institution_id, f"GW2-{home.institution_code[-6:]}"),
        )
    tick(db, vault)
    [outage] = alarms_of(db, home)
    assert outage["kind"] == "gateway_offline"
    button = _codes(home, "button")[0]
    put_event(db, home, button, "fault", {"fault": "low_battery", "active": True}, datetime.now(UTC))
    process(db, vault)
    [fault] = [a for a in alarms_of(db, home) if a["kind"] == "device_low_battery"]
    assert (fault["state"], fault["held_by"]) == ("raised", None)
    assert _told(db, [fault["id"]]) > 0


def _nurse_on_shift(db: str, home: SeededHome) -> None:
    """The home's nurse on shift at tier 1 with a channel, so that the outbox has someone to tell."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchone()
        assert row is not None
        on_shift_all_day(conn, home, row[0], 1)
        conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc, position) VALUES (%s, 'email', %s, 1)",
            (row[0], b"sealed"),
        )


def _told(db: str, alarm_ids: list[int]) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM notifications WHERE alarm_id = ANY(%s)", (alarm_ids,)).fetchone()
    assert row is not None
    return int(row[0])
