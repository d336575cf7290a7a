"""The staff board in a real browser says what each alarm is about: the alarm's detail (what the device or the rule
saw) as a short line in the page's language, in the queue item, its accessible name and the resolve dialog. A fall
and a low battery (how low: the level the gateway sent, or the device's last reading) come from the gateway through
ingest and the alarm engine; the rules' alarms (vital signs, a night bed exit, wandering, a silent gateway) are
written as the ticker writes them, their detail sealed, and announced on the alarm stream. A kind the board does not
know, or an empty detail, shows no line (and no JSON); a device's text that looks like HTML stays text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Locator, Page, expect
from tests.web.conftest import Browsers, ready, shot
from tests.web.support import World, wait_until

from eldercare.devices import messages as m
from eldercare.platform.alarms import text as alarm_text
from eldercare.platform.crypto import Vault
from eldercare.simulators.uplink import now_ms

HOSTILE = '<img src=x onerror="window.__pwned = 1">'
VITALS = {
    "out_of_range": ["heart_rate"],
    "heart_rate": 142.0,
    "resp_rate": 16.0,
    "heart_rate_range": [40.0, 120.0],
    "resp_rate_range": [10.0, 25.0],
}
OUT_OF_BED_MIN = 25
DASH = "\N{EN DASH}"  # between the limits of a range


class Raised:
    """The alarms a test raised, by name; each is closed again when the test ends (the world is shared)."""

    def __init__(self, world: World, vault: Vault) -> None:
        self.world = world
        self.vault = vault
        self.ids: dict[str, int] = {}
        self.faults: dict[str, str] = {}  # name -> the button whose low battery the gateway clears at the end

    def insert(self, name: str, kind: str, priority: str, detail: dict[str, Any], *, bed: int | None) -> int:
        """An alarm as the ticker writes one (``changes.raise_alarm``): its detail sealed, and the change announced
        on ``alarms`` for the streams."""
        where = self.world.beds[bed] if bed is not None else None
        with psycopg.connect(self.world.db, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
                " last_event_at, detail_enc) SELECT %s, %s, %s, (SELECT id FROM devices WHERE code = %s),"
                " (SELECT id FROM beds WHERE code = %s), %s, now(), now(), %s RETURNING id",
                (
                    self.world.home.institution_id,
                    kind,
                    priority,
                    where.sensor if where else None,
                    where.bed_code if where else None,
                    where.resident_id if where else None,
                    alarm_text.seal_detail(self.vault, detail),
                ),
            ).fetchone()
            assert row is not None
            conn.execute("SELECT pg_notify('alarms', %s)", (str(row[0]),))
        self.ids[name] = int(row[0])
        return int(row[0])

    def from_gateway(self, name: str, message: m.DeviceMessage, kind: str) -> int:
        """A device's alarm message through the gateway, ingest and the engine; the alarm it raised."""
        self.world.gateway.send([message], alarm=True)

        def raised() -> int | None:
            with psycopg.connect(self.world.db) as conn:
                row = conn.execute(
                    "SELECT a.id FROM alarms a JOIN devices d ON d.id = a.device_id WHERE d.code = %s AND a.kind = %s"
                    " AND a.state = 'raised' ORDER BY a.id DESC LIMIT 1",
                    (message.dev, kind),
                ).fetchone()
            return int(row[0]) if row is not None else None

        found: int = wait_until(raised, 10, f"the {kind} alarm of {message.dev}")
        self.ids[name] = found
        return found

    def state(self, alarm_id: int) -> str:
        reply = self.world.api(self.world.users.nurse, "GET", f"/api/v1/alarms/{alarm_id}")
        assert reply.status_code == 200, reply.text
        found: str = reply.json()["state"]
        return found

    def close(self) -> None:
        """Faults cleared by the device, as in service; the rest cancelled by a nurse, never acknowledged (the
        regulator's tests compare the homes' times to acknowledge)."""
        for button in self.faults.values():
            fault = m.DeviceFault(dev=button, ts=now_ms(), fault=m.FaultKind.LOW_BATTERY, active=False)
            self.world.gateway.send([fault], alarm=True)
        for name, alarm_id in self.ids.items():
            if name in self.faults or self.state(alarm_id) not in ("raised", "acknowledged", "attending"):
                continue
            body = {"outcome": "test alarm", "outcome_code": "other"}
            reply = self.world.api(self.world.users.nurse, "POST", f"/api/v1/alarms/{alarm_id}/cancel", json=body)
            assert reply.status_code == 200, reply.text
        for name in self.faults.keys() & self.ids.keys():
            wait_until(lambda n=name: self.state(self.ids[n]) == "resolved", 10, f"the {name} fault cleared")


