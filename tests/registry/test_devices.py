"""Devices and their bindings to beds or residents over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.registry.support import World


def test_devices_bind_rebind_unbind_and_retire(world: World) -> None:
    staff = world.users["staff_a"]
    device = staff.ok(
        "POST",
        f"/api/v1/institutions/{world.a.id}/devices",
        201,
        json={"code": "WB-A-7", "kind": "wristband", "vendor": "某厂", "heartbeat_s": 300},
    )
    again = staff.post(f"/api/v1/institutions/{world.a.id}/devices", json={"code": "WB-A-7", "kind": "button"})
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "body.code"
    bad = staff.post(f"/api/v1/institutions/{world.a.id}/devices", json={"code": "bad code/1", "kind": "button"})
    assert bad.status_code == 422
    resident = world.a.residents[0]["id"]
    first = staff.ok("POST", f"/api/v1/devices/{device['id']}/bind", 201, json={"resident_id": resident})
    assert first["person_code"] == world.a.residents[0]["person_code"] and first["end"] is None
    assert staff.ok("GET", f"/api/v1/devices/{device['id']}")["resident_id"] == resident
    foreign = staff.post(f"/api/v1/devices/{device['id']}/bind", json={"bed_id": world.b.beds[0]["id"]})
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "body.bed_id"
    assert staff.post(f"/api/v1/devices/{device['id']}/bind", json={}).status_code == 422
    staff.ok("POST", f"/api/v1/devices/{device['id']}/bind", 201, json={"bed_id": world.a.beds[1]["id"]})
    bindings = staff.ok("GET", f"/api/v1/devices/{device['id']}/bindings")
    assert [b["end"] is None for b in bindings] == [False, True]
    assert bindings[0]["end"] == bindings[1]["start"]
    staff.ok("POST", f"/api/v1/devices/{device['id']}/unbind", 204, json={})
    assert staff.post(f"/api/v1/devices/{device['id']}/unbind", json={}).status_code == 409
    retired = staff.ok("PATCH", f"/api/v1/devices/{device['id']}", json={"retired": True, "model": "X2"})
    assert retired["retired_at"] and retired["model"] == "X2"
    assert staff.post(f"/api/v1/devices/{device['id']}/bind", json={"bed_id": world.a.beds[1]["id"]}).status_code == 409
    listed = staff.ok("GET", f"/api/v1/institutions/{world.a.id}/devices", params={"kind": "wristband"})
    assert [d["code"] for d in listed] == ["WB-A-7"]
    assert world.users["reg_4205"].ok("GET", f"/api/v1/devices/{device['id']}")["code"] == "WB-A-7"
    assert world.users["reg_4205"].post(f"/api/v1/devices/{device['id']}/unbind", json={}).status_code == 403


def test_a_backdated_bind_or_unbind_names_the_time_the_binding_began(world: World) -> None:
    """Binding or unbinding a device at a time before its current binding began is a 409 on body.at saying
    when it began (the database would otherwise refuse a range that ends before it starts)."""
    staff = world.users["staff_a"]
    device = staff.ok(
        "POST", f"/api/v1/institutions/{world.a.id}/devices", 201, json={"code": "BS-BACK-1", "kind": "bed_sensor"}
    )
    began = datetime.now(UTC) - timedelta(days=1)
    staff.ok(
        "POST",
        f"/api/v1/devices/{device['id']}/bind",
        201,
        json={"bed_id": world.a.beds[2]["id"], "at": began.isoformat()},
    )
    earlier = (began - timedelta(hours=1)).isoformat()
    for path, body in (("bind", {"bed_id": world.a.beds[1]["id"], "at": earlier}), ("unbind", {"at": earlier})):
        reply = staff.post(f"/api/v1/devices/{device['id']}/{path}", json=body)
        assert reply.status_code == 409, reply.text
        [error] = reply.json()["errors"]
        assert error["field"] == "body.at"
        assert error["reason"] == f"before the current binding began ({began.isoformat()})"
    [binding] = staff.ok("GET", f"/api/v1/devices/{device['id']}/bindings")
    assert binding["end"] is None
    staff.ok(
        "POST", f"/api/v1/devices/{device['id']}/unbind", 204, json={"at": (began + timedelta(hours=1)).isoformat()}
    )
    staff.ok("POST", f"/api/v1/devices/{device['id']}/unbind", 409, json={})
