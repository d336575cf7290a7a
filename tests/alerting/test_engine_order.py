"""Events of one device reach the alarm engine in any order, and two engines (two ``eldercare serve``) may take them
at once: a press and its cancel, an exit from bed and the return, must still end as they happened. Also: a bed exit
just before the night window, and the faults a gateway's outage held back when staff close its alarm themselves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from tests.alerting.conftest import (
    alarms_of,
    device_id,
    on_shift_all_day,
    process,
    put_event,
    run,
    set_rule,
    tick,
    with_conn,
)

from eldercare.platform.alarms import engine, service
from eldercare.platform.alarms.models import OutcomeCode, State
from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALL_DAY = {"from": "00:00", "to": "23:59", "delay_s": 60, "emergency_after_s": 600, "min_fall_risk": "low"}


@pytest.fixture(autouse=True)
def nothing_left_to_send(db: str, home: SeededHome) -> Iterator[None]:
    """The tests here send nothing: the notifications they make are not left for another test's sender."""
    yield
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM notifications WHERE alarm_id IN (SELECT id FROM alarms WHERE institution_id = %s)",
            (home.institution_id,),
        )


def _code(home: SeededHome, kind: str) -> str:
    return next(d.code for d in home.devices if d.kind == kind)


def stored_event(db: str, home: SeededHome, code: str, kind: str, detail: dict[str, Any], at: datetime) -> None:
    """What ingest writes for an alarm-class message: the device event and, in the same transaction, the inbox row."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device_events (time, device_id, gateway_pk, kind, detail)"
            " SELECT %s, %s, id, %s, %s::jsonb FROM gateways WHERE gateway_id = %s",
            (at, device_id(db, code), kind, json.dumps(detail), home.gateway.gateway_id),
        )
    put_event(db, home, code, kind, detail, at)


def _watches(db: str, code: str) -> list[tuple[datetime, datetime | None]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT exited_at, returned_at FROM bed_exit_watches WHERE device_id = %s ORDER BY exited_at",
            (device_id(db, code),),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _bed_exit_alarms(db: str, home: SeededHome) -> list[tuple[str, str]]:
    return [(a["kind"], a["state"]) for a in alarms_of(db, home) if a["kind"] == "bed_exit"]


def test_an_exit_and_its_return_taken_by_two_engines_at_once_leave_no_watch_open(
    db: str, vault: Vault, home: SeededHome
) -> None:
    """Engine A takes the exit; the return arrives and engine B takes it while A has not committed: B waits for A
    (one engine at a time per device), then closes the watch A opened. Before, B found no watch, A's stayed open: a
    false alarm, and the resident's next exit was never watched."""
    set_rule(db, rule="bed_exit_night", params=ALL_DAY, institution_id=home.institution_id)
    sensor = _code(home, "bed_sensor")
    out = datetime.now(UTC) - timedelta(minutes=30)
    stored_event(db, home, sensor, "bed_exit", {"back": False}, out)

    async def two_engines() -> int:
        async with (
            await psycopg.AsyncConnection.connect(db, autocommit=True) as a,
            await psycopg.AsyncConnection.connect(db, autocommit=True) as b,
        ):
            async with a.transaction():  # engine A has applied the exit and not committed yet
                assert await engine.process_pending(a, vault=vault, limit=1) == 1
                await asyncio.to_thread(
                    stored_event, db, home, sensor, "bed_exit", {"back": True}, out + timedelta(seconds=5)
                )
                other = asyncio.create_task(engine.process_pending(b, vault=vault))  # engine B takes the return
                await asyncio.sleep(0.5)
                waited = not other.done()
            return (await other) if waited else -1

    assert run(two_engines()) == 1  # B waited for A, then applied the return
    assert [r is not None for _, r in _watches(db, sensor)] == [True]
    tick(db, vault)
    assert _bed_exit_alarms(db, home) == []  # back after 5 s: nothing to tell

    stored_event(db, home, sensor, "bed_exit", {"back": False}, datetime.now(UTC) - timedelta(minutes=5))
    process(db, vault)
    tick(db, vault)
    assert _bed_exit_alarms(db, home) == [("bed_exit", "raised")]  # the next exit is watched and raised


def test_a_return_applied_before_its_exit_opens_no_watch(db: str, vault: Vault, home: SeededHome) -> None:
    set_rule(db, rule="bed_exit_night", params=ALL_DAY, institution_id=home.institution_id)
    sensor = _code(home, "bed_sensor")
    out = datetime.now(UTC) - timedelta(minutes=30)
    stored_event(db, home, sensor, "bed_exit", {"back": True}, out + timedelta(seconds=5))  # reaches the engine first
    process(db, vault)
    stored_event(db, home, sensor, "bed_exit", {"back": False}, out)
    process(db, vault)
    tick(db, vault)
    assert _watches(db, sensor) == []
    assert _bed_exit_alarms(db, home) == []

    # A return older than the exit being watched does not close it: the resident is out again.
    again = datetime.now(UTC) - timedelta(minutes=5)
    stored_event(db, home, sensor, "bed_exit", {"back": False}, again)
    process(db, vault)
    put_event(db, home, sensor, "bed_exit", {"back": True}, out + timedelta(seconds=6))  # a late repeat of the old one
    process(db, vault)
    tick(db, vault)
    assert _bed_exit_alarms(db, home) == [("bed_exit", "raised")]