@pytest.fixture
def raised(web: World, vault: Vault) -> Iterator[Raised]:
    found = Raised(web, vault)
    try:
        yield found
    finally:
        found.close()


def _raise_every_kind(world: World, raised: Raised) -> None:
    b = world.beds
    raised.insert("vitals", "vitals", "urgent", VITALS, bed=6)
    exited = datetime.now(UTC) - timedelta(minutes=OUT_OF_BED_MIN)
    raised.insert("bed_exit", "bed_exit", "urgent", {"exited_at": exited.isoformat()}, bed=2)
    raised.insert(
        "wander", "wander", "emergency", {"lat": 31.06142, "lon": 111.65573, "metres_from_home": 1250}, bed=None
    )
    raised.insert("hostile", "gateway_offline", "technical", {"gateway": HOSTILE, "last_status": "death"}, bed=None)
    raised.insert("masked", "vitals", "urgent", dict.fromkeys(VITALS, alarm_text.MASK), bed=7)
    raised.insert("unknown", "future_sensor", "routine", {"reading": 5, "nested": {"a": [1, 2]}}, bed=3)
    raised.insert("prototype", "constructor", "routine", {"fault": "x", "heart_rate": 99}, bed=3)
    raised.insert("empty", "button", "emergency", {}, bed=2)
    raised.from_gateway("fall", m.Fall(dev=b[7].button, ts=now_ms(), source="radar", confidence=0.93), "fall")
    low = m.DeviceFault(dev=b[6].button, ts=now_ms(), fault=m.FaultKind.LOW_BATTERY, active=True, level=12)
    raised.faults["battery"] = b[6].button
    raised.from_gateway("battery", low, "device_low_battery")
    # A gateway from before the level: the engine takes the button's last reading (the feeder's 87 %).
    old = m.DeviceFault(dev=b[5].button, ts=now_ms(), fault=m.FaultKind.LOW_BATTERY, active=True)
    raised.faults["battery_read"] = b[5].button
    raised.from_gateway("battery_read", old, "device_low_battery")
    # A level that is not a percentage says nothing (the device is still named).
    fault = {"fault": "low_battery", "active": True}
    raised.insert("battery_over", "device_low_battery", "technical", {**fault, "level": 150}, bed=3)
    raised.insert("battery_text", "device_low_battery", "technical", {**fault, "level": "12"}, bed=4)


def _item(page: Page, raised: Raised, name: str) -> Locator:
    item = page.locator(f'.alarm[data-alarm-id="{raised.ids[name]}"]')
    expect(item).to_be_visible(timeout=10000)
    return item


def _line(page: Page, raised: Raised, name: str) -> str:
    detail = _item(page, raised, name).locator(".alarm-detail")
    expect(detail).to_have_count(1)
    return detail.inner_text()


def _assert_minutes(pattern: str, line: str) -> None:
    """The minutes out of bed since the exit, as the page counted them a moment after it was raised."""
    found = re.fullmatch(pattern, line)
    assert found is not None and int(found[1]) in (OUT_OF_BED_MIN, OUT_OF_BED_MIN + 1), line


