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
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "body.bed_id"
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


def test_moves_and_bindings_in_the_future_are_refused(world: World) -> None:
    """An admission, transfer, discharge, device binding or unbinding, or the end of a hospital stay dated more than
    the clock leeway (5 minutes) ahead of the server is a 422 on the time's field; nothing changes. A minute ahead is
    taken (the control)."""
    staff = world.users["staff_a"]
    who = _born_1950(world, "蒋淑英")
    bed, other = _bed(world, "f1"), _bed(world, "f2")
    now = datetime.now(UTC)
    later = (now + timedelta(minutes=30)).isoformat()
    admit = staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": bed["id"], "at": later})
    assert _error(admit, 422) == ("body.at", "in the future")
    born = staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": bed["id"], "at": "1950-05-01T08:00:00+08:00"})
    assert _error(born, 422) == ("body.at", "before the resident was born (1950-06-01)")
    assert staff.ok("GET", f"/api/v1/residents/{who}")["status"] == "registered"
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": bed["id"]})
    moved = staff.post(f"/api/v1/residents/{who}/transfer", json={"bed_id": other["id"], "at": later})
    assert _error(moved, 422) == ("body.at", "in the future")
    left = staff.post(f"/api/v1/residents/{who}/discharge", json={"at": later})
    assert _error(left, 422) == ("body.at", "in the future")
    device = staff.ok(
        "POST", f"/api/v1/institutions/{world.a.id}/devices", 201, json={"code": "WR-F-1", "kind": "wearable"}
    )
    bound = staff.post(f"/api/v1/devices/{device['id']}/bind", json={"resident_id": who, "at": later})
    assert _error(bound, 422) == ("body.at", "in the future")
    assert staff.ok("GET", f"/api/v1/devices/{device['id']}/bindings") == []
    staff.ok("POST", f"/api/v1/devices/{device['id']}/bind", 201, json={"resident_id": who})
    unbound = staff.post(f"/api/v1/devices/{device['id']}/unbind", json={"at": later})
    assert _error(unbound, 422) == ("body.at", "in the future")
    stay = staff.post(
        f"/api/v1/residents/{who}/hospital-stays",
        json={"hospital": "某医院", "start": (now - timedelta(days=1)).isoformat(), "end": later},
    )
    assert _error(stay, 422) == ("body.end", "in the future")
    opened = staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": "某医院", "start": (now - timedelta(days=1)).isoformat()},
    )
    back = staff.post(f"/api/v1/hospital-stays/{opened['id']}/end", json={"at": later})
    assert _error(back, 422) == ("body.at", "in the future")
    # nothing changed: the same bed, the binding open, the stay open
    assert staff.ok("GET", f"/api/v1/residents/{who}")["bed_id"] == bed["id"]
    assert [b["end"] for b in staff.ok("GET", f"/api/v1/devices/{device['id']}/bindings")] == [None]
    assert [s["end"] for s in staff.ok("GET", f"/api/v1/residents/{who}/hospital-stays")] == [None]
    # the control: a minute or two ahead of the server's clock is "now"
    soon = datetime.now(UTC) + timedelta(minutes=1)
    staff.ok("POST", f"/api/v1/hospital-stays/{opened['id']}/end", json={"at": soon.isoformat()})
    staff.ok("POST", f"/api/v1/devices/{device['id']}/unbind", 204, json={"at": soon.isoformat()})
    staff.ok("POST", f"/api/v1/residents/{who}/transfer", 204, json={"bed_id": other["id"], "at": soon.isoformat()})
    staff.ok("POST", f"/api/v1/residents/{who}/discharge", 204, json={"at": (soon + timedelta(minutes=1)).isoformat()})
    assert staff.ok("GET", f"/api/v1/residents/{who}")["status"] == "discharged"


