"""Institutions: validation of every field on write, 409 on a taken code, role and region scope."""

from __future__ import annotations

import pytest
from tests.registry.support import World, new_id_number, new_uscc


def _errors(reply: object) -> dict[str, str]:
    body = reply.json()  # type: ignore[attr-defined]
    assert set(body) == {"detail", "errors"}
    return {e["field"]: e["reason"] for e in body["errors"]}


def test_create_validates_each_field(world: World) -> None:
    admin = world.admin
    good = {"code": new_uscc("420502"), "name": "验证院", "kind": "community_centre", "region_code": "420502"}
    bad_check = good | {"code": good["code"][:17] + ("0" if good["code"][17] != "0" else "1")}
    reply = admin.post("/api/v1/institutions", json=bad_check)
    assert reply.status_code == 422
    assert "check character" in _errors(reply)["body.code"]
    reply = admin.post("/api/v1/institutions", json=good | {"lon": 111.3})
    assert reply.status_code == 422 and "lon and lat" in reply.text
    reply = admin.post("/api/v1/institutions", json=good | {"lon": 10.0, "lat": 30.0})
    assert reply.status_code == 422 and "body.lon" in _errors(reply)
    reply = admin.post("/api/v1/institutions", json=good | {"price_min": 3000, "price_max": 1000})
    assert reply.status_code == 422 and "price_max" in reply.text
    reply = admin.post("/api/v1/institutions", json=good | {"star_grade": 6, "services": ["spa"]})
    assert reply.status_code == 422 and {"body.star_grade", "body.services.0"} <= set(_errors(reply))
    reply = admin.post("/api/v1/institutions", json=good | {"contact_phone": "12345"})
    assert reply.status_code == 422 and "body.contact_phone" in _errors(reply)
    reply = admin.post("/api/v1/institutions", json=good | {"region_code": "420599"})  # no such county
    assert reply.status_code == 422 and _errors(reply) == {"body.region_code": "no such administrative division code"}
    created = admin.ok("POST", "/api/v1/institutions", 201, json=good)
    assert created["code"] == good["code"] and created["services"] == []
    reply = admin.post("/api/v1/institutions", json=good | {"name": "同码"})
    assert reply.status_code == 409 and "body.code" in _errors(reply)


def test_heads_update_their_own_home_and_staff_may_not(world: World) -> None:
    head, staff = world.users["head_a"], world.users["staff_a"]
    updated = head.ok(
        "PATCH", f"/api/v1/institutions/{world.a.id}", json={"capacity": 30, "services": ["dementia_care"]}
    )
    assert updated["capacity"] == 30 and updated["services"] == ["dementia_care"]
    assert staff.patch(f"/api/v1/institutions/{world.a.id}", json={"capacity": 1}).status_code == 403
    assert head.patch(f"/api/v1/institutions/{world.b.id}", json={"capacity": 1}).status_code == 404
    assert head.post("/api/v1/institutions", json={}).status_code in (403, 422)


def test_regulators_see_their_region_only(world: World) -> None:
    seen = {i["id"] for i in world.users["reg_4205"].ok("GET", "/api/v1/institutions", params={"limit": 500})}
    assert {world.a.id, world.b.id, world.provider_id} <= seen and world.c.id not in seen
    seen = {i["id"] for i in world.users["reg_4201"].ok("GET", "/api/v1/institutions", params={"limit": 500})}
    assert world.c.id in seen and world.a.id not in seen
    narrowed = world.admin.ok("GET", "/api/v1/institutions", params={"region": "420503", "limit": 500})
    assert {i["region_code"] for i in narrowed} == {"420503"}
    family = {i["id"] for i in world.users["family_a"].ok("GET", "/api/v1/institutions")}
    assert family == {world.a.id}


@pytest.mark.parametrize(
    "name",
    [
        "\u200b",  # zero-width space: an empty-looking name
        "\u202eemoh gnisrun",  # right-to-left override: shown as "nursing home"
        "甲\u200d养老院",  # zero-width joiner
        "\ufeff颐养院",  # byte-order mark
        "颐养\u2028院",  # line separator
        "颐养\ue000院",  # private use
        "\u0301\u0301",  # combining marks only: nothing visible
    ],
)
def test_names_with_invisible_or_bidi_characters_are_refused(world: World, name: str) -> None:
    """A name on the board and the public map shows what it is: invisible, format and bidi-override characters
    are a 422 naming the field, for a home and for a resident alike."""
    home = world.admin.post(
        "/api/v1/institutions",
        json={"code": new_uscc("420502"), "name": name, "kind": "residential_home", "region_code": "420502"},
    )
    assert home.status_code == 422, home.text
    assert [e["field"] for e in home.json()["errors"]] == ["body.name"]
    resident = world.users["staff_a"].post(
        f"/api/v1/institutions/{world.a.id}/residents", json={"name": name, "id_number": new_id_number()}
    )
    assert resident.status_code == 422, resident.text
    assert [e["field"] for e in resident.json()["errors"]] == ["body.name"]


def test_names_are_normalised_to_nfc(world: World) -> None:
    """The same name typed with a combining accent or precomposed is stored the same (NFC)."""
    home = world.admin.ok(
        "POST",
        "/api/v1/institutions",
        201,
        json={
            "code": new_uscc("420502"),
            "name": "Re\u0301sidence 颐养院",
            "kind": "residential_home",
            "region_code": "420502",
        },
    )
    assert home["name"] == "R\u00e9sidence 颐养院"
