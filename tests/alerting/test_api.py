"""The notification-preference and report endpoints, through the real app on the real database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from tests.alerting.conftest import process, put_event, run, with_conn

from eldercare.platform.api.app import create_app
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.platform.notify.settings import NotifySettings
from eldercare.simulators.seed import SeededHome

Client = Callable[[Callable[[httpx.AsyncClient], Awaitable[Any]]], Any]


def _client(db: str, vault: Vault, notify: NotifySettings | None = None) -> Client:
    """Run ``work`` with an HTTP client on the app (lifespan on, background tasks off)."""

    def call(work: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
        async def go() -> Any:
            app = create_app(database_url=db, data_key=vault.data_key, notify=notify, run_background=False)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    return await work(client)

        return asyncio.run(go())

    return call


def _login(client: httpx.AsyncClient, username: str, password: str) -> Awaitable[httpx.Response]:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


async def _auth(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    reply = await _login(client, username, password)
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def _family_user(db: str, home: SeededHome) -> str:
    name = f"famapi-{home.institution_code[-6:].lower()}"

    async def make(conn: AsyncConn) -> int:
        return await create_user(conn, username=name, password="password-123", role=Role.FAMILY)

    run(with_conn(db, make))
    return name


def test_preferences_are_validated_field_by_field(db: str, vault: Vault, home: SeededHome) -> None:
    user = _family_user(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, user, "password-123")
        default = await client.get("/api/v1/me/notifications/prefs", headers=headers)
        assert default.json()["language"] == "zh-CN" and default.json()["kinds"] is None
        bad_zone = await client.put("/api/v1/me/notifications/prefs", headers=headers, json={"timezone": "Mars/Base"})
        assert bad_zone.status_code == 422
        assert bad_zone.json()["errors"][0]["field"] == "body.timezone"
        half = await client.put("/api/v1/me/notifications/prefs", headers=headers, json={"quiet_from": "22:00:00"})
        assert half.status_code == 422 and "together" in half.json()["errors"][0]["reason"]
        good = {
            "kinds": ["fall", "button"],
            "quiet_from": "22:00:00",
            "quiet_to": "07:00:00",
            "language": "en",
            "timezone": "Asia/Shanghai",
            "notify_resolved": False,
        }
        assert (await client.put("/api/v1/me/notifications/prefs", headers=headers, json=good)).status_code == 200
        assert (await client.get("/api/v1/me/notifications/prefs", headers=headers)).json() == good
        assert (await client.get("/api/v1/me/notifications/prefs")).status_code == 401

    _client(db, vault)(work)


def test_channels_are_encrypted_masked_and_owned(db: str, vault: Vault, home: SeededHome) -> None:
    user = _family_user(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, user, "password-123")
        url = "/api/v1/me/notifications/channels"
        bad = await client.post(url, headers=headers, json={"kind": "email", "address": "not-an-address"})
        assert bad.status_code == 422 and "e-mail" in bad.json()["errors"][0]["reason"]
        bad_sms = await client.post(url, headers=headers, json={"kind": "sms", "address": "12345"})
        assert bad_sms.status_code == 422
        made = await client.post(url, headers=headers, json={"kind": "sms", "address": "13812345678"})
        assert made.status_code == 201
        assert made.json()["address_masked"] == "138****5678"
        listed = await client.get(url, headers=headers)
        assert [c["address_masked"] for c in listed.json()] == ["138****5678"]
        other = await _auth(client, home.staff_username, home.staff_password)
        assert (await client.delete(f"{url}/{made.json()['id']}", headers=other)).status_code == 404
        assert (await client.delete(f"{url}/{made.json()['id']}", headers=headers)).status_code == 204
        assert (await client.get(url, headers=headers)).json() == []

    _client(db, vault)(work)
    with psycopg.connect(db) as conn:
        raw = conn.execute("SELECT address_enc FROM notification_channels ORDER BY id DESC LIMIT 1").fetchone()
    assert raw is not None and b"13812345678" not in bytes(raw[0])


def test_only_the_channels_the_platform_sends_are_offered(db: str, vault: Vault, home: SeededHome) -> None:
    """Without a mail server e-mail is not offered, and adding an e-mail channel is refused on its kind. One
    added while there was a server is still listed, marked as not sent, so the family page can say so."""
    user = _family_user(db, home)
    url = "/api/v1/me/notifications"
    with_mail = NotifySettings(smtp_host="127.0.0.1", smtp_port=2525)
    without_mail = NotifySettings(smtp_host=None)

    async def while_mail_is_sent(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, user, "password-123")
        kinds = (await client.get(f"{url}/kinds", headers=headers)).json()["kinds"]
        assert kinds == ["email", "sms", "webhook_wecom", "webhook_dingtalk", "webhook_json"]
        made = await client.post(f"{url}/channels", headers=headers, json={"kind": "email", "address": "a@example.cn"})
        assert made.status_code == 201 and made.json()["offered"] is True
        assert (await client.get(f"{url}/kinds")).status_code == 401

    async def once_it_is_not(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, user, "password-123")
        kinds = (await client.get(f"{url}/kinds", headers=headers)).json()["kinds"]
        assert kinds == ["sms", "webhook_wecom", "webhook_dingtalk", "webhook_json"]
        refused = await client.post(
            f"{url}/channels", headers=headers, json={"kind": "email", "address": "b@example.cn"}
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "body.kind"
        assert "does not send email" in refused.json()["errors"][0]["reason"]
        sms = await client.post(f"{url}/channels", headers=headers, json={"kind": "sms", "address": "13812345678"})
        assert sms.status_code == 201
        listed = {c["kind"]: c["offered"] for c in (await client.get(f"{url}/channels", headers=headers)).json()}
        assert listed == {"email": False, "sms": True}

    _client(db, vault, with_mail)(while_mail_is_sent)
    _client(db, vault, without_mail)(once_it_is_not)


def test_response_times_per_institution_and_shift_in_scope(db: str, vault: Vault, home: SeededHome) -> None:
    button = next(d.code for d in home.devices if d.kind == "button")
    now = datetime.now(UTC)
    put_event(db, home, button, "button", {"action": "press"}, now)
    process(db, vault)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET acknowledged_at = raised_at + interval '20 seconds',"
            " attending_at = raised_at + interval '90 seconds' WHERE institution_id = %s",
            (home.institution_id,),
        )
        staff = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchone()
        assert staff is not None
        conn.execute(
            "INSERT INTO shift_roster (institution_id, user_id, tier, name, starts, ends)"
            " VALUES (%s, %s, 1, '全天班', '00:00', '00:00')",
            (home.institution_id, staff[0]),
        )
    window = {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, home.staff_username, home.staff_password)
        rows = (await client.get("/api/v1/alarms/report", headers=headers, params=window)).json()
        assert len(rows) == 1
        assert rows[0]["institution_code"] == home.institution_code
        assert rows[0]["median_s_to_acknowledge"] == 20 and rows[0]["median_s_to_attend"] == 90
        by_shift = (await client.get("/api/v1/alarms/report", headers=headers, params={**window, "by": "shift"})).json()
        assert by_shift[0]["shift"] == "全天班"
        backwards = await client.get(
            "/api/v1/alarms/report", headers=headers, params={"since": window["until"], "until": window["since"]}
        )
        assert backwards.status_code == 422

    _client(db, vault)(work)


def test_families_are_not_told_of_technical_alarms_unless_they_ask(db: str, vault: Vault, home: SeededHome) -> None:
    sensor = next(d for d in home.devices if d.kind == "bed_sensor")
    user = _family_user(db, home)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO family_links (user_id, resident_id) SELECT u.id, r.id FROM users u, residents r"
            " WHERE u.username = %s AND r.person_code = %s",
            (user, sensor.person_code),
        )
        conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc) SELECT id, 'sms', %s FROM users"
            " WHERE username = %s",
            (vault.encrypt("13800000000", column="notification_channels.address"), user),
        )
    put_event(db, home, sensor.code, "fault", {"fault": "low_battery", "active": True}, datetime.now(UTC))
    process(db, vault)
    with psycopg.connect(db) as conn:
        told = conn.execute(
            "SELECT count(*) FROM notifications n JOIN users u ON u.id = n.user_id WHERE u.username = %s", (user,)
        ).fetchone()
    assert told == (0,)
