"""Night rounds logged by staff through the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.registry.support import Client
from tests.supervision.world import World


def test_staff_log_rounds_of_their_floors(as_user: Callable[[str], Client], world: World) -> None:
    nurse = as_user("sup-nurse-a")
    done = datetime.now(UTC) - timedelta(minutes=5)
    logged = nurse.ok(
        "POST", "/api/v1/supervision/rounds", 201,
        json={"floor_id": world.a.floors[1], "done_at": done.isoformat(), "note": "2层巡视 均安睡"},
    )  # fmt: skip
    assert logged["floor_id"] == world.a.floors[1] and logged["floor"] == "1号楼 2层"
    assert logged["institution_id"] == world.a.id and logged["user_id"] == world.users["sup-nurse-a"]
    whole = nurse.ok("POST", "/api/v1/supervision/rounds", 201, json={})
    assert whole["floor_id"] is None
    listed = as_user("sup-head-a").ok("GET", "/api/v1/supervision/rounds")
    assert {r["id"] for r in listed} >= {logged["id"], whole["id"]}
    assert all(r["institution_id"] == world.a.id for r in listed)
    assert as_user("sup-head-d").ok("GET", "/api/v1/supervision/rounds") == []


def test_bad_rounds_are_refused(as_user: Callable[[str], Client], world: World) -> None:
    nurse = as_user("sup-nurse-a")
    other_floor = nurse.post("/api/v1/supervision/rounds", json={"floor_id": world.b.floors[0]})
    assert other_floor.status_code == 404
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    reply = nurse.post("/api/v1/supervision/rounds", json={"done_at": future})
    assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == "body.done_at"
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    assert nurse.post("/api/v1/supervision/rounds", json={"done_at": old}).status_code == 422
    assert nurse.post("/api/v1/supervision/rounds", json={"floor_id": 0}).status_code == 422
    assert as_user("sup-city").post("/api/v1/supervision/rounds", json={}).status_code == 403
