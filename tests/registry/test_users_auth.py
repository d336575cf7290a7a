"""Users and sessions: who may create whom, family links with consent, deactivation ends sessions, and login
throttling (429 with Retry-After after repeated failures, per username and client)."""

from __future__ import annotations

import secrets
import time

import httpx
import psycopg
from tests.registry.support import PASSWORD, World, login


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_who_may_create_whom(world: World) -> None:
    head, staff, admin = world.users["head_a"], world.users["staff_a"], world.admin
    nurse = _name("nurse")
    created = head.ok(
        "POST",
        "/api/v1/users",
        201,
        json={"username": nurse, "password": PASSWORD, "role": "staff", "institution_id": world.a.id},
    )
    assert created["role"] == "staff" and created["institution_id"] == world.a.id
    login(world.base, nurse, PASSWORD)
    assert (
        head.post(
            "/api/v1/users",
            json={"username": _name("h"), "password": PASSWORD, "role": "head", "institution_id": world.a.id},
        ).status_code
        == 403
    )
    assert (
        head.post(
            "/api/v1/users",
            json={"username": _name("s"), "password": PASSWORD, "role": "staff", "institution_id": world.b.id},
        ).status_code
        == 403
    )
    assert (
        staff.post(
            "/api/v1/users",
            json={"username": _name("s"), "password": PASSWORD, "role": "staff", "institution_id": world.a.id},
        ).status_code
        == 403
    )
    assert (
        head.post(
            "/api/v1/users",
            json={"username": _name("s"), "password": "short", "role": "staff", "institution_id": world.a.id},
        ).status_code
        == 422
    )
    assert (
        admin.post(
            "/api/v1/users", json={"username": _name("r"), "password": PASSWORD, "role": "regulator"}
        ).status_code
        == 422
    )  # a regulator needs a region
    regulator = admin.ok(
        "POST",
        "/api/v1/users",
        201,
        json={"username": _name("r"), "password": PASSWORD, "role": "regulator", "region_code": "420500000"[:4]},
    )
    assert regulator["region_code"] == "4205"
    taken = admin.post(
        "/api/v1/users", json={"username": nurse, "password": PASSWORD, "role": "staff", "institution_id": world.a.id}
    )
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "body.username"
    seen = {u["username"] for u in head.ok("GET", "/api/v1/users", params={"limit": 500})}
    assert nurse in seen and world.users["staff_b"].username not in seen
    assert head.get(f"/api/v1/users/{world.users['staff_b'].user_id}").status_code == 404


def test_family_links_need_consent_and_scope_the_family(world: World) -> None:
    head = world.users["head_a"]
    relative = _name("fam")
    user = head.ok("POST", "/api/v1/users", 201, json={"username": relative, "password": PASSWORD, "role": "family"})
    link = {"resident_id": world.a.residents[1]["id"], "relation": "儿子"}
    assert head.post(f"/api/v1/users/{user['id']}/family-links", json=link | {"consent": False}).status_code == 422
    made = head.ok("POST", f"/api/v1/users/{user['id']}/family-links", 201, json=link | {"consent": True})
    assert made["person_code"] == world.a.residents[1]["person_code"]
    twice = head.post(f"/api/v1/users/{user['id']}/family-links", json=link | {"consent": True})
    assert twice.status_code == 409 and twice.json()["errors"][0]["field"] == "body.resident_id"
    foreign = {"resident_id": world.b.residents[0]["id"], "relation": "儿子", "consent": True}
    assert head.post(f"/api/v1/users/{user['id']}/family-links", json=foreign).status_code == 404
    family = login(world.base, relative, PASSWORD)
    assert family.ok("GET", f"/api/v1/residents/{world.a.residents[1]['id']}")["id"] == world.a.residents[1]["id"]
    assert family.get(f"/api/v1/residents/{world.a.residents[0]['id']}").status_code == 404
    assert [x["resident_id"] for x in head.ok("GET", f"/api/v1/users/{user['id']}/family-links")] == [
        link["resident_id"]
    ]
    head.ok("DELETE", f"/api/v1/users/{user['id']}/family-links/{link['resident_id']}", 204)
    assert family.get(f"/api/v1/residents/{world.a.residents[1]['id']}").status_code == 404
    assert head.get(f"/api/v1/users/{world.users['staff_a'].user_id}/family-links").status_code == 404


