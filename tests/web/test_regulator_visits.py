"""The regulator's page shows the coverage of the visits to elders living alone (``/api/v1/supervision/visits``):
per home and for the region, key subjects visited every month and general ones in the year, a rate below its
100% target marked as a missed target, "—" where there is nobody of a kind; and a failure of that request says so
in its own section and leaves the rest of the page. A home's drill-down shows that home's row, the same figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Page, Route, expect
from tests.web.conftest import Browsers, ready, shot
from tests.web.support import REGION, World

ZONE = ZoneInfo("Asia/Shanghai")
KINDS = ("key", "general")


def _period() -> str:
    """The last 30 local days, today included (the page's default, given in the address so that it is sure)."""
    today = datetime.now(ZONE).date()
    return f"from={today - timedelta(days=29)}&to={today}"


@pytest.fixture
def living_alone(web: World) -> Iterator[tuple[str, int, int]]:
    """Two residents of the home of the same kind today (the world's birth dates are random), put on the visit list
    today: the first visited just now, the second not. Their kind, and them; taken off the list and their visits
    removed afterwards. The home is a home-care provider meanwhile (home-care beds: the same beds and devices in the
    elders' own homes): a residential home's residents live in it, not alone (migration 0032)."""
    home_kind = "UPDATE institutions SET kind = %s WHERE id = %s"
    with psycopg.connect(web.db, autocommit=True) as conn:
        conn.execute(home_kind, ("home_care_provider", web.home.institution_id))
        rows = conn.execute(
            "SELECT id, visit_kind(birth_date, capability, (now() AT TIME ZONE 'Asia/Shanghai')::date)"
            " FROM residents WHERE id = ANY(%s) AND status IN ('registered', 'admitted') ORDER BY id",
            ([b.resident_id for b in web.beds],),
        ).fetchall()
        alone = conn.execute(
            "SELECT count(*) FROM residents r JOIN institutions i ON i.id = r.institution_id"
            " WHERE r.lives_alone AND i.region_code LIKE %s",
            (REGION + "%",),
        ).fetchone()
    assert alone == (0,), "the region has elders living alone already: the figures below would not be these"
    by_kind = {kind: [r for r, k in rows if k == kind] for kind in KINDS}
    kind = max(KINDS, key=lambda k: len(by_kind[k]))
    visited, missed = by_kind[kind][:2]
    try:
        for resident in (visited, missed):
            reply = web.api(web.users.nurse, "PATCH", f"/api/v1/residents/{resident}", json={"lives_alone": True})
            assert reply.status_code == 200, reply.text
        body = {"visited_at": datetime.now(UTC).isoformat(), "mode": "in_person", "outcome": "well"}
        reply = web.api(web.users.nurse, "POST", f"/api/v1/residents/{visited}/visits", json=body)
        assert reply.status_code == 201, reply.text
        yield kind, visited, missed
    finally:
        with psycopg.connect(web.db, autocommit=True) as conn:
            conn.execute("DELETE FROM resident_visits WHERE resident_id = ANY(%s)", ([visited, missed],))
            conn.execute("UPDATE residents SET lives_alone = false WHERE id = ANY(%s)", ([visited, missed],))
            conn.execute(home_kind, ("residential_home", web.home.institution_id))


def _cell(page: Page, row: str, key: str) -> tuple[str, str]:
    cell = page.locator(f'#visits-table tbody {row} td[data-key="{key}"]')
    return cell.inner_text().strip(), cell.get_attribute("class") or ""


def test_the_regulator_sees_the_visits_to_elders_living_alone(
    browsers: Browsers, web: World, living_alone: tuple[str, int, int]
) -> None:
    kind, _, _ = living_alone
    other = "general" if kind == "key" else "key"
    page = browsers.open(web.users.regulator, viewport=(1366, 900)).page("/regulator?" + _period())
    ready(page, 30000)
    expect(page.locator("#visits-table tbody tr")).to_have_count(len(web.other_homes) + 2)
    expect(page.locator("#visits-error")).to_be_hidden()
    home = f'tr[data-institution-id="{web.home.institution_id}"]'
    expect(page.locator(f"#visits-table tbody {home} th")).to_have_text(web.home.name)
    for row in (home, "tr.total"):  # the home, and the region: nobody else in it lives alone
        assert _cell(page, row, "living_alone")[0] == "2"
        assert _cell(page, row, f"{kind}_visited")[0] == "1/2"
        text, cls = _cell(page, row, f"{kind}_coverage")
        assert text == "50.0% ⚠" and "bad" in cls.split(), (row, text, cls)  # below the 100% target
        assert _cell(page, row, f"{other}_visited") == ("—", "num")  # nobody of that kind: no rate, not 0%
        assert _cell(page, row, f"{other}_coverage") == ("—", "num")
    for h in web.other_homes:
        row = f'tr[data-institution-id="{h.institution_id}"]'
        assert _cell(page, row, "living_alone")[0] == "0"
        assert [_cell(page, row, k)[0] for k in ("key_coverage", "general_coverage")] == ["—", "—"]

    tile = page.locator(f'#totals [data-key="col_{kind}_coverage"]')
    expect(tile.locator("dd")).to_have_text("50.0%")
    expect(tile.locator("dd")).to_have_class("bad")
    expect(tile.locator("dt")).to_contain_text("目标 100.0%")
    expect(page.locator(f'#totals [data-key="col_{other}_coverage"] dd')).to_have_text("—")
    expect(page.locator(f'#totals [data-key="col_{other}_coverage"] dd')).not_to_have_class("bad")
    # readable on a 1366 px screen: the table of its own fits without scrolling sideways
    wrap = page.locator("#visits-table").locator("xpath=..")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), "the visits' table is wider than the page"
    shot(page, "regulator-visits")

    page.get_by_role("button", name="English").click()
    expect(page.locator("#visits-title")).to_have_text("Visits to elders living alone")
    expect(tile.locator("dt")).to_contain_text("(target 100.0%)")
    expect(page.locator("#visits-table thead")).to_contain_text("Living alone")
    page.get_by_role("button", name="中文").click()


