"""Rules and rosters through the API: strict parameters, heads write their own home, others cannot."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from tests.alerting.conftest import alarms_of, process, put_event, run, with_conn
from tests.alerting.test_api import _auth, _client

from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome


def _head(db: str, home: SeededHome) -> str:
    name = f"head-{home.institution_code[-6:].lower()}"

    async def make(conn: AsyncConn) -> int:
        return await create_user(
            conn, username=name, password="password-123", role=Role.HEAD, institution_id=home.institution_id
        )

    run(with_conn(db, make))
    return name


def test_a_head_sets_a_residents_rule_and_the_engine_follows_it(db: str, vault: Vault, home: SeededHome) -> None:
    head = _head(db, home)
    button = next(d for d in home.devices if d.kind == "button")

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, head, "password-123")
        url = "/api/v1/alarm-rules/button"
        unknown = await client.put(
            url,
            headers=headers,
            json={"institution_code": home.institution_code, "params": {"priority": "urgent", "colour": "red"}},
        )
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "body.params.colour"
        bad = await client.put(
            url, headers=headers, json={"institution_code": home.institution_code, "params": {"repeat_window_s": -1}}
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.params.repeat_window_s"
        ok = await client.put(
            url,
            headers=headers,
            json={
                "institution_code": home.institution_code,
                "person_code": button.person_code,
                "params": {"priority": "urgent"},
            },
        )
        assert ok.status_code == 200, ok.text
        rules = (
            await client.get("/api/v1/alarm-rules", headers=headers, params={"institution": home.institution_code})
        ).json()
        by_name = {r["rule"]: r for r in rules}
        assert by_name["button"]["params"]["priority"] == "emergency"  # the home's rule is unchanged
        assert [r["level"] for r in by_name["button"]["rows"]] == ["platform", "resident"]
        off = await client.put(
            url,
            headers=headers,
            json={"institution_code": home.institution_code, "person_code": button.person_code, "enabled": False},
        )
        assert off.status_code == 422  # a call for help is never switched off; its priority may change
        assert off.json()["errors"][0]["field"] == "body.enabled"
        staff = await _auth(client, home.staff_username, home.staff_password)
        assert (
            await client.put(url, headers=staff, json={"institution_code": home.institution_code, "params": {}})
        ).status_code == 403

    _client(db, vault)(work)
    put_event(db, home, button.code, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    assert [a["priority"] for a in alarms_of(db, home)] == ["urgent"]


def test_another_homes_head_sees_nothing_and_rosters_need_the_homes_staff(
    db: str, vault: Vault, home: SeededHome
) -> None:
    head = _head(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, head, "password-123")
        other = "91350100M000100Y43"  # a real code, not a home this head runs
        assert (
            await client.get("/api/v1/alarm-rules", headers=headers, params={"institution": other})
        ).status_code == 404
        shift = {
            "institution_code": home.institution_code,
            "username": home.staff_username,
            "tier": 1,
            "name": "夜班",
            "starts": "20:00:00",
            "ends": "08:00:00",
        }
        made = await client.post("/api/v1/rosters", headers=headers, json=shift)
        assert made.status_code == 201, made.text
        stranger = await client.post("/api/v1/rosters", headers=headers, json={**shift, "username": "nobody-here"})
        assert stranger.status_code == 422 and stranger.json()["errors"][0]["field"] == "body.username"
        listed = (
            await client.get("/api/v1/rosters", headers=headers, params={"institution": home.institution_code})
        ).json()
        assert [(s["name"], s["starts"], s["ends"]) for s in listed] == [("夜班", "20:00:00", "08:00:00")]
        assert (await client.delete(f"/api/v1/rosters/{made.json()['id']}", headers=headers)).status_code == 204
        assert (await client.delete(f"/api/v1/rosters/{made.json()['id']}", headers=headers)).status_code == 404

    _client(db, vault)(work)
