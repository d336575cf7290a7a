"""Delivery to people: a real SMTP server, real webhook receivers, fallback, storm control, quiet hours,
escalation over the roster."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from tests.alerting.conftest import alarms_of, on_shift_all_day, process, put_event, run, set_rule, tick, with_conn
from tests.alerting.receivers import Mailbox, WebhookServer

from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import sender
from eldercare.platform.notify.channels import json_signature
from eldercare.platform.notify.settings import NotifySettings, build_channels
from eldercare.simulators.seed import SeededHome

NO_WAIT = sender.SenderPolicy(min_interval_s=30, backoff_base_s=0.01)


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


def _user(db: str, home: SeededHome, name: str, role: Role) -> int:
    async def make(conn: AsyncConn) -> int:
        return await create_user(
            conn,
            username=f"{name}-{home.institution_code[-6:].lower()}",
            password="password-123",
            role=role,
            institution_id=home.institution_id if role in (Role.STAFF, Role.HEAD) else None,
        )

    return run(with_conn(db, make))


def _family(db: str, home: SeededHome, bed_code: str) -> int:
    user_id = _user(db, home, "family", Role.FAMILY)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO family_links (user_id, resident_id, relation) SELECT %s, ba.resident_id, '女儿'"
            " FROM bed_assignments ba JOIN beds b ON b.id = ba.bed_id WHERE b.code = %s",
            (user_id, bed_code),
        )
    return user_id


def _channel(
    db: str, vault: Vault, user_id: int, kind: str, address: str, position: int, secret: str | None = None
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc, secret_enc, position)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                user_id,
                kind,
                vault.encrypt(address, column="notification_channels.address"),
                vault.encrypt(secret, column="notification_channels.secret") if secret else None,
                position,
            ),
        )


def _deliver(db: str, vault: Vault, smtp_port: int | None, policy: sender.SenderPolicy = NO_WAIT) -> int:
    async def go(conn: AsyncConn) -> int:
        settings = NotifySettings(smtp_host="127.0.0.1" if smtp_port else None, smtp_port=smtp_port or 25)
        async with httpx.AsyncClient(timeout=5) as client:
            return await sender.deliver_due(conn, vault=vault, channels=build_channels(settings, client), policy=policy)

    return run(with_conn(db, go))


def _states(db: str, user_id: int) -> list[tuple[str, str]]:
    with psycopg.connect(db) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT event, state FROM notifications WHERE user_id = %s ORDER BY id", (user_id,)
            ).fetchall()
        ]


def _button(home: SeededHome) -> tuple[str, str]:
    device = next(d for d in home.devices if d.kind == "button")
    return device.code, device.bed_code or ""


def test_the_family_is_told_when_raised_and_when_handled_with_fallback(
    db: str, vault: Vault, home: SeededHome, mailbox: tuple[int, Mailbox], webhooks: WebhookServer
) -> None:
    smtp_port, box = mailbox
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/broken", 1)
    _channel(db, vault, family, "email", "daughter@example.cn", 2)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)

    assert _deliver(db, vault, smtp_port) == 1
    [mail] = box.wait(1, 5)
    assert mail["To"] == "daughter@example.cn"
    assert "紧急呼叫" in mail["Subject"] and "报警" in mail["Subject"]
    assert mail["X-Eldercare-Delivery"]
    assert [h.path for h in webhooks.hits] == ["/broken"]  # tried first, failed, fell back at once
    with psycopg.connect(db) as conn:
        attempts = conn.execute(
            "SELECT ok FROM notification_attempts t JOIN notifications n ON n.id = t.notification_id"
            " WHERE n.user_id = %s ORDER BY t.id",
            (family,),
        ).fetchall()
    assert attempts == [(False,), (True,)]

    put_event(db, home, button, "button", {"action": "cancel"}, datetime.now(UTC))
    process(db, vault)
    assert _deliver(db, vault, smtp_port, sender.SenderPolicy(min_interval_s=0)) == 1
    mails = box.wait(2, 5)
    assert "已处理" in mails[1]["Subject"]
    assert _states(db, family) == [("raised", "sent"), ("resolved", "sent")]
    assert _deliver(db, vault, smtp_port) == 0  # nothing twice
    assert len(box.wait(3, 0.3)) == 2


def test_robots_and_signed_webhooks_in_their_formats(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, bed = _button(home)
    users = [_family(db, home, bed) for _ in range(1)]
    wecom, ding, generic = users[0], _user(db, home, "fam2", Role.FAMILY), _user(db, home, "fam3", Role.FAMILY)
    with psycopg.connect(db, autocommit=True) as conn:
        for user_id in (ding, generic):
            conn.execute(
                "INSERT INTO family_links (user_id, resident_id) SELECT %s, resident_id FROM family_links"
                " WHERE user_id = %s",
                (user_id, wecom),
            )
    _channel(db, vault, wecom, "webhook_wecom", f"{webhooks.url}/wecom?key=abc", 1)
    _channel(db, vault, ding, "webhook_dingtalk", f"{webhooks.url}/dingtalk?access_token=t", 1, secret="SECdemo")
    _channel(db, vault, generic, "webhook_json", f"{webhooks.url}/json", 1, secret="s3cret")
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    assert _deliver(db, vault, None) == 3

    by_path = {h.path: h for h in webhooks.hits}
    assert by_path["/wecom"].json()["msgtype"] == "text" and "紧急呼叫" in by_path["/wecom"].json()["text"]["content"]
    ding_hit = by_path["/dingtalk"]
    query = urllib.parse.parse_qs(ding_hit.query)
    expected = base64.b64encode(
        hmac.new(b"SECdemo", f"{query['timestamp'][0]}\nSECdemo".encode(), hashlib.sha256).digest()
    )
    assert query["sign"][0] == expected.decode()
    json_hit = by_path["/json"]
    assert json_hit.headers["x-eldercare-signature"] == json_signature(
        "s3cret", json_hit.headers["x-eldercare-timestamp"], json_hit.body
    )
    assert json_hit.json()["alarms"][0]["kind"] == "button"


def test_a_storm_becomes_one_message_per_person(
    db: str, vault: Vault, home: SeededHome, mailbox: tuple[int, Mailbox]
) -> None:
    smtp_port, box = mailbox
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "email", "son@example.cn", 1)
    set_rule(db, rule="button", params={"repeat_window_s": 0}, institution_id=home.institution_id)
    now = datetime.now(UTC)
    for i in range(20):
        put_event(db, home, button, "button", {"action": "press"}, now + timedelta(seconds=i))
    process(db, vault)
    assert len(alarms_of(db, home)) == 20
    assert _deliver(db, vault, smtp_port) == 20
    mails = box.wait(2, 1.0)
    assert len(mails) == 1
    body = mails[0].get_body()
    assert body is not None
    assert body.get_content().count("紧急呼叫") == 20


def test_quiet_hours_hold_back_all_but_emergencies(
    db: str, vault: Vault, home: SeededHome, mailbox: tuple[int, Mailbox]
) -> None:
    smtp_port, box = mailbox
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "email", "quiet@example.cn", 1)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO notification_prefs (user_id, quiet_from, quiet_to, timezone)"
            " VALUES (%s, '00:00', '23:59:59', 'UTC')",
            (family,),
        )
    set_rule(db, rule="fall", params={"priority": "urgent"}, institution_id=home.institution_id)
    put_event(db, home, button, "fall", {"source": "radar"}, datetime.now(UTC))
    process(db, vault)
    assert _deliver(db, vault, smtp_port) == 0
    assert _states(db, family) == [("raised", "pending")]
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    assert _deliver(db, vault, smtp_port) == 1
    assert len(box.wait(1, 5)) == 1


def test_an_unacknowledged_alarm_escalates_over_the_roster_then_the_head(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, _ = _button(home)
    tier2 = _user(db, home, "tier2", Role.STAFF)
    head = _user(db, home, "head", Role.HEAD)
    off_shift = _user(db, home, "offshift", Role.STAFF)
    for user_id, path in ((tier2, "tier2"), (head, "head"), (off_shift, "off")):
        _channel(db, vault, user_id, "webhook_json", f"{webhooks.url}/{path}", 1)
    with psycopg.connect(db, autocommit=True) as conn:
        on_shift_all_day(conn, home, tier2, 2)
        conn.execute(
            "INSERT INTO shift_roster (institution_id, user_id, tier, starts, ends, weekdays)"
            " VALUES (%s, %s, 2, '00:00', '00:00', '{}')",
            (home.institution_id, off_shift),
        )  # never
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    tick(db, vault)
    assert alarms_of(db, home)[0]["escalation_level"] == 0

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET raised_at = raised_at - interval '65 seconds' WHERE institution_id = %s",
            (home.institution_id,),
        )
    tick(db, vault)
    assert alarms_of(db, home)[0]["escalation_level"] == 1
    _deliver(db, vault, None)
    assert [h.path for h in webhooks.hits] == ["/tier2"]

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET raised_at = raised_at - interval '60 seconds' WHERE institution_id = %s",
            (home.institution_id,),
        )
    tick(db, vault)
    assert alarms_of(db, home)[0]["escalation_level"] == 2
    _deliver(db, vault, None)
    assert [h.path for h in webhooks.hits] == ["/tier2", "/head"]
    tick(db, vault)
    _deliver(db, vault, None)
    assert [h.path for h in webhooks.hits] == ["/tier2", "/head"]  # the last tier was told just now

    # Still nobody: the last tier (here the head's) is told again each time the timeout passes.
    set_rule(db, rule="escalation", params={"tiers": 2}, institution_id=home.institution_id)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET raised_at = raised_at - interval '61 seconds',"
            " escalated_at = escalated_at - interval '61 seconds' WHERE institution_id = %s",
            (home.institution_id,),
        )
    tick(db, vault)
    _deliver(db, vault, None)
    assert alarms_of(db, home)[0]["escalation_level"] == 2
    assert [h.path for h in webhooks.hits] == ["/tier2", "/head", "/head"]


def _acknowledge(db: str, home: SeededHome, *, ago_s: int) -> None:
    """A nurse tapped "acknowledge" ``ago_s`` seconds ago, and nobody has said they are at the bedside."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET state = 'acknowledged', acknowledged_at = now() - make_interval(secs => %s)"
            " WHERE institution_id = %s",
            (ago_s, home.institution_id),
        )