def test_each_alarm_says_what_the_device_or_the_rule_saw(browsers: Browsers, web: World, raised: Raised) -> None:
    page = browsers.open(web.users.nurse, viewport=(1920, 1400)).page("/board")
    ready(page)
    page.evaluate("window.__pwned = 0")
    _raise_every_kind(web, raised)

    assert _line(page, raised, "vitals") == f"心率 142 次/分（范围 40{DASH}120）"  # the breathing rate was in range
    _assert_minutes(r"离床 (\d+) 分钟（\d\d:\d\d 起）", _line(page, raised, "bed_exit"))
    assert _line(page, raised, "wander") == "离院 1.3 公里；位置 31.06142, 111.65573"
    assert _line(page, raised, "fall") == "雷达检测；置信度 0.93"
    assert _line(page, raised, "battery") == f"电量 12%；设备 {web.beds[6].button}"  # how low, which device
    assert _line(page, raised, "battery_read") == f"电量 87%；设备 {web.beds[5].button}"
    assert _line(page, raised, "battery_over") == f"设备 {web.beds[3].sensor}"
    assert _line(page, raised, "battery_text") == f"设备 {web.beds[4].sensor}"
    assert _line(page, raised, "masked") == "心率 *** 次/分；呼吸 *** 次/分"

    # A device's text that looks like HTML is shown as text: no element made of it, nothing run.
    hostile = _item(page, raised, "hostile")
    expect(hostile.locator(".alarm-detail")).to_have_text(f"网关 {HOSTILE}；连接意外断开")
    expect(page.locator("#queue img")).to_have_count(0)
    assert page.evaluate("window.__pwned") == 0

    # A kind the board does not know, a kind named like a property of every object, and an empty detail: no line,
    # and nothing of the detail's JSON anywhere in the item.
    for name in ("unknown", "prototype", "empty"):
        item = _item(page, raised, name)
        expect(item.locator(".alarm-detail")).to_have_count(0)
        assert "{" not in item.inner_text() and "{" not in (item.get_attribute("aria-label") or ""), name

    # Screen readers hear it with the kind; the resolve dialog says it under what is being resolved.
    label = _item(page, raised, "vitals").get_attribute("aria-label") or ""
    assert f"心率或呼吸异常, 心率 142 次/分（范围 40{DASH}120）" in label, label
    _item(page, raised, "vitals").locator('[data-action="resolve"]').click()
    expect(page.locator("#resolve-detail")).to_be_visible()
    expect(page.locator("#resolve-detail")).to_have_text(f"心率 142 次/分（范围 40{DASH}120）")
    shot(page, "board-alarm-details-dialog")
    page.locator("#resolve-cancel").click()
    _item(page, raised, "empty").locator('[data-action="resolve"]').click()
    expect(page.locator("#resolve-detail")).to_be_hidden()
    page.locator("#resolve-cancel").click()
    shot(page, "board-alarm-details")


def test_the_line_follows_the_page_language(browsers: Browsers, web: World, raised: Raised) -> None:
    page = browsers.open(web.users.nurse, viewport=(1920, 1400)).page("/board?lang=en")
    ready(page)
    _raise_every_kind(web, raised)

    assert _line(page, raised, "vitals") == f"heart rate 142 /min (limit 40{DASH}120)"
    _assert_minutes(r"out of bed (\d+) min \(since \d\d:\d\d\)", _line(page, raised, "bed_exit"))
    assert _line(page, raised, "wander") == "1.3 km from the home; position 31.06142, 111.65573"
    assert _line(page, raised, "fall") == "detected by the radar; confidence 0.93"
    assert _line(page, raised, "battery") == f"battery 12%; device {web.beds[6].button}"
    assert _line(page, raised, "battery_read") == f"battery 87%; device {web.beds[5].button}"
    assert _line(page, raised, "battery_over") == f"device {web.beds[3].sensor}"
    # Switched back to Chinese on the page: the lines are written again in Chinese.
    page.get_by_role("button", name="中文").click()
    expect(_item(page, raised, "fall").locator(".alarm-detail")).to_have_text("雷达检测；置信度 0.93")
    expect(_item(page, raised, "battery").locator(".alarm-detail")).to_have_text(f"电量 12%；设备 {web.beds[6].button}")
    expect(_item(page, raised, "wander").locator(".alarm-detail")).to_have_text(
        "离院 1.3 公里；位置 31.06142, 111.65573"
    )


def test_a_new_alarm_is_announced_with_its_line(browsers: Browsers, web: World, raised: Raised) -> None:
    """The live region (what a screen reader reads out when an alarm comes in) says what it is about too."""
    page = browsers.open(web.users.nurse, viewport=(1920, 1400)).page("/board")
    ready(page)
    raised.insert("vitals", "vitals", "urgent", VITALS, bed=6)
    _item(page, raised, "vitals")
    expect(page.locator("#live")).to_contain_text("新报警：较急 · 心率或呼吸异常 · ")
    expect(page.locator("#live")).to_contain_text(f" · 心率 142 次/分（范围 40{DASH}120）")