def test_errors_name_the_field_with_where_it_was_sent(world: World) -> None:
    """Every 4xx of the stay, bed and device endpoints names the bad field as FastAPI's own validation does: a field
    of the body as ``body.<name>``, the object of the path as ``path.<name>``."""
    staff = world.users["staff_a"]
    who = _resident(world, "戴桂香")
    bed, retired = _bed(world, "n1"), _bed(world, "n2")
    start = datetime.now(UTC) - timedelta(days=4)
    # hospital stays: an end before the start, an overlap, an end of an ended stay
    backwards = staff.post(
        f"/api/v1/residents/{who}/hospital-stays",
        json={"hospital": "某医院", "start": start.isoformat(), "end": (start - timedelta(hours=1)).isoformat()},
    )
    assert _error(backwards, 422) == ("body.end", "not after start")
    stay = staff.ok(
        "POST", f"/api/v1/residents/{who}/hospital-stays", 201, json={"hospital": "某医院", "start": start.isoformat()}
    )
    overlap = staff.post(
        f"/api/v1/residents/{who}/hospital-stays",
        json={"hospital": "别的医院", "start": (start + timedelta(days=1)).isoformat()},
    )
    assert _error(overlap, 409)[0] == "body.start"
    too_early = staff.post(f"/api/v1/hospital-stays/{stay['id']}/end", json={"at": start.isoformat()})
    assert _error(too_early, 409)[0] == "body.at"
    staff.ok("POST", f"/api/v1/hospital-stays/{stay['id']}/end", json={})
    assert _error(staff.post(f"/api/v1/hospital-stays/{stay['id']}/end", json={}), 409)[0] == "body.at"
    # beds: another home's bed, a retired bed, an occupied bed, the bed one is in; a resident in the wrong state
    foreign = staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": world.b.beds[0]["id"]})
    assert _error(foreign, 422) == ("body.bed_id", "unknown bed")
    staff.ok("PATCH", f"/api/v1/beds/{retired['id']}", json={"retired": True})
    assert _error(staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": retired["id"]}), 409)[0] == (
        "body.bed_id"
    )
    assert _error(staff.post(f"/api/v1/residents/{who}/transfer", json={"bed_id": bed["id"]}), 409)[0] == (
        "path.resident_id"
    )
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": bed["id"]})
    other = _resident(world, "任秀梅")
    assert _error(staff.post(f"/api/v1/residents/{other}/admit", json={"bed_id": bed["id"]}), 409)[0] == "body.bed_id"
    assert _error(staff.post(f"/api/v1/residents/{who}/transfer", json={"bed_id": bed["id"]}), 409)[0] == "body.bed_id"
    assert _error(staff.post(f"/api/v1/residents/{who}/admit", json={"bed_id": bed["id"]}), 409)[0] == (
        "path.resident_id"
    )
    occupied = staff.patch(f"/api/v1/beds/{bed['id']}", json={"retired": True})
    assert _error(occupied, 409) == ("body.retired", "discharge first")
    foreign_room = staff.post(
        f"/api/v1/institutions/{world.a.id}/beds", json={"room_id": world.b.room, "label": "n3", "kind": "ordinary"}
    )
    assert _error(foreign_room, 422) == ("body.room_id", "unknown room")
    same_label = staff.post(
        f"/api/v1/institutions/{world.a.id}/beds", json={"room_id": world.a.room, "label": "n1", "kind": "ordinary"}
    )
    assert _error(same_label, 409)[0] == "body.label"
    # devices: another home's bed or resident, an unbound device, a retired device, a code taken
    device = staff.ok(
        "POST", f"/api/v1/institutions/{world.a.id}/devices", 201, json={"code": "BT-N-1", "kind": "button"}
    )
    taken = staff.post(f"/api/v1/institutions/{world.a.id}/devices", json={"code": "BT-N-1", "kind": "button"})
    assert _error(taken, 409)[0] == "body.code"
    to_b_bed = staff.post(f"/api/v1/devices/{device['id']}/bind", json={"bed_id": world.b.beds[0]["id"]})
    assert _error(to_b_bed, 422) == ("body.bed_id", "unknown")
    to_b_resident = staff.post(f"/api/v1/devices/{device['id']}/bind", json={"resident_id": world.b.residents[0]["id"]})
    assert _error(to_b_resident, 422) == ("body.resident_id", "unknown")
    assert _error(staff.post(f"/api/v1/devices/{device['id']}/unbind", json={}), 409) == ("path.device_id", "not bound")
    staff.ok("PATCH", f"/api/v1/devices/{device['id']}", json={"retired": True})
    retired_device = staff.post(f"/api/v1/devices/{device['id']}/bind", json={"bed_id": bed["id"]})
    assert _error(retired_device, 409) == ("path.device_id", "retired")
    # a death recorded twice
    died = datetime.now(UTC).isoformat()
    staff.ok("POST", f"/api/v1/residents/{who}/death", 204, json={"died_at": died, "source": "institution"})
    again = staff.post(f"/api/v1/residents/{who}/death", json={"died_at": died, "source": "institution"})
    assert _error(again, 409)[0] == "path.resident_id"
