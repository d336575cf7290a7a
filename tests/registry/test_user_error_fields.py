"""The users API names a field at fault as the rest of the API does (FastAPI's own validation errors, the registry):
where the client sent it, ``body.active``, ``body.consent``, ``path.user_id``. Whether the platform refuses the value
itself or the schema does, a client finds the same name."""

from __future__ import annotations

import secrets
from typing import Any

from tests.registry.support import PASSWORD, World


def _fields(reply: Any) -> list[str]:
    return [e["field"] for e in reply.json()["errors"]]


def test_a_refused_deactivation_names_body_active_as_a_validation_error_does(world: World) -> None:
    admin = world.admin
    own = admin.patch(f"/api/v1/users/{admin.user_id}", json={"active": False})
    assert own.status_code == 409, own.text
    assert _fields(own) == ["body.active"]
    malformed = admin.patch(f"/api/v1/users/{admin.user_id}", json={"active": "later"})
    assert malformed.status_code == 422, malformed.text
    assert _fields(malformed) == ["body.active"]
    assert _fields(admin.patch("/api/v1/users/me", json={"active": True})) == ["path.user_id"]


def test_a_link_without_consent_names_body_consent_as_a_validation_error_does(world: World) -> None:
    head = world.users["head_a"]
    username = f"family-fields-{secrets.token_hex(3)}"
    family = head.ok("POST", "/api/v1/users", 201, json={"username": username, "password": PASSWORD, "role": "family"})
    link = {"resident_id": world.a.residents[1]["id"], "relation": "儿子"}
    refused = head.post(f"/api/v1/users/{family['id']}/family-links", json={**link, "consent": False})
    assert refused.status_code == 422, refused.text
    assert _fields(refused) == ["body.consent"]
    missing = head.post(f"/api/v1/users/{family['id']}/family-links", json=link)
    assert missing.status_code == 422, missing.text
    assert _fields(missing) == ["body.consent"]


def test_an_explicit_null_for_a_field_that_always_has_a_value_names_the_field(world: World) -> None:
    """A PATCH leaves out what it does not change; a null sent for a field the database keeps a value of (a fall risk,
    the living-alone flag) is refused naming that field, not as "body", and changes nothing."""
    staff = world.users["staff_a"]
    resident = world.a.residents[0]["id"]
    before = staff.ok("GET", f"/api/v1/residents/{resident}")
    for field in ("fall_risk", "lives_alone"):
        refused = staff.patch(f"/api/v1/residents/{resident}", json={field: None})
        assert refused.status_code == 422, refused.text
        assert _fields(refused) == [f"body.{field}"]
        assert refused.json()["errors"][0]["reason"] == "may not be null"
    assert staff.ok("GET", f"/api/v1/residents/{resident}") == before