def _wait(db: str, home: SeededHome, seconds: int) -> None:
    """Move the alarm's clock back instead of sleeping."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET acknowledged_at = acknowledged_at - make_interval(secs => %(s)s),"
            " escalated_at = escalated_at - make_interval(secs => %(s)s) WHERE institution_id = %(i)s",
            {"s": seconds, "i": home.institution_id},
        )


def test_an_acknowledged_alarm_nobody_attends_escalates_and_the_top_tier_is_told_again(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, _ = _button(home)
    tier2 = _user(db, home, "tier2", Role.STAFF)
    head = _user(db, home, "head", Role.HEAD)
    for user_id, path in ((tier2, "tier2"), (head, "head")):
        _channel(db, vault, user_id, "webhook_json", f"{webhooks.url}/{path}", 1)
    with psycopg.connect(db, autocommit=True) as conn:
        on_shift_all_day(conn, home, tier2, 2)
    set_rule(db, rule="escalation", params={"tiers": 2, "attend_timeout_s": 120}, institution_id=home.institution_id)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    _acknowledge(db, home, ago_s=100)
    tick(db, vault)
    assert alarms_of(db, home)[0]["escalation_level"] == 0  # seen 100 s ago: still within the 120 s

    _wait(db, home, 30)
    tick(db, vault)
    [alarm] = alarms_of(db, home)
    assert (alarm["state"], alarm["escalation_level"]) == ("acknowledged", 1)
    _deliver(db, vault, None)
    assert [h.path for h in webhooks.hits] == ["/tier2"]
    tick(db, vault)
    assert alarms_of(db, home)[0]["escalation_level"] == 1  # the next step waits its own timeout

    _wait(db, home, 121)
    tick(db, vault)
    _deliver(db, vault, None)
    assert alarms_of(db, home)[0]["escalation_level"] == 2
    assert [h.path for h in webhooks.hits] == ["/tier2", "/head"]

    _wait(db, home, 121)
    tick(db, vault)  # at the last tier: its people are told again while nobody attends
    _deliver(db, vault, None)
    assert alarms_of(db, home)[0]["escalation_level"] == 2
    assert [h.path for h in webhooks.hits] == ["/tier2", "/head", "/head"]

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE alarms SET state = 'attending', attending_at = now() WHERE institution_id = %s",
            (home.institution_id,),
        )
    _wait(db, home, 600)
    tick(db, vault)  # someone is there: nothing more
    assert alarms_of(db, home)[0]["escalation_level"] == 2


def test_pressing_again_long_after_the_acknowledgement_escalates_at_once(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, _ = _button(home)
    tier2 = _user(db, home, "tier2", Role.STAFF)
    _channel(db, vault, tier2, "webhook_json", f"{webhooks.url}/tier2", 1)
    with psycopg.connect(db, autocommit=True) as conn:
        on_shift_all_day(conn, home, tier2, 2)
    now = datetime.now(UTC)
    put_event(db, home, button, "button", {"action": "press"}, now - timedelta(seconds=90))
    process(db, vault)
    _acknowledge(db, home, ago_s=85)
    put_event(db, home, button, "button", {"action": "press"}, now - timedelta(seconds=50))
    process(db, vault)
    assert alarms_of(db, home)[0]["escalation_level"] == 0  # 35 s after it was seen: within the repeat window

    put_event(db, home, button, "button", {"action": "press"}, now)
    process(db, vault)  # 85 s after it was seen, and still pressing: nobody came
    [alarm] = alarms_of(db, home)
    assert (alarm["state"], alarm["repeat_count"], alarm["escalation_level"]) == ("acknowledged", 3, 1)
    _deliver(db, vault, None)
    assert [h.path for h in webhooks.hits] == ["/tier2"]

    put_event(db, home, button, "button", {"action": "press"}, now + timedelta(seconds=20))
    process(db, vault)  # the next press waits a repeat window from the escalation
    assert alarms_of(db, home)[0]["escalation_level"] == 1
