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
