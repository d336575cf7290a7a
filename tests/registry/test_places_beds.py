"""Buildings, floors, rooms and beds: platform-issued bed codes with check characters, conflicts as 409."""

from __future__ import annotations

from tests.registry.support import World

from eldercare.devices import codes


def test_bed_codes_are_issued_and_valid(world: World) -> None:
    staff = world.users["staff_a"]
    bed = staff.ok(
        "POST",
        f"/api/v1/institutions/{world.a.id}/beds",
        201,
        json={"room_id": world.a.room, "label": "9", "kind": "nursing"},
    )
    assert codes.validate_bed_code(bed["code"]) == bed["code"]
    assert (bed["building"], bed["floor"], bed["room"], bed["occupied"]) == ("1号楼", "1层", "101", False)
    home_bed = staff.ok(
        "POST", f"/api/v1/institutions/{world.a.id}/beds", 201, json={"label": "家床-1", "kind": "ordinary"}
    )
    assert home_bed["room_id"] is None
    again = staff.post(
        f"/api/v1/institutions/{world.a.id}/beds", json={"room_id": world.a.room, "label": "9", "kind": "ordinary"}
    )
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "body.label"
    foreign_room = staff.post(
        f"/api/v1/institutions/{world.a.id}/beds", json={"room_id": world.b.room, "label": "x", "kind": "ordinary"}
    )
    assert foreign_room.status_code == 422 and foreign_room.json()["errors"][0]["field"] == "body.room_id"
    listed = staff.ok(
        "GET", f"/api/v1/institutions/{world.a.id}/beds", params={"room_id": world.a.room, "kind": "nursing"}
    )
    assert bed["id"] in {b["id"] for b in listed} and all(b["kind"] == "nursing" for b in listed)


def test_places_are_listed_and_named_once(world: World) -> None:
    head = world.users["head_a"]
    building = head.ok("POST", f"/api/v1/institutions/{world.a.id}/buildings", 201, json={"name": "2号楼"})
    floor = head.ok("POST", f"/api/v1/buildings/{building['id']}/floors", 201, json={"name": "2层", "level": 2})
    room = head.ok("POST", f"/api/v1/floors/{floor['id']}/rooms", 201, json={"name": "201"})
    again = head.post(f"/api/v1/floors/{floor['id']}/rooms", json={"name": "201"})
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "body.name"
    assert [r["id"] for r in head.ok("GET", f"/api/v1/floors/{floor['id']}/rooms")] == [room["id"]]
    assert [f["level"] for f in head.ok("GET", f"/api/v1/buildings/{building['id']}/floors")] == [2]
    assert "2号楼" in {b["name"] for b in head.ok("GET", f"/api/v1/institutions/{world.a.id}/buildings")}
    assert head.post(f"/api/v1/floors/{floor['id']}/rooms", json={"name": "a\x00b"}).status_code == 422


def test_an_occupied_bed_cannot_be_retired(world: World) -> None:
    staff = world.users["staff_a"]
    occupied = world.a.beds[0]["id"]
    assert staff.ok("GET", f"/api/v1/beds/{occupied}")["occupied"] is True
    reply = staff.patch(f"/api/v1/beds/{occupied}", json={"retired": True})
    assert reply.status_code == 409
    spare = staff.ok(
        "POST", f"/api/v1/institutions/{world.a.id}/beds", 201, json={"label": "spare", "kind": "ordinary"}
    )
    retired = staff.ok("PATCH", f"/api/v1/beds/{spare['id']}", json={"retired": True, "kind": "nursing"})
    assert retired["retired_at"] is not None and retired["kind"] == "nursing"
    assert world.users["reg_4205"].patch(f"/api/v1/beds/{spare['id']}", json={"label": "x"}).status_code == 403
