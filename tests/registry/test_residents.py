"""Residents: ID numbers checked, stored encrypted, shown masked; reads audited; the ID in clear only through
the audited endpoint for heads; contacts with consent, encrypted, masked for regulators."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import psycopg
from tests.registry.support import World, new_id_number


def _audit_count(world: World, action: str, object_id: int | None = None) -> int:
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = %s AND (%s::bigint IS NULL OR object_id = %s)",
            (action, object_id, object_id),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_register_masks_and_encrypts(world: World) -> None:
    staff = world.users["staff_a"]
    number = new_id_number("420502", born=date(1944, 5, 6), sex="male")
    resident = staff.ok(
        "POST",
        f"/api/v1/institutions/{world.a.id}/residents",
        201,
        json={
            "name": "赵德明",
            "id_number": number,
            "capability": "partly_disabled",
            "fall_risk": "medium",
            "wander_risk": True,
            "heart_rate_min": 45,
            "heart_rate_max": 100,
        },
    )
    assert resident["id_number_masked"] == number[:6] + "********" + number[14:]
    assert re.fullmatch(r"P[0-9A-Y]{10}", resident["person_code"])
    assert resident["sex"] == "male" and resident["age"] >= 81 and resident["name"] == "赵德明"
    assert number not in staff.get(f"/api/v1/residents/{resident['id']}").text
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute("SELECT name_enc, id_number_enc FROM residents WHERE id = %s", (resident["id"],)).fetchone()
    assert row is not None
    assert "赵德明".encode() not in bytes(row[0]) and number.encode() not in bytes(row[1])
    assert world.vault.decrypt(bytes(row[1]), column="residents.id_number") == number
    again = staff.post(f"/api/v1/institutions/{world.a.id}/residents", json={"name": "赵德明", "id_number": number})
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "body.id_number"


def test_bad_id_numbers_are_refused_without_echoing_them(world: World) -> None:
    staff = world.users["staff_a"]
    number = new_id_number()
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    reply = staff.post(f"/api/v1/institutions/{world.a.id}/residents", json={"name": "钱", "id_number": wrong})
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "body.id_number" and "check digit" in reply.text
    assert wrong not in reply.text
    reply = staff.post(
        f"/api/v1/institutions/{world.a.id}/residents",
        json={"name": "钱", "id_number": number, "heart_rate_min": 120, "heart_rate_max": 100},
    )
    assert reply.status_code == 422 and "heart_rate_min" in reply.text


def test_reads_are_audited_and_regulators_see_masked_names(world: World) -> None:
    resident = world.a.residents[0]["id"]
    name = world.names[resident]
    before = _audit_count(world, "read_personal", resident)
    assert world.users["staff_a"].ok("GET", f"/api/v1/residents/{resident}")["name"] == name
    assert _audit_count(world, "read_personal", resident) == before + 1
    masked = world.users["reg_4205"].ok("GET", f"/api/v1/residents/{resident}")["name"]
    assert masked != name and masked[0] == name[0] and "*" in masked
    family = world.users["family_a"]
    assert family.ok("GET", f"/api/v1/residents/{resident}")["name"] == name
    assert family.get(f"/api/v1/residents/{world.a.residents[1]['id']}").status_code == 404
    listed = family.ok("GET", f"/api/v1/institutions/{world.a.id}/residents")
    assert [r["id"] for r in listed] == [resident]
    updated = world.users["staff_a"].ok(
        "PATCH", f"/api/v1/residents/{resident}", json={"fall_risk": "medium", "resp_rate_max": 28}
    )
    assert (updated["fall_risk"], updated["resp_rate_max"]) == ("medium", 28)


def test_the_id_number_in_clear_only_for_heads_with_a_reason_audited(world: World) -> None:
    resident = world.a.residents[1]["id"]
    path = f"/api/v1/residents/{resident}/id-number"
    assert world.users["staff_a"].post(path, json={"reason": "subsidy claim"}).status_code == 403
    assert world.users["reg_4205"].post(path, json={"reason": "subsidy claim"}).status_code == 403
    assert world.users["head_b"].post(path, json={"reason": "subsidy claim"}).status_code == 404
    before = _audit_count(world, "reveal_id_number", resident)
    revealed = world.users["head_a"].ok("POST", path, json={"reason": "subsidy claim 2026-11"})
    assert revealed["id_number"] == world.id_numbers[resident]
    assert _audit_count(world, "reveal_id_number", resident) == before + 1
    entries = world.admin.ok(
        "GET", "/api/v1/audit", params={"object_type": "resident", "object_id": resident, "limit": 500}
    )
    last = [e for e in entries if e["action"] == "reveal_id_number"][-1]
    assert last["actor"] == world.users["head_a"].username and last["detail"]["reason"] == "subsidy claim 2026-11"


def test_contacts_need_consent_are_encrypted_and_masked_for_regulators(world: World) -> None:
    resident = world.a.residents[1]["id"]
    staff = world.users["staff_a"]
    body = {"kind": "emergency", "name": "孙桂英", "phone": "13698765432", "relation": "女儿"}
    assert staff.post(f"/api/v1/residents/{resident}/contacts", json=body).status_code == 422  # no consent
    assert staff.post(f"/api/v1/residents/{resident}/contacts", json=body | {"consent": False}).status_code == 422
    contact = staff.ok("POST", f"/api/v1/residents/{resident}/contacts", 201, json=body | {"consent": True})
    assert contact["consent_at"]
    listed = staff.ok("GET", f"/api/v1/residents/{resident}/contacts")
    assert {(c["name"], c["phone"]) for c in listed} >= {("孙桂英", "13698765432")}
    masked = world.users["reg_4205"].ok("GET", f"/api/v1/residents/{resident}/contacts")
    assert ("孙*英", "136****5432") in {(c["name"], c["phone"]) for c in masked}
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(
            "SELECT name_enc, phone_enc FROM resident_contacts WHERE id = %s", (contact["id"],)
        ).fetchone()
    assert row is not None and b"13698765432" not in bytes(row[1])
    staff.ok("DELETE", f"/api/v1/contacts/{contact['id']}", 204)
    assert contact["id"] not in {c["id"] for c in staff.ok("GET", f"/api/v1/residents/{resident}/contacts")}
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(
            "SELECT name_enc, phone_enc FROM resident_contacts WHERE id = %s", (contact["id"],)
        ).fetchone()
    assert row is not None and bytes(row[0]) == b"" and bytes(row[1]) == b""  # erased


def test_a_consent_in_the_future_is_refused(world: World) -> None:
    """A contact's consent is recorded when it was given: a time more than the clock leeway (5 minutes) ahead of the
    server is a 422 on ``body.consent_at`` and no contact is kept; a minute ahead is taken (the control)."""
    resident = world.a.residents[1]["id"]
    staff = world.users["staff_a"]
    body = {"kind": "family", "name": "沈建国", "phone": "13512345678", "relation": "儿子", "consent": True}
    before = {c["id"] for c in staff.ok("GET", f"/api/v1/residents/{resident}/contacts")}
    for later in (datetime.now(UTC) + timedelta(minutes=30), datetime(2199, 1, 1, tzinfo=UTC)):
        reply = staff.post(f"/api/v1/residents/{resident}/contacts", json=body | {"consent_at": later.isoformat()})
        assert reply.status_code == 422, reply.text
        assert [(e["field"], e["reason"]) for e in reply.json()["errors"]] == [("body.consent_at", "in the future")]
    assert {c["id"] for c in staff.ok("GET", f"/api/v1/residents/{resident}/contacts")} == before
    soon = datetime.now(UTC) + timedelta(minutes=1)
    made = staff.ok("POST", f"/api/v1/residents/{resident}/contacts", 201, json=body | {"consent_at": soon.isoformat()})
    assert datetime.fromisoformat(made["consent_at"]) == soon