def test_a_cancel_older_than_the_last_press_leaves_the_alarm_open(db: str, vault: Vault, home: SeededHome) -> None:
    """Press, the carer cancels at the bedside, the resident presses again: if the cancel reaches the engine last
    (another ingest process, a gateway's backlog), it must not cancel the later press."""
    button = _code(home, "button")
    t0 = datetime.now(UTC) - timedelta(seconds=60)
    put_event(db, home, button, "button", {"action": "press"}, t0)
    put_event(db, home, button, "button", {"action": "press"}, t0 + timedelta(seconds=35))
    put_event(db, home, button, "button", {"action": "cancel"}, t0 + timedelta(seconds=30))  # arrives last
    process(db, vault)
    assert [(a["kind"], a["state"]) for a in alarms_of(db, home)] == [("button", "raised")]

    put_event(db, home, button, "button", {"action": "cancel"}, t0 + timedelta(seconds=50))  # the carer comes again
    process(db, vault)
    assert [(a["kind"], a["state"]) for a in alarms_of(db, home)] == [("button", "cancelled")]


def _night_rule(db: str, home: SeededHome) -> None:
    params = {**ALL_DAY, "from": "21:00", "to": "06:00", "timezone": "Asia/Shanghai"}
    set_rule(db, rule="bed_exit_night", params=params, institution_id=home.institution_id)


def test_getting_up_a_minute_before_the_night_window_and_not_coming_back_is_alarmed(
    db: str, vault: Vault, home: SeededHome
) -> None:
    """The delay (60 s) of an exit at 20:59:30 ends in the night window: a night exit. Before, only an exit inside
    the window was watched, and the resident out of bed all night raised nothing."""
    _night_rule(db, home)
    sensor = _code(home, "bed_sensor")
    yesterday = datetime.now(SHANGHAI).date() - timedelta(days=1)
    evening = datetime(yesterday.year, yesterday.month, yesterday.day, 20, 59, 30, tzinfo=SHANGHAI)
    stored_event(db, home, sensor, "bed_exit", {"back": False}, evening)
    process(db, vault)
    tick(db, vault)
    assert _bed_exit_alarms(db, home) == [("bed_exit", "raised")]


def test_an_evening_exit_whose_delay_ends_before_the_night_is_not_watched(
    db: str, vault: Vault, home: SeededHome
) -> None:
    """The rule is about the night: out of bed at 20:50 (back or not by 20:51) is the evening's business."""
    _night_rule(db, home)
    sensor = _code(home, "bed_sensor")
    yesterday = datetime.now(SHANGHAI).date() - timedelta(days=1)
    evening = datetime(yesterday.year, yesterday.month, yesterday.day, 20, 50, tzinfo=SHANGHAI)
    stored_event(db, home, sensor, "bed_exit", {"back": False}, evening)
    process(db, vault)
    tick(db, vault)
    assert _watches(db, sensor) == []
    assert _bed_exit_alarms(db, home) == []


def _told(db: str, alarm_id: int) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM notifications WHERE alarm_id = %s", (alarm_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_faults_held_under_a_gateway_alarm_that_staff_close_are_released_and_told(
    db: str, vault: Vault, home: SeededHome
) -> None:
    """A nurse resolves the gateway's offline alarm ("router rebooted"): what its outage held back is released and
    told, as when the gateway comes back by itself. Before, it stayed held for good: nobody told, no escalation."""
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchone()
    assert row is not None
    nurse = int(row[0])
    with psycopg.connect(db, autocommit=True) as conn:
        on_shift_all_day(conn, home, nurse, 1)
        conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc, position) VALUES (%s, 'email', %s, 1)",
            (nurse, vault.encrypt("nurse@example.org", column="notification_channels.address")),
        )
        conn.execute(
            "UPDATE gateways SET last_seen_at = now() - interval '5 minutes', last_status = 'heartbeat'"
            " WHERE institution_id = %s",
            (home.institution_id,),
        )
    tick(db, vault)
    sensor = _code(home, "bed_sensor")
    put_event(db, home, sensor, "fault", {"fault": "offline", "active": True}, datetime.now(UTC))
    process(db, vault)
    [gateway] = [a for a in alarms_of(db, home) if a["kind"] == "gateway_offline"]
    [fault] = [a for a in alarms_of(db, home) if a["kind"] == "device_offline"]
    assert fault["held_by"] == gateway["id"]
    assert _told(db, fault["id"]) == 0
    principal = Principal(
        user_id=nurse,
        username=home.staff_username,
        role=Role.STAFF,
        institution_id=home.institution_id,
        region_code=None,
    )

    async def resolve(conn: AsyncConn) -> None:
        await service.transition(
            conn,
            principal=principal,
            vault=vault,
            alarm_id=gateway["id"],
            to=State.RESOLVED,
            outcome="router rebooted",
            note="",
            outcome_code=OutcomeCode.DEVICE_ISSUE,
        )

    run(with_conn(db, resolve))
    [fault] = [a for a in alarms_of(db, home) if a["kind"] == "device_offline"]
    assert (fault["state"], fault["held_by"]) == ("raised", None)
    assert _told(db, fault["id"]) > 0