def test_a_failed_coverage_is_said_in_its_section_and_leaves_the_rest(browsers: Browsers, web: World) -> None:
    """The network drops the coverage's request (the figures' and the others' go through)."""
    visit = browsers.open(web.users.regulator, viewport=(1366, 900))

    def drop(route: Route) -> None:
        route.abort("failed")

    visit.context.route("**/api/v1/supervision/visits?*", drop)
    page = visit.page("/regulator?" + _period())
    ready(page, 30000)
    expect(page.locator("#visits-error")).to_be_visible()
    expect(page.locator("#visits-error")).to_contain_text("出错了")
    expect(page.locator("#visits-table")).to_be_hidden()
    expect(page.locator("#page-error")).to_be_hidden()
    expect(page.locator("#homes tbody tr:not(.total)")).to_have_count(len(web.other_homes) + 1)
    expect(page.locator('#totals [data-key="col_key_coverage"]')).to_have_count(0)
    expect(page.locator("#map path.leaflet-interactive")).to_have_count(len(web.other_homes) + 1)


def _drill_down(browsers: Browsers, web: World, home: int, drop_visits: bool = False) -> Page:
    visit = browsers.open(web.users.regulator, viewport=(1366, 900))
    if drop_visits:

        def drop(route: Route) -> None:
            route.abort("failed")

        visit.context.route("**/api/v1/supervision/visits?*", drop)
    page = visit.page(f"/regulator/institutions/{home}?" + _period())
    ready(page, 30000)
    return page


def test_a_homes_drill_down_shows_its_visits_as_the_regions_table_does(
    browsers: Browsers, web: World, living_alone: tuple[str, int, int]
) -> None:
    """The home's row of the visits' table, the same cells as on the region page (asked of the server for that home
    alone: ``?institution_id=``); a home where nobody lives alone shows 0 and "—"."""
    kind, _, _ = living_alone
    other = "general" if kind == "key" else "key"
    region = browsers.open(web.users.regulator, viewport=(1366, 900)).page("/regulator?" + _period())
    ready(region, 30000)
    row = f'tr[data-institution-id="{web.home.institution_id}"]'
    expect(region.locator(f"#visits-table tbody {row}")).to_have_count(1)
    keys = ("living_alone", "key_visited", "key_coverage", "general_visited", "general_coverage")
    on_region = [_cell(region, row, k) for k in keys]

    page = _drill_down(browsers, web, web.home.institution_id)
    expect(page.locator("#visits-table tbody tr")).to_have_count(1)
    expect(page.locator("#visits-error")).to_be_hidden()
    expect(page.locator(f"#visits-table tbody {row} th")).to_have_text(web.home.name)
    assert [_cell(page, row, k) for k in keys] == on_region
    assert _cell(page, row, "living_alone")[0] == "2"
    assert _cell(page, row, f"{kind}_visited")[0] == "1/2"
    text, cls = _cell(page, row, f"{kind}_coverage")
    assert text == "50.0% ⚠" and "bad" in cls.split()
    assert _cell(page, row, f"{other}_coverage") == ("—", "num")
    shot(page, "regulator-home-visits")
    page.get_by_role("button", name="English").click()
    expect(page.locator("#visits-title")).to_have_text("Visits to elders living alone")
    expect(page.locator("#visits-table thead")).to_contain_text("Living alone")
    page.get_by_role("button", name="中文").click()

    quiet = web.other_homes[0].institution_id
    page = _drill_down(browsers, web, quiet)
    row = f'tr[data-institution-id="{quiet}"]'
    assert _cell(page, row, "living_alone")[0] == "0"
    assert [_cell(page, row, k)[0] for k in ("key_coverage", "general_coverage")] == ["—", "—"]


def test_a_failed_coverage_on_a_homes_drill_down_leaves_the_rest(browsers: Browsers, web: World) -> None:
    page = _drill_down(browsers, web, web.home.institution_id, drop_visits=True)
    expect(page.locator("#visits-error")).to_be_visible()
    expect(page.locator("#visits-error")).to_contain_text("出错了")
    expect(page.locator("#visits-table")).to_be_hidden()
    expect(page.locator("#page-error")).to_be_hidden()
    expect(page.locator("#content")).to_be_visible()
    expect(page.locator("#home-name")).to_have_text(web.home.name)
