"""Who may read the alarm response-time reports, from the outside: a report counts every alarm of a home, the
other residents' too, and the shift report judges the staff's shifts, so families get 403 and nothing of it,
whatever the grouping; the home's staff and head, the region's regulator and admins read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tests.registry.support import World


@pytest.fixture(scope="module")
def window(world: World) -> dict[str, str]:
    """An alarm of a resident of home A that family_a is not linked to, on a named all-day shift."""
    a = world.a
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " last_event_at) VALUES (%s, 'fall', 'emergency', %s, %s, %s, now(), now())",
            (a.id, a.device["id"], a.beds[1]["id"], a.residents[1]["id"]),
        )
    world.users["head_a"].ok(
        "POST",
        "/api/v1/rosters",
        201,
        json={
            "institution_code": a.code,
            "username": world.users["staff_a"].username,
            "tier": 1,
            "name": "报表班",
            "starts": "00:00:00",
            "ends": "00:00:00",
        },
    )
    now = datetime.now(UTC)
    return {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}


@pytest.mark.parametrize("by", ["institution", "shift"])
def test_a_family_user_of_the_home_gets_no_alarm_report(world: World, window: dict[str, str], by: str) -> None:
    a = world.a
    params = {**window, "by": by}
    reply = world.users["family_a"].get("/api/v1/alarms/report", params=params)
    assert reply.status_code == 403, reply.text
    assert set(reply.json()) == {"detail", "errors"}
    assert a.code not in reply.text and "报表班" not in reply.text

    for reader in ("staff_a", "head_a", "reg_4205"):
        rows = world.users[reader].ok("GET", "/api/v1/alarms/report", params=params)
        mine = [r for r in rows if r["institution_code"] == a.code]
        assert mine and sum(r["alarms"] for r in mine) >= 1, (reader, rows)
        if by == "shift":
            assert any("报表班" in (r["shift"] or "") for r in mine), (reader, rows)
    assert world.admin.ok("GET", "/api/v1/alarms/report", params=params)
