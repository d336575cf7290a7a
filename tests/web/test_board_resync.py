"""The staff board in a real browser when the platform's alarm stream lost changes: an alarm raised while the
hub's LISTEN connection was down still shows on the board (entry, tile, sound) within seconds, without a
reload, because the stream ends after the hub listens again and the page reconnects to a fresh snapshot."""

from __future__ import annotations

import psycopg
from playwright.sync_api import expect
from tests.web.conftest import Browsers, ready
from tests.web.support import World


def _raise_while_the_hub_is_not_listening(world: World, bed_index: int) -> int:
    """Cut the hub's LISTEN connection and, in the same transaction, raise an emergency for the bed: its
    notification is sent while nobody listens, so it is lost to every open stream."""
    bed = world.beds[bed_index]
    with psycopg.connect(world.db) as conn:
        cut = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = 'LISTEN alarms' AND pid <> pg_backend_pid()"
        ).fetchone()
        assert cut is not None and cut[0] >= 1, "no hub was listening"
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " last_event_at) SELECT %s, 'button', 'emergency', d.id, b.id, %s, now(), now()"
            " FROM devices d, beds b WHERE d.code = %s AND b.code = %s RETURNING id",
            (world.home.institution_id, bed.resident_id, bed.button, bed.bed_code),
        ).fetchone()
        assert row is not None
        conn.execute("SELECT pg_notify('alarms', %s)", (str(row[0]),))
    return int(row[0])


def test_an_alarm_raised_while_the_stream_was_down_shows_after_it_is_back(browsers: Browsers, web: World) -> None:
    visit = browsers.open(web.users.nurse, viewport=(1920, 1080))
    page = visit.page("/board")
    ready(page)
    page.evaluate("window.__sameDocument = 'yes'")
    loads = len(visit.navigations)

    alarm_id = _raise_while_the_hub_is_not_listening(web, 6)
    item = page.locator(f'.alarm[data-alarm-id="{alarm_id}"]')
    expect(item).to_have_attribute("data-priority", "emergency", timeout=10000)
    tile = page.locator(f'.tile[data-bed-code="{web.beds[6].bed_code}"]')
    expect(tile).to_have_attribute("data-alarm-id", str(alarm_id))
    expect(page.locator("body")).to_have_attribute("data-sound-wanted", "emergency")
    expect(page.locator("#stream-down")).to_be_hidden()
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    assert len(visit.navigations) == loads

    # The stream is live again: resolving it elsewhere takes it off this board.
    resolve = f"/api/v1/alarms/{alarm_id}/resolve"
    reply = web.api(web.users.nurse2, "POST", resolve, json={"outcome": "accidental_press"})
    assert reply.status_code == 200, reply.text
    expect(item).to_have_count(0, timeout=2000)
    expect(page.locator("body")).to_have_attribute("data-sound-wanted", "off")
