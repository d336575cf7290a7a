"""One family's bad channel fails that channel only: the next channel is tried, the sender goes on.

A mistyped webhook URL makes httpx raise ``InvalidURL`` (not an ``HTTPError``); a robot or SMS provider may
answer with JSON that is not an object; a provider library may raise anything. Each is a failed attempt on
that channel. The API refuses such URLs up front, on the address field.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from tests.alerting.conftest import process, put_event, run, with_conn
from tests.alerting.receivers import WebhookServer
from tests.alerting.test_api import _auth, _client, _family_user
from tests.alerting.test_delivery import _button, _channel, _family, _user

from eldercare.platform.alarms import engine
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import sender
from eldercare.platform.notify.channels import Channel, SmsChannel
from eldercare.platform.notify.settings import NotifySettings, build_channels
from eldercare.simulators.seed import SeededHome

POLICY = sender.SenderPolicy(min_interval_s=0, backoff_base_s=0.01)
MISTYPED = "https://qyapi.weixin.qq.com:8o80/cgi-bin/webhook/send?key=abc"  # letter o in the port


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


def _deliver(
    db: str, vault: Vault, settings: NotifySettings, extra: Callable[[httpx.AsyncClient], Mapping[str, Channel]]
) -> int:
    async def go(conn: AsyncConn) -> int:
        async with httpx.AsyncClient(timeout=5) as client:
            channels = {**build_channels(settings, client), **extra(client)}
            return await sender.deliver_due(conn, vault=vault, channels=channels, policy=POLICY)

    return run(with_conn(db, go))


def _attempts(db: str, user_id: int) -> list[tuple[bool, str]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.ok, t.detail FROM notification_attempts t JOIN notifications n ON n.id = t.notification_id"
            " WHERE n.user_id = %s ORDER BY t.id",
            (user_id,),
        ).fetchall()
    return [(bool(r[0]), str(r[1])) for r in rows]


def _raise(db: str, vault: Vault, home: SeededHome, button: str) -> None:
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)


def test_a_mistyped_robot_url_fails_that_channel_only(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_wecom", MISTYPED, 1)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/json", 2)
    _raise(db, vault, home, button)

    assert _deliver(db, vault, NotifySettings(), lambda _: {}) == 1
    assert [h.path for h in webhooks.hits] == ["/json"]
    assert _attempts(db, family) == [(False, "webhook_wecom: InvalidURL"), (True, _attempts(db, family)[1][1])]


@pytest.mark.parametrize("reply", ["[]", '"ok"', "null", "42"])
def test_a_reply_that_is_not_a_json_object_is_a_failed_robot_and_a_fine_sms(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer, reply: str
) -> None:
    """A robot must answer ``{"errcode": 0}``: anything else fails it (the next channel is tried). An SMS
    provider's reply only names its message id: without one, the delivery id is the receipt."""
    button, bed = _button(home)
    family = _family(db, home, bed)
    path = f"/reply/{urllib.parse.quote(reply)}"
    _channel(db, vault, family, "webhook_wecom", f"{webhooks.url}{path}", 1)
    _channel(db, vault, family, "sms", "13800138000", 2)
    _raise(db, vault, home, button)
    settings = NotifySettings(sms_url=f"{webhooks.url}{path}", sms_api_key=SecretStr("provider-key"))

    assert _deliver(db, vault, settings, lambda _: {}) == 1, _attempts(db, family)
    assert len(webhooks.hits) == 2  # the robot, then the SMS provider
    [(robot_ok, robot_detail), (sms_ok, sms_detail)] = _attempts(db, family)
    assert not robot_ok and "not an object" in robot_detail
    assert sms_ok and sms_detail  # the receipt: the delivery id


class _ExplodingProvider:
    """An SMS provider library that fails in a way nobody planned for."""

    async def send_sms(self, *, phone: str, text: str, delivery_id: str) -> str:
        raise KeyError(phone)


def test_any_exception_from_a_channel_is_a_failed_attempt_and_the_next_channel_is_tried(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "sms", "13800138000", 1)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/json", 2)
    _raise(db, vault, home, button)

    def exploding(_: httpx.AsyncClient) -> dict[str, Channel]:
        return {"sms": SmsChannel(_ExplodingProvider())}

    assert _deliver(db, vault, NotifySettings(), exploding) == 1
    attempts = _attempts(db, family)
    assert [ok for ok, _ in attempts] == [False, True]
    assert attempts[0][1] == "sms: unexpected KeyError"  # the class only: the message held the number
    assert "13800138000" not in attempts[0][1]


def test_the_sender_task_lives_on_and_tells_the_other_families(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    """The audit's case: one family's only channel is the mistyped robot; another family must still be told."""
    button, bed = _button(home)
    careless = _family(db, home, bed)
    _channel(db, vault, careless, "webhook_wecom", MISTYPED, 1)
    other = next(d for d in home.devices if d.kind == "button" and d.bed_code != bed)
    told = _user(db, home, "family2", Role.FAMILY)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO family_links (user_id, resident_id, relation) SELECT %s, ba.resident_id, '儿子'"
            " FROM bed_assignments ba JOIN beds b ON b.id = ba.bed_id WHERE b.code = %s",
            (told, other.bed_code),
        )
    _channel(db, vault, told, "webhook_json", f"{webhooks.url}/json", 1)

    async def scenario() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            channels = build_channels(NotifySettings(), client)
            task = asyncio.create_task(sender.run(db, vault=vault, channels=channels, policy=POLICY, poll_s=0.2))
            await with_conn(db, _press(home, button, vault))
            await asyncio.sleep(1.0)
            await with_conn(db, _press(home, other.code, vault))
            for _ in range(100):
                if webhooks.hits:
                    break
                await asyncio.sleep(0.1)
            alive = not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return alive

    assert run(scenario())
    assert [h.path for h in webhooks.hits] == ["/json"]


def _press(home: SeededHome, code: str, vault: Vault) -> Callable[[AsyncConn], Any]:
    async def press(conn: AsyncConn) -> int:
        await conn.execute(
            "INSERT INTO alarm_inbox (event_time, device_id, institution_id, kind, detail)"
            " SELECT now(), id, institution_id, 'button', '{\"action\":\"press\"}' FROM devices WHERE code = %s",
            (code,),
        )
        return await engine.process_pending(conn, vault=vault)

    return press


@pytest.mark.parametrize(
    "address",
    [
        MISTYPED,
        "http://example.com:99999/hook",
        "http://exa_mple..com/x",
        "http://[::1/x",
        "http://a\x00b/",
        "ftp://example.com/hook",
        "http:///hook",
    ],
)
def test_the_api_refuses_an_unusable_webhook_url_on_the_address_field(
    db: str, vault: Vault, home: SeededHome, address: str
) -> None:
    user = _family_user(db, home)

    async def work(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, user, "password-123")
        url = "/api/v1/me/notifications/channels"
        bad = await client.post(url, headers=headers, json={"kind": "webhook_wecom", "address": address})
        assert bad.status_code == 422, bad.text
        [error] = bad.json()["errors"]
        assert error["field"] == "body.address" and "URL" in error["reason"]
        good = await client.post(
            url, headers=headers, json={"kind": "webhook_wecom", "address": "https://qyapi.weixin.qq.com:8080/x?k=1"}
        )
        assert good.status_code == 201, good.text

    _client(db, vault)(work)
