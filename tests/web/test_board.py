"""The staff board in a real browser: a button press published by the gateway shows on the board within 2 s
without a reload; acknowledging on one board changes the alarm everywhere (another nurse's board, the API)
and silences the sound; attending and resolving with an outcome from the keyboard; bed tiles tell in bed,
out of bed (with minutes), device offline, in hospital and empty apart; the handover lists what to hand over."""

from __future__ import annotations

import re
import time

import psycopg
from playwright.sync_api import Page, expect
from tests.web.conftest import Browsers, ready, shot
from tests.web.support import World, wait_until

from eldercare.devices import messages as m
from eldercare.simulators.uplink import now_ms


def _press(world: World, bed_index: int) -> float:
    """A button press as the gateway publishes it; the moment it was handed to the broker."""
    bed = world.beds[bed_index]
    world.gateway.send([m.Button(dev=bed.button, ts=now_ms(), action=m.ButtonAction.PRESS)], alarm=True)
    return time.monotonic()


def _tile(page: Page, world: World, index: int) -> str:
    return f'.tile[data-bed-code="{world.beds[index].bed_code}"]'


def _open_board(browsers: Browsers, username: str, **kwargs: object) -> Page:
    page = browsers.open(username, **kwargs).page("/board")  # type: ignore[arg-type]
    ready(page)
    return page


def test_the_tiles_tell_the_state_of_each_bed(browsers: Browsers, web: World) -> None:
    page = _open_board(browsers, web.users.nurse, viewport=(1920, 1080))
    b = web.beds
    expect(page.locator(_tile(page, web, 0))).to_have_attribute("data-presence", "in_bed")
    expect(page.locator(_tile(page, web, 0) + " .tile-name")).to_have_text(b[0].name)
    out = page.locator(_tile(page, web, 2))
    expect(out).to_have_attribute("data-presence", "out_of_bed")
    minutes = int("".join(ch for ch in out.locator(".tile-state").inner_text() if ch.isdigit()))
    assert 25 <= minutes <= 60, out.inner_text()
    expect(page.locator(_tile(page, web, 3))).to_have_class(re.compile(r"\btile-offline\b"))
    expect(page.locator(_tile(page, web, 3) + " .tile-state")).to_have_text("在床状态未知")  # not "in bed"
    expect(page.locator(_tile(page, web, 3) + " .tile-alarm")).to_contain_text("设备离线")
    expect(page.locator(_tile(page, web, 4) + " .tile-state")).to_have_text("住院中")
    expect(page.locator(".tile.tile-empty")).to_have_count(1)
    # The technical alarm the gateway raised for the silent sensor: in the queue, steady (no flashing).
    technical = page.locator('.alarm[data-priority="technical"]')
    expect(technical.first).to_be_visible()
    assert technical.first.locator(".alarm-head").evaluate("e => getComputedStyle(e).animationName") == "none"
    shot(page, "board-nurse-station")


def test_a_button_press_shows_on_the_board_within_2_s_without_reload(browsers: Browsers, web: World) -> None:
    visit = browsers.open(web.users.nurse, viewport=(1920, 1080))
    page = visit.page("/board")
    ready(page)
    page.get_by_role("button", name="开启报警声音").click()
    expect(page.locator("body")).to_have_attribute("data-sound-wanted", "off")
    page.evaluate("window.__sameDocument = 'yes'")
    loads = len(visit.navigations)

    started = _press(web, 6)
    tile = page.locator(_tile(page, web, 6) + "[data-alarm-id]")
    tile.wait_for(timeout=2000)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"the board showed the alarm after {elapsed:.3f} s"

    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    assert len(visit.navigations) == loads
    alarm_id = tile.get_attribute("data-alarm-id")
    item = page.locator(f'.alarm[data-alarm-id="{alarm_id}"]')
    expect(item).to_have_attribute("data-priority", "emergency")
    expect(item).to_contain_text(web.beds[6].name)
    expect(item).to_contain_text("一键呼叫")
    # Emergency: red, flashing at 2 Hz; the sound plays the emergency pattern; the live region says it.
    assert item.locator(".alarm-head").evaluate("e => getComputedStyle(e).animationName") == "flash-red"
    expect(page.locator("body")).to_have_attribute("data-sound", "emergency")
    expect(page.locator("#live")).to_contain_text("一键呼叫")
    wait_until(lambda: int(page.locator("body").get_attribute("data-sound-bursts") or 0) >= 1, 5, "a burst played")
    shot(page, "board-emergency")

    # Acknowledge from the page: the sound stops, the tile stays coloured but says acknowledged.
    item.get_by_role("button", name="确认").click()
    expect(page.locator("body")).to_have_attribute("data-sound", "off")
    expect(tile).to_have_attribute("data-alarm-state", "acknowledged")
    reply = web.api(web.users.nurse, "POST", f"/api/v1/alarms/{alarm_id}/resolve", json={"outcome": "accidental_press"})
    assert reply.status_code == 200, reply.text
    expect(page.locator(f'.alarm[data-alarm-id="{alarm_id}"]')).to_have_count(0)


