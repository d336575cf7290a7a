"""Admissions, transfers, discharges (who was in which bed when), hospital stays and deaths."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg
import pytest
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
    assert reply.status_code == 409  # a conflict with the stay, named, not a database DataException
    assert reply.json()["errors"][0]["field"] == "body.at"
    assert "before the current stay in a bed began" in reply.json()["errors"][0]["reason"]
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


def _error(reply: httpx.Response, status: int) -> tuple[str, str]:
    assert reply.status_code == status, reply.text
    errors = reply.json()["errors"]
    assert len(errors) == 1
    return errors[0]["field"], errors[0]["reason"]


def _born_1950(world: World, name: str) -> int:
    body = {"name": name, "id_number": new_id_number("420502", born=date(1950, 6, 1))}
    return int(world.users["staff_a"].ok("POST", f"/api/v1/institutions/{world.a.id}/residents", 201, json=body)["id"])


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (datetime(2199, 6, 1, tzinfo=UTC), "in the future"),
        (datetime.now(UTC) + timedelta(minutes=30), "in the future"),
        (datetime(1950, 5, 31, 12, tzinfo=UTC), "before the resident was born (1950-06-01)"),
    ],
)
def test_a_death_or_hospital_stay_at_an_impossible_time_is_refused(world: World, when: datetime, reason: str) -> None:
    """A death or a hospital stay in the future (beyond a few minutes' clock drift) or before the resident was
    born is a 422 naming the field; nothing is recorded and the resident keeps the bed."""
    staff = world.users["staff_a"]
    who = _born_1950(world, "钱桂芳")
    bed = _bed(world, f"t{when.year}{when.minute}")
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": bed["id"]})
    stay = staff.post(f"/api/v1/residents/{who}/hospital-stays", json={"hospital": "某医院", "start": when.isoformat()})
    assert _error(stay, 422) == ("body.start", reason)
    death = staff.post(f"/api/v1/residents/{who}/death", json={"died_at": when.isoformat(), "source": "family"})
    assert _error(death, 422) == ("body.died_at", reason)
    assert staff.ok("GET", f"/api/v1/residents/{who}")["status"] == "admitted"
    assert staff.ok("GET", f"/api/v1/residents/{who}/hospital-stays") == []
    history = staff.ok("GET", f"/api/v1/residents/{who}/beds")
    assert [h["end"] for h in history] == [None]


def test_a_death_and_a_stay_now_or_just_after_birth_are_taken(world: World) -> None:
    """The control: a minute ahead of the server's clock is within the tolerance; the birth day itself is fine."""
    staff = world.users["staff_a"]
    who = _born_1950(world, "孙丽华")
    staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": "某医院", "start": "1950-06-01T08:00:00+08:00", "end": "1950-06-10T08:00:00+08:00"},
    )
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    staff.ok("POST", f"/api/v1/residents/{who}/death", 204, json={"died_at": soon, "source": "institution"})


def test_backdated_moves_name_the_time_the_stay_began(world: World) -> None:
    """A transfer, discharge or death dated before the current bed stay (or a worn device's binding) began is a
    409 on the field, saying when it began, not a database error about a range."""
    staff = world.users["staff_a"]
    who = _resident(world, "何秀珍")
    bed, other = _bed(world, "u1"), _bed(world, "u2")
    began = datetime.now(UTC) - timedelta(days=2)
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": bed["id"], "at": began.isoformat()})
    earlier = (began - timedelta(days=1)).isoformat()
    field, reason = _error(
        staff.post(f"/api/v1/residents/{who}/transfer", json={"bed_id": other["id"], "at": earlier}), 409
    )
    assert field == "body.at" and reason.startswith("before the current stay in a bed began (")
    assert datetime.fromisoformat(reason.split("(")[1].rstrip(")")) == began
    field, _ = _error(staff.post(f"/api/v1/residents/{who}/discharge", json={"at": earlier}), 409)
    assert field == "body.at"
    died = staff.post(f"/api/v1/residents/{who}/death", json={"died_at": earlier, "source": "family"})
    assert _error(died, 409)[0] == "body.died_at"
    # a worn device bound after the admission: a discharge between the two is refused as well
    device = staff.ok(
        "POST", f"/api/v1/institutions/{world.a.id}/devices", 201, json={"code": "WR-U-1", "kind": "wearable"}
    )
    bound = began + timedelta(days=1)
    staff.ok("POST", f"/api/v1/devices/{device['id']}/bind", 201, json={"resident_id": who, "at": bound.isoformat()})
    between = (began + timedelta(hours=12)).isoformat()
    field, reason = _error(staff.post(f"/api/v1/residents/{who}/discharge", json={"at": between}), 409)
    assert field == "body.at" and "binding" in reason
    assert staff.ok("GET", f"/api/v1/residents/{who}")["status"] == "admitted"
    staff.ok("POST", f"/api/v1/residents/{who}/discharge", 204, json={"at": (bound + timedelta(hours=1)).isoformat()})


def test_a_register_upload_for_an_unknown_region_names_the_query_field(world: World) -> None:
    data = f"id_number,died_on\n{new_id_number()},2026-01-05\n".encode()
    reply = world.admin.post(
        "/api/v1/subsidy/death-register", params={"region": "999999"}, files={"file": ("d.csv", data)}
    )
    assert _error(reply, 422)[0] == "query.region"
