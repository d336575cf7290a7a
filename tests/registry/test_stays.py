"""Admissions, transfers, discharges (who was in which bed when), hospital stays and deaths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from tests.registry.support import World, new_id_number


def _resident(world: World, name: str) -> int:
    body = {"name": name, "id_number": new_id_number("420502")}
    return int(world.users["staff_a"].ok("POST", f"/api/v1/institutions/{world.a.id}/residents", 201, json=body)["id"])


def _bed(world: World, label: str) -> dict[str, object]:
    staff = world.users["staff_a"]
    return dict(
        staff.ok(
            "POST",
            f"/api/v1/institutions/{world.a.id}/beds",
            201,
            json={"room_id": world.a.room, "label": label, "kind": "nursing"},
        )
    )


def test_a_stay_moves_through_beds_and_the_history_tells_who_was_where(world: World) -> None:
    staff = world.users["staff_a"]
    who = _resident(world, "周春梅")
    first, second = _bed(world, "s1"), _bed(world, "s2")
    t0 = datetime.now(UTC) - timedelta(days=10)
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": first["id"], "at": t0.isoformat()})
    other = _resident(world, "吴国华")
    taken = staff.post(f"/api/v1/residents/{other}/admit", json={"bed_id": first["id"]})
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "bed_id"
    assert staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": second["id"]}).status_code == 409
    t1 = t0 + timedelta(days=3)
    staff.ok("POST", f"/api/v1/residents/{who}/transfer", 204, json={"bed_id": second["id"], "at": t1.isoformat()})
    assert staff.ok("GET", f"/api/v1/residents/{who}")["bed_id"] == second["id"]
    t2 = t1 + timedelta(days=2)
    staff.ok("POST", f"/api/v1/residents/{who}/discharge", 204, json={"at": t2.isoformat(), "note": "回家"})
    history = staff.ok("GET", f"/api/v1/residents/{who}/beds")
    assert [(h["bed_id"], h["end_reason"]) for h in history] == [(first["id"], "transfer"), (second["id"], "discharge")]
    assert datetime.fromisoformat(history[0]["end"]) == datetime.fromisoformat(history[1]["start"]) == t1
    bed_history = staff.ok("GET", f"/api/v1/beds/{first['id']}/history")
    assert [h["resident_id"] for h in bed_history] == [who]
    assert staff.ok("GET", f"/api/v1/residents/{who}")["status"] == "discharged"
    assert staff.post(f"/api/v1/residents/{who}/discharge", json={}).status_code == 409
    staff.ok("POST", f"/api/v1/residents/{other}/admit", 204, json={"bed_id": first["id"]})  # free again


def test_a_discharge_before_the_admission_is_refused(world: World) -> None:
    staff = world.users["staff_a"]
    who = _resident(world, "郑玉兰")
    bed = _bed(world, "s3")
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": bed["id"]})
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    reply = staff.post(f"/api/v1/residents/{who}/discharge", json={"at": past})
    assert reply.status_code == 422
    assert staff.post(f"/api/v1/residents/{who}/transfer", json={"bed_id": world.b.beds[2]["id"]}).status_code == 422


def test_hospital_stays_and_death(world: World) -> None:
    staff = world.users["staff_a"]
    who = _resident(world, "冯文华")
    bed = _bed(world, "s4")
    start = datetime.now(UTC) - timedelta(days=5)
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": bed["id"], "at": start.isoformat()})
    stay = staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": "宜昌市第一人民医院", "start": (start + timedelta(days=1)).isoformat()},
    )
    overlap = staff.post(
        f"/api/v1/residents/{who}/hospital-stays",
        json={"hospital": "别的医院", "start": (start + timedelta(days=2)).isoformat()},
    )
    assert overlap.status_code == 409
    ended = staff.ok(
        "POST", f"/api/v1/hospital-stays/{stay['id']}/end", json={"at": (start + timedelta(days=3)).isoformat()}
    )
    assert ended["end"] is not None
    assert staff.post(f"/api/v1/hospital-stays/{stay['id']}/end", json={}).status_code == 409
    reads = "SELECT count(*) FROM audit_log WHERE action = 'read_health' AND object_id = %s"
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        before = conn.execute(reads, (who,)).fetchone()
        assert len(staff.ok("GET", f"/api/v1/residents/{who}/hospital-stays")) == 1
        assert before is not None and conn.execute(reads, (who,)).fetchone() == (before[0] + 1,)  # audited
    assert staff.ok("GET", f"/api/v1/beds/{bed['id']}")["occupied"] is True
    died = datetime.now(UTC) - timedelta(hours=1)
    staff.ok(
        "POST",
        f"/api/v1/residents/{who}/death",
        204,
        json={"died_at": died.isoformat(), "source": "institution", "place": "本院"},
    )
    assert staff.ok("GET", f"/api/v1/residents/{who}")["status"] == "deceased"
    assert staff.ok("GET", f"/api/v1/beds/{bed['id']}")["occupied"] is False
    assert staff.ok("GET", f"/api/v1/residents/{who}/beds")[-1]["end_reason"] == "death"
    again = staff.post(f"/api/v1/residents/{who}/death", json={"died_at": died.isoformat(), "source": "family"})
    assert again.status_code == 409
    assert staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": bed["id"]}).status_code == 409
