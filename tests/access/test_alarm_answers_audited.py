"""The answers of acknowledge, attend, resolve and cancel show the alarm (its detail, its outcome, its resident) as
``GET /alarms/{id}`` does, so each is audited like it: one ``read_health`` entry per answer naming the alarm and its
resident, written by the same helper; a refused move shows nothing and logs nothing. From the outside: HTTP to the
platform, then the audit log read from the database."""

from __future__ import annotations

from typing import Any

import psycopg
from tests.registry.support import World


def _alarm(world: World) -> int:
    """A fall of home A's first resident, raised now."""
    a = world.a
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " last_event_at) VALUES (%s, 'fall', 'emergency', %s, %s, %s, now(), now()) RETURNING id",
            (a.id, a.device["id"], a.beds[0]["id"], a.residents[0]["id"]),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _reads(world: World, username: str, alarm_id: int) -> list[dict[str, Any]]:
    """The audit entries of ``username`` naming ``alarm_id``, oldest first, without their sequence and time."""
    with psycopg.connect(world.db.url) as conn:
        rows = conn.execute(
            "SELECT action, object_type, object_id, institution_id, detail FROM audit_log"
            " WHERE actor = %s AND detail->'alarms' @> to_jsonb(%s::bigint) ORDER BY seq",
            (username, alarm_id),
        ).fetchall()
    return [
        {"action": r[0], "object_type": r[1], "object_id": r[2], "institution_id": r[3], "detail": r[4]} for r in rows
    ]


def test_each_answer_of_a_move_is_audited_as_a_read_of_the_alarm(world: World) -> None:
    staff = world.users["staff_a"]
    resolved, cancelled = _alarm(world), _alarm(world)

    staff.ok("POST", f"/api/v1/alarms/{resolved}/acknowledge", json={"note": "看到了"})
    staff.ok("POST", f"/api/v1/alarms/{resolved}/attend", json={})
    staff.ok("POST", f"/api/v1/alarms/{resolved}/resolve", json={"outcome": "real_event", "note": "扶起"})
    staff.ok("POST", f"/api/v1/alarms/{cancelled}/cancel", json={"outcome": "误触", "outcome_code": "accidental_press"})
    staff.ok("GET", f"/api/v1/alarms/{resolved}")

    reads = _reads(world, staff.username, resolved)
    # the same entry as the GET of the alarm, but for what it was shown as
    shown = reads[-1]
    assert shown["detail"]["as"] == "alarm"
    assert shown["action"] == "read_health" and shown["object_id"] == resolved
    assert shown["institution_id"] == world.a.id
    assert shown["detail"]["residents"] == [world.a.residents[0]["id"]]
    assert [r["detail"]["as"] for r in reads] == ["acknowledge", "attend", "resolve", "alarm"]
    for read in reads[:-1]:
        assert {**read, "detail": {**read["detail"], "as": "alarm"}} == shown
    assert [r["detail"]["as"] for r in _reads(world, staff.username, cancelled)] == ["cancel"]


def test_a_refused_move_logs_no_read(world: World) -> None:
    staff, family, regulator = world.users["staff_a"], world.users["family_a"], world.users["reg_4205"]
    alarm_id = _alarm(world)
    staff.ok("POST", f"/api/v1/alarms/{alarm_id}/resolve", json={"outcome": "real_event"})
    before = len(_reads(world, staff.username, alarm_id))

    assert staff.post(f"/api/v1/alarms/{alarm_id}/acknowledge", json={}).status_code == 409  # closed already
    assert (
        staff.post(f"/api/v1/alarms/{alarm_id}/cancel", json={"outcome": "x", "outcome_code": "?"}).status_code == 422
    )
    assert world.users["staff_b"].post(f"/api/v1/alarms/{alarm_id}/attend", json={}).status_code == 404
    for reader in (family, regulator):  # they read alarms, they do not move them
        assert reader.post(f"/api/v1/alarms/{alarm_id}/acknowledge", json={}).status_code == 403

    assert len(_reads(world, staff.username, alarm_id)) == before
    for reader in (family, regulator, world.users["staff_b"]):
        assert _reads(world, reader.username, alarm_id) == []