def test_acknowledge_on_one_board_changes_it_everywhere(browsers: Browsers, web: World) -> None:
    first = _open_board(browsers, web.users.nurse)
    second = _open_board(browsers, web.users.nurse2, viewport=(390, 844), is_mobile=True, has_touch=True)
    first.get_by_role("button", name="开启报警声音").click()
    second.evaluate("window.__sameDocument = 'yes'")

    _press(web, 7)
    tile = first.locator(_tile(first, web, 7) + "[data-alarm-id]")
    tile.wait_for(timeout=2000)
    alarm_id = tile.get_attribute("data-alarm-id")
    assert alarm_id is not None
    other = second.locator(f'.alarm[data-alarm-id="{alarm_id}"]')
    expect(other).to_have_attribute("data-state", "raised", timeout=2000)
    expect(first.locator("body")).to_have_attribute("data-sound", "emergency")
    shot(second, "board-phone-emergency")

    # Keyboard only: Tab to the acknowledge button of this alarm, then Space.
    ack = first.locator(f'.alarm[data-alarm-id="{alarm_id}"] [data-action="acknowledge"]')
    first.locator("body").focus()
    for _ in range(60):
        first.keyboard.press("Tab")
        if ack.evaluate("e => e === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the acknowledge button")
    outline = ack.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none", "the focused button shows no focus"
    first.keyboard.press(" ")

    expect(other).to_have_attribute("data-state", "acknowledged", timeout=2000)
    expect(second.locator(_tile(second, web, 7))).to_have_attribute("data-alarm-state", "acknowledged")
    assert second.evaluate("window.__sameDocument") == "yes", "the second board was reloaded"
    expect(first.locator("body")).to_have_attribute("data-sound", "off")
    api = web.api(web.users.nurse2, "GET", f"/api/v1/alarms/{alarm_id}").json()
    assert api["state"] == "acknowledged"
    assert api["acknowledged_at"] is not None

    # The second nurse is at the bedside, then resolves with an outcome in the dialog, by keyboard.
    other.get_by_role("button", name="已到场").click()
    expect(first.locator(f'.alarm[data-alarm-id="{alarm_id}"]')).to_have_attribute(
        "data-state", "attending", timeout=2000
    )
    head = first.locator(f'.alarm[data-alarm-id="{alarm_id}"] .alarm-head')
    assert head.evaluate("e => getComputedStyle(e).animationName") == "none", "attending: steady"
    second.locator(f'.alarm[data-alarm-id="{alarm_id}"] [data-action="resolve"]').focus()
    second.keyboard.press("Enter")
    dialog = second.locator("#resolve-dialog")
    expect(dialog).to_be_visible()
    second.get_by_role("button", name="确认解除").click()  # nothing chosen yet: refused with a reason
    expect(second.locator("#resolve-error")).to_be_visible()
    second.get_by_label("误报").check()
    second.locator("#resolve-note").fill("老人翻身压到按钮")
    shot(second, "board-phone-resolve-dialog")
    second.get_by_role("button", name="确认解除").click()
    expect(dialog).to_be_hidden()
    expect(first.locator(f'.alarm[data-alarm-id="{alarm_id}"]')).to_have_count(0, timeout=2000)
    api = web.api(web.users.nurse, "GET", f"/api/v1/alarms/{alarm_id}").json()
    assert api["state"] == "resolved"
    assert api["outcome"] == "false_alarm"
    history = web.api(web.users.nurse, "GET", f"/api/v1/alarms/{alarm_id}/history").json()
    assert [h["to_state"] for h in history][-3:] == ["acknowledged", "attending", "resolved"]
    assert history[-1]["note"] == "老人翻身压到按钮"


