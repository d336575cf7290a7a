"""Who is on shift after midnight, and quiet hours that would last the whole day."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from tests.alerting.test_api import _auth, _client, _family_user

from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome

SHANGHAI = ZoneInfo("Asia/Shanghai")
FRIDAY, SATURDAY = 5, 6


def _on_shift(db: str, starts: str, ends: str, weekdays: list[int], at: datetime) -> bool:
    with psycopg.connect(db) as conn:
        [(on,)] = conn.execute(
            "SELECT on_shift(%s::time, %s::time, %s::smallint[], 'Asia/Shanghai', %s)", (starts, ends, weekdays, at)
        ).fetchall()
    return bool(on)


@pytest.mark.parametrize(
    ("weekdays", "at", "expected"),
    [
        ([FRIDAY], datetime(2026, 11, 27, 23, 30, tzinfo=SHANGHAI), True),  # Friday 23:30
        ([FRIDAY], datetime(2026, 11, 28, 2, 0, tzinfo=SHANGHAI), True),  # Saturday 02:00: still Friday's night
        ([FRIDAY], datetime(2026, 11, 28, 6, 0, tzinfo=SHANGHAI), False),  # Saturday 06:00: over
        ([FRIDAY], datetime(2026, 11, 27, 2, 0, tzinfo=SHANGHAI), False),  # Friday 02:00: Thursday's night
        ([SATURDAY], datetime(2026, 11, 28, 2, 0, tzinfo=SHANGHAI), False),  # Saturday's nurse starts at 22:00
        ([SATURDAY], datetime(2026, 11, 28, 22, 0, tzinfo=SHANGHAI), True),
        ([7], datetime(2026, 11, 30, 1, 0, tzinfo=SHANGHAI), True),  # Sunday night into Monday
    ],
)
def test_a_night_shift_belongs_to_the_weekday_it_starts_on(
    db: str, weekdays: list[int], at: datetime, expected: bool
) -> None:
    assert _on_shift(db, "22:00", "06:00", weekdays, at) is expected


def test_day_shifts_and_whole_days_are_as_before(db: str) -> None:
    monday_noon = datetime(2026, 11, 30, 12, 0, tzinfo=SHANGHAI)
    assert _on_shift(db, "08:00", "16:00", [1], monday_noon)
    assert not _on_shift(db, "08:00", "16:00", [2], monday_noon)
    assert not _on_shift(db, "08:00", "16:00", [1], datetime(2026, 11, 30, 16, 0, tzinfo=SHANGHAI))
    assert _on_shift(db, "00:00", "00:00", [1], monday_noon)
    assert _on_shift(db, "00:00", "00:00", [1], datetime(2026, 11, 30, 0, 0, tzinfo=SHANGHAI))
    assert not _on_shift(db, "00:00", "00:00", [1], datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI))


def test_quiet_hours_from_equal_to_are_refused_on_quiet_to(db: str, vault: Vault, home: SeededHome) -> None:
    user = _family_user(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, user, "password-123")
        same = {"quiet_from": "22:00:00", "quiet_to": "22:00:00"}
        reply = await client.put("/api/v1/me/notifications/prefs", headers=headers, json=same)
        assert reply.status_code == 422
        [error] = reply.json()["errors"]
        assert error["field"] == "body.quiet_to" and "whole day" in error["reason"]
        assert (await client.get("/api/v1/me/notifications/prefs", headers=headers)).json()["quiet_from"] is None

    _client(db, vault)(work)


def test_the_database_refuses_quiet_hours_that_last_the_whole_day(db: str, home: SeededHome) -> None:
    with psycopg.connect(db) as conn:
        [(user_id,)] = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchall()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO notification_prefs (user_id, quiet_from, quiet_to) VALUES (%s, %s, %s)",
                (user_id, time(22), time(22)),
            )
