"""The map page in headless Chromium (Debian's /usr/bin/chromium driven by playwright): it draws the homes
with no tiles and no internet, filters, opens a detail card from a marker and from the list, switches to
English, and asks nothing of any host but the platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from tests.map.conftest import settings
from tests.map.images import png
from tests.map.world import PASSWORD, World
from tests.registry.support import Database, Server, data_key

from eldercare.platform.map.state import MapState
from eldercare.platform.stack.model import StackInfo

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "map"


@pytest.fixture(scope="module")
def server(stack: StackInfo, map_db: Database, map_world: World) -> Iterator[Server]:
    srv = Server(database_url=map_db.url, key=data_key(stack), state_dir=stack.state_dir)
    srv.app.state.map = MapState(settings())
    with srv:
        # A photo of home A, added by its head through the API (it shows in the card).
        login = httpx.post(
            f"{srv.base}/api/v1/auth/login", json={"username": map_world.head_of_a, "password": PASSWORD}, timeout=30
        )
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        reply = httpx.post(
            f"{srv.base}/api/v1/map/homes/{map_world.homes['A'].code}/photos",
            params={"caption": "正门"},
            content=png(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
        yield srv


def listed(page: Page) -> set[str]:
    return set(page.locator("#list li.entry").evaluate_all("items => items.map(i => i.dataset.code)"))


def apply_filters(page: Page) -> None:
    with page.expect_response(lambda r: "/api/v1/map/homes?" in r.url):
        page.click("#apply")
    page.wait_for_timeout(200)  # the list is drawn right after the answer


def test_filter_click_and_detail_without_internet(server: Server, map_world: World) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    homes = map_world.homes
    origin = urlsplit(server.base).netloc
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
            page.on("request", lambda req: requested.append(req.url))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.base}/map")
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            page.wait_for_timeout(300)

            # Yichang is in view: homes A, B and C (F has no position, D and E are far away).
            assert listed(page) == {homes["A"].code, homes["B"].code, homes["C"].code}
            assert page.locator("html").get_attribute("lang") == "zh-CN"
            assert "视野内 3 家" in page.inner_text("#summary")
            labels = page.locator(".district-label").all_inner_texts()
            assert {"西陵区", "伍家岗区", "点军区"} <= set(labels)
            markers = page.locator("path.home-marker")
            assert markers.count() == 3
            # Coloured by free beds: A has 3 free (few), B 2 (few), C none (full).
            assert page.locator(f"path.home-marker.free-none[data-code='{homes['C'].code}']").count() == 1
            assert page.locator(f"path.home-marker.free-few[data-code='{homes['A'].code}']").count() == 1
            page.screenshot(path=str(SHOTS / "01-initial.png"))

            # Filters: at least one free bed drops C; community centres only leaves B; dementia care only A.
            page.fill("#f-free", "1")
            apply_filters(page)
            assert listed(page) == {homes["A"].code, homes["B"].code}
            page.select_option("#f-type", "community_centre")
            apply_filters(page)
            assert listed(page) == {homes["B"].code}
            page.select_option("#f-type", "")
            page.check("input[name=services][value=dementia_care]")
            apply_filters(page)
            assert listed(page) == {homes["A"].code}
            page.uncheck("input[name=services][value=dementia_care]")
            page.fill("#f-free", "")
            apply_filters(page)
            assert len(listed(page)) == 3

            # Click A's marker: the card shows the seeds' fields.
            with page.expect_response(lambda r: f"/api/v1/map/homes/{homes['A'].code}" in r.url):
                page.locator(f"path.home-marker[data-code='{homes['A'].code}']").click()
            card = page.locator("#card")
            card.wait_for(state="visible")
            assert page.inner_text(".card-name") == "夕阳红养老院"
            assert page.inner_text(".card-grade") == "★★★★★"
            assert "3,000\u20136,000 元/月" in page.inner_text(".card-price")
            assert page.inner_text(".card-address") == "湖北省宜昌市西陵区夷陵大道1号"
            assert page.inner_text(".card-phone") == "0717-6221234"
            assert "医养结合" in page.inner_text(".card-services")
            beds = page.locator("table.beds tbody tr").all_inner_texts()
            assert [" ".join(row.split()) for row in beds] == ["护理型 4 1", "普通型 3 2", "总数 7 3"]
            assert page.locator("table.rooms tbody tr").count() == 4  # rooms 101, 102, 201, 202
            page.locator(".gallery img").first.wait_for(state="visible")
            assert page.locator(".gallery img").evaluate("img => img.complete && img.naturalWidth") == 64
            page.screenshot(path=str(SHOTS / "02-detail-from-marker.png"))

            # Click B in the list: the card follows.
            with page.expect_response(lambda r: f"/api/v1/map/homes/{homes['B'].code}" in r.url):
                page.click(f"#list li[data-code='{homes['B'].code}']")
            # Not page.wait_for_function with a string: Playwright evals the string again on every poll, and the
            # page's CSP (no 'unsafe-eval') refuses that whenever the card is not filled at the first look.
            expect(page.locator(".card-name")).to_have_text("伍家岗社区养老服务中心", timeout=5000)

            # English.
            page.click("#lang")
            assert page.locator("html").get_attribute("lang") == "en"
            assert page.inner_text(".card-type") == "Community centre"
            assert "3 in view" in page.inner_text("#summary")
            page.screenshot(path=str(SHOTS / "03-english.png"))

            # Panning the map to Wuhan: the list follows the view.
            page.evaluate("() => document.querySelector('#map')")  # the map exists
            with page.expect_response(lambda r: "/api/v1/map/homes?" in r.url):
                page.evaluate("([lat, lon]) => window.__map && window.__map.setView([lat, lon], 12)", [30.554, 114.316])
            page.wait_for_timeout(300)
            assert listed(page) == {homes["D"].code}
            assert errors == []
        finally:
            browser.close()

    foreign = sorted(
        {u for u in requested if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != origin}
    )
    assert foreign == [], f"the page asked other hosts: {foreign}"
    assert any(u.endswith("/static/vendor/leaflet/leaflet.js") for u in requested)