def test_deactivation_and_password_change_end_sessions(world: World) -> None:
    head = world.users["head_a"]
    name = _name("temp")
    user = head.ok(
        "POST",
        "/api/v1/users",
        201,
        json={"username": name, "password": PASSWORD, "role": "staff", "institution_id": world.a.id},
    )
    session = login(world.base, name, PASSWORD)
    assert session.get("/api/v1/auth/me").status_code == 200
    head.ok("PATCH", f"/api/v1/users/{user['id']}", json={"password": "another-password-9"})
    assert session.get("/api/v1/auth/me").status_code == 401
    session = login(world.base, name, "another-password-9")
    updated = head.ok("PATCH", f"/api/v1/users/{user['id']}", json={"active": False, "display_name": "离职"})
    assert updated["active"] is False and updated["display_name"] == "离职"
    assert session.get("/api/v1/auth/me").status_code == 401
    reply = httpx.post(f"{world.base}/api/v1/auth/login", json={"username": name, "password": "another-password-9"})
    assert reply.status_code == 401
    assert head.patch(f"/api/v1/users/{head.user_id}", json={"active": False}).status_code == 403  # heads: staff only
    assert world.admin.patch(f"/api/v1/users/{world.admin.user_id}", json={"active": False}).status_code == 409
    fresh = login(world.base, world.users["staff_a"].username, PASSWORD)
    fresh.ok("POST", "/api/v1/auth/logout", 204)
    assert fresh.get("/api/v1/auth/me").status_code == 401


def test_repeated_failures_lock_the_login_out_for_a_growing_time(world: World) -> None:
    name = _name("locked")
    world.users["head_a"].ok(
        "POST",
        "/api/v1/users",
        201,
        json={"username": name, "password": PASSWORD, "role": "staff", "institution_id": world.a.id},
    )
    url = f"{world.base}/api/v1/auth/login"
    wrong = {"username": name, "password": "not-the-password"}
    statuses = [httpx.post(url, json=wrong).status_code for _ in range(6)]
    assert statuses == [401] * 6
    locked = httpx.post(url, json={"username": name, "password": PASSWORD})  # even the right password waits
    assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= 2
    time.sleep(float(locked.headers["Retry-After"]) + 0.2)
    assert httpx.post(url, json=wrong).status_code == 401  # 7th failure: locked for 4 s
    again = httpx.post(url, json={"username": name, "password": PASSWORD})
    assert again.status_code == 429 and 2 <= int(again.headers["Retry-After"]) <= 4  # doubled: 4 s from the failure
    with psycopg.connect(world.db.url, autocommit=True) as conn:  # let the lock run out without waiting
        conn.execute("UPDATE login_failures SET locked_until = now() WHERE username = %s", (name,))
    assert httpx.post(url, json={"username": name, "password": PASSWORD}).status_code == 200
    with psycopg.connect(world.db.url) as conn:
        assert conn.execute("SELECT count(*) FROM login_failures WHERE username = %s", (name,)).fetchone() == (0,)


def test_the_cli_creates_the_first_admin(world: World) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("eldercare")
    name = _name("root")
    env = dict(os.environ, ELDERCARE_NEW_PASSWORD="a-long-password-1")
    done = subprocess.run(
        [str(exe), "users", "add", name, "--role", "admin", "--database-url", world.db.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert login(world.base, name, "a-long-password-1").get("/api/v1/users").status_code == 200
    again = subprocess.run(
        [str(exe), "users", "add", name, "--role", "admin", "--database-url", world.db.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1 and "users_username_key" in again.stderr
    staff = subprocess.run(
        [
            str(exe),
            "users",
            "add",
            _name("s"),
            "--role",
            "staff",
            "--institution-code",
            world.a.code,
            "--database-url",
            world.db.url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert staff.returncode == 0, staff.stderr
