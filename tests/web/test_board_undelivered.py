"""The staff board in a real browser shows the notifications about the home's alarms that reached nobody
(``GET /api/v1/me/notifications/undelivered``): one entry per alarm, who was not told and why, the alarm's bed when
the board knows it; never an address; hidden when there is none. The rows are written as the sender leaves them
(given up: ``failed`` after ``max_attempts``; an open emergency's staff rows: still ``pending`` past them), and the
board finds them, and finds them gone, on its 30 s poll (the page's clock is moved on rather than waited for)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from playwright.sync_api import Page, expect
from tests.web.conftest import Browsers, ready, shot
from tests.web.support import World

from eldercare.devices import messages as m
from eldercare.platform.notify.sender import SenderPolicy
from eldercare.simulators.uplink import now_ms

MAX = SenderPolicy().max_attempts  # `eldercare serve` runs the sender with the default policy
POLL_MS = 31_000  # the board reads the list every 30 s

_UNDELIVERED = "state = 'failed' OR (state IN ('pending', 'sending') AND attempts >= %s)"


def _notification(world: World, *, alarm_id: int, username: str, event: str, state: str, error: str) -> int:
    """An outbox row as the sender leaves it after its last failed try: ``failed`` (given up), or ``pending`` with
    its next try an hour away (an open emergency's staff row, never given up)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "alarm": alarm_id,
        "user": username,
        "event": event,
        "state": state,
        "attempts": MAX,
        "error": error,
        "created": now - timedelta(minutes=40),
        "next": now + timedelta(hours=1) if state == "pending" else now - timedelta(minutes=5),
    }
    with psycopg.connect(world.db, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO notifications (alarm_id, user_id, event, state, created_at, not_before, attempts, last_error)"
            " SELECT %(alarm)s, id, %(event)s, %(state)s, %(created)s, %(next)s, %(attempts)s, %(error)s FROM users"
            " WHERE username = %(user)s ON CONFLICT (alarm_id, user_id, event) DO UPDATE SET state = EXCLUDED.state,"
            " created_at = EXCLUDED.created_at, not_before = EXCLUDED.not_before, attempts = EXCLUDED.attempts,"
            " last_error = EXCLUDED.last_error, lease_until = NULL RETURNING id",
            values,
        ).fetchone()
    assert row is not None
    return int(row[0])


def _sql(world: World, query: str, *params: Any) -> None:
    with psycopg.connect(world.db, autocommit=True) as conn:
        conn.execute(query, params)


def _entry(page: Page, alarm_id: int) -> Any:
    return page.locator(f'#undelivered .undelivered-alarm[data-alarm-id="{alarm_id}"]')


def test_the_board_names_who_was_not_told_until_they_are(browsers: Browsers, web: World) -> None:
    # The board starts with none: rows other tests left failing are moved out of the week the list covers.
    _sql(
        web,
        f"UPDATE notifications SET created_at = created_at - interval '8 days' WHERE {_UNDELIVERED}",
        MAX,
    )
    visit = browsers.open(web.users.nurse, viewport=(1920, 1080))
    visit.context.clock.install()
    page = visit.page("/board")
    ready(page)
    panel = page.locator("#undelivered")
    expect(panel).to_be_hidden()

    bed = web.beds[7]
    web.gateway.send([m.Button(dev=bed.button, ts=now_ms(), action=m.ButtonAction.PRESS)], alarm=True)
    tile = page.locator(f'.tile[data-bed-code="{bed.bed_code}"][data-alarm-id]')
    tile.wait_for(timeout=5000)
    pressed = int(tile.get_attribute("data-alarm-id") or 0)
    past = web.past_alarm_id  # family A's elder's emergency two days ago, closed before the board opened
    ids: list[int] = []
    try:
        # The open emergency: the nurses' rows are still retried past max_attempts. The closed one: given up.
        ids += [
            _notification(web, alarm_id=pressed, username=web.users.nurse2, event="raised", state="pending",
                          error="webhook_wecom: no answer within 10 s"),
            _notification(web, alarm_id=pressed, username=web.users.nurse, event="raised", state="pending",
                          error="sms: HTTP 503 from the SMS provider"),
            _notification(web, alarm_id=past, username=web.users.family_a, event="resolved", state="failed",
                          error="no active channel"),
        ]  # fmt: skip
        page.clock.fast_forward(POLL_MS)
        expect(panel).to_be_visible()
        expect(page.locator("#undelivered-title")).to_contain_text("请打电话告诉他们")
        expect(page.locator("#undelivered .undelivered-alarm")).to_have_count(2)

        now_open = _entry(page, pressed)
        expect(now_open.locator(".undelivered-head")).to_contain_text("2 人没有收到报警通知")
        expect(now_open.locator(".undelivered-head")).to_contain_text(f"{bed.label} 床")
        expect(now_open.locator(".undelivered-head")).to_contain_text(bed.name)
        expect(now_open.locator(".undelivered-head")).to_contain_text("一键呼叫")
        expect(now_open).to_contain_text(web.users.nurse2)
        expect(now_open).to_contain_text("webhook_wecom: no answer within 10 s")
        expect(now_open).to_contain_text(f"仍在重试（已试 {MAX} 次")
        closed = _entry(page, past)
        expect(closed.locator(".undelivered-head")).to_contain_text(  # closed before the board opened: its bed
            f"1 人没有收到报警通知：紧急 · 一键呼叫 · {web.beds[0].label} 床"
        )
        expect(closed).to_contain_text(web.users.family_a)
        expect(closed).to_contain_text("家属")
        expect(closed).to_contain_text("处理结果通知")
        expect(closed).to_contain_text("没有可用的通知方式")
        expect(closed).to_contain_text(f"已放弃（试了 {MAX} 次）")
        text = panel.inner_text()
        assert "@" not in text and not re.search(r"1[3-9]\d{9}", text), f"an address on the board: {text}"
        expect(page.locator("#live")).to_contain_text("没有收到报警通知")
        shot(page, "board-undelivered")

        page.locator("#lang-switch").click()
        expect(now_open.locator(".undelivered-head")).to_contain_text("2 people were not told about")
        expect(closed).to_contain_text(f"given up after {MAX} attempts")
        page.locator("#lang-switch").click()

        # The nurses' rows are sent at last: that entry goes, the other stays.
        _sql(web, "UPDATE notifications SET state = 'sent', delivered_at = now() WHERE id = ANY(%s)", ids[:2])
        page.clock.fast_forward(POLL_MS)
        expect(now_open).to_have_count(0)
        expect(closed).to_be_visible()
        # The family's row leaves the week the list covers: none is left, and the panel goes.
        _sql(web, "UPDATE notifications SET created_at = now() - interval '8 days' WHERE id = %s", ids[2])
        page.clock.fast_forward(POLL_MS)
        expect(panel).to_be_hidden()
    finally:
        _sql(web, "UPDATE notifications SET state = 'sent', delivered_at = now() WHERE id = ANY(%s)", ids)
        reply = web.api(
            web.users.nurse, "POST", f"/api/v1/alarms/{pressed}/resolve", json={"outcome": "accidental_press"}
        )
        assert reply.status_code == 200, reply.text