def test_every_choice_of_the_resolve_dialog_is_sent_as_its_code(browsers: Browsers, web: World) -> None:
    """The choice "other" with a text of its own is stored as the code ``other`` beside the text (migration 0015),
    so the regulators' figures count the alarm as closed with a code, not as one whose ending is not known."""
    page = _open_board(browsers, web.users.nurse)
    _press(web, 6)
    tile = page.locator(_tile(page, web, 6) + "[data-alarm-id]")
    tile.wait_for(timeout=2000)
    alarm_id = tile.get_attribute("data-alarm-id")
    item = page.locator(f'.alarm[data-alarm-id="{alarm_id}"]')
    # Resolved straight away, never acknowledged: answered in seconds, and no time to acknowledge that would change
    # the home's percentiles, which the regulator's tests compare with the other homes'.
    item.locator('[data-action="resolve"]').click()
    expect(page.locator("#resolve-dialog")).to_be_visible()
    page.get_by_label("其他", exact=True).check()
    page.locator("#resolve-other").fill("老人想喝水")
    page.get_by_role("button", name="确认解除").click()
    expect(page.locator("#resolve-dialog")).to_be_hidden()
    expect(item).to_have_count(0, timeout=2000)
    api = web.api(web.users.nurse, "GET", f"/api/v1/alarms/{alarm_id}").json()
    assert (api["state"], api["outcome"], api["outcome_code"]) == ("resolved", "老人想喝水", "other")
    with psycopg.connect(web.db) as conn:
        stored = conn.execute("SELECT outcome_code::text FROM alarms WHERE id = %s", (int(alarm_id or 0),)).fetchone()
    assert stored == ("other",)


def test_reduced_motion_replaces_flashing_with_a_steady_cue(browsers: Browsers, web: World) -> None:
    page = _open_board(browsers, web.users.nurse, reduced_motion="reduce")
    _press(web, 0)
    tile = page.locator(_tile(page, web, 0) + "[data-alarm-id]")
    tile.wait_for(timeout=2000)
    style = tile.evaluate("e => [getComputedStyle(e).animationName, getComputedStyle(e).backgroundImage]")
    assert style[0] == "none"
    assert "repeating-linear-gradient" in style[1]
    expect(tile.locator(".tile-alarm")).to_contain_text("!!!")
    shot(page, "board-reduced-motion")
    alarm_id = tile.get_attribute("data-alarm-id")
    # Acknowledged first: the response-time reports count an alarm never acknowledged as left unanswered.
    for action, body in (("acknowledge", {}), ("cancel", {"outcome": "accidental_press"})):
        reply = web.api(web.users.nurse, "POST", f"/api/v1/alarms/{alarm_id}/{action}", json=body)
        assert reply.status_code == 200, reply.text


def test_the_handover_lists_alarms_residents_out_of_bed_and_devices_to_fix(browsers: Browsers, web: World) -> None:
    page = browsers.open(web.users.nurse).page("/handover")
    ready(page)
    expect(page.locator("#t-out tbody tr")).to_have_count(1)
    expect(page.locator("#t-out")).to_contain_text(web.beds[2].name)
    expect(page.locator("#t-devices")).to_contain_text(web.beds[3].sensor)
    expect(page.locator("#t-devices")).to_contain_text("设备离线")
    expect(page.locator("#l-away")).to_contain_text(web.beds[4].name)
    expect(page.locator("#t-alarms tbody tr").first).to_be_visible()
    shot(page, "handover")


def test_the_language_switch_is_remembered(browsers: Browsers, web: World) -> None:
    visit = browsers.open(web.users.nurse, viewport=(1920, 1080))
    page = visit.page("/board")
    ready(page)
    page.get_by_role("button", name="English").click()
    expect(page.locator("h1")).to_have_text("Nurse station board")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.reload()
    ready(page)
    expect(page.locator("h1")).to_have_text("Nurse station board")
    expect(page.locator(_tile(page, web, 2) + " .tile-state")).to_contain_text("Out of bed")
    shot(page, "board-english")
    page.get_by_role("button", name="中文").click()
    expect(page.locator("h1")).to_have_text("护理站看板")
