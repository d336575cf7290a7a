"""The regulator's view in a real browser (homes of the region on the map and in a sortable table with the
supervision figures, the drill-down of one home, the subsidy section), and
logging in and out."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
from openpyxl import load_workbook
from playwright.sync_api import Locator, Page, expect
from tests.web.conftest import EMPTY_NIGHT, SILENT_NIGHTS, STRANGER, Browsers, hold_texts, ready, release, shot
from tests.web.support import PASSWORD, REGION, World

from eldercare.platform.subsidy.reports import LINE_COLUMNS, TOTAL_COLUMNS, headers


def _column(page: Page, index: int) -> list[str]:
    cells = page.locator(f"#homes tbody tr:not(.total) > :nth-child({index})")
    return [c.strip() for c in cells.all_inner_texts()]


def _subsidy_section(page: Page, web: World) -> None:
    """Subsidy verification's totals of the month (none verified yet in this world: it says so)."""
    assert "/api/v1/subsidy/totals" in httpx.get(f"{web.base}/openapi.json").json()["paths"]
    expect(page.locator("#subsidy")).to_have_attribute("data-state", "shown")
    expect(page.locator("#subsidy-missing")).to_be_hidden()
    expect(page.locator("#subsidy-month")).to_be_visible()


def test_the_regulator_sees_the_region_on_a_map_and_in_a_sortable_table(browsers: Browsers, web: World) -> None:
    page = browsers.open(web.users.regulator, viewport=(1600, 1100)).page("/regulator")
    ready(page, 30000)
    homes = [web.home, *web.other_homes]
    expect(page.locator("#homes tbody tr:not(.total)")).to_have_count(len(homes))
    for home in homes:
        expect(page.locator("#homes")).to_contain_text(home.name)
    expect(page.locator("#map path.leaflet-interactive")).to_have_count(len(homes))
    # Red: the home that leaves calls unanswered for minutes; the others have lesser reasons (yellow).
    expect(page.locator('#map path.leaflet-interactive[fill="#c62828"]')).to_have_count(1)
    _subsidy_section(page, web)
    name, data = _download(page, page.locator('#subsidy-files button[data-format="xlsx"]'))
    table = [list(r) for r in load_workbook(io.BytesIO(data)).worksheets[0].iter_rows(values_only=True)]
    assert name.endswith(".xlsx") and table[0] == headers(TOTAL_COLUMNS, "zh-CN"), (name, table[0])
    assert web.other_homes[1].name in [r[TOTAL_COLUMNS.index("institution_name")] for r in table[1:]]

    # The slow home (7 minutes to acknowledge) comes first when sorted by the 90th percentile, descending.
    header = page.locator('#homes th:has(button[data-sort="p90_s_to_acknowledge"])')
    page.locator('button[data-sort="p90_s_to_acknowledge"]').click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    page.keyboard.press("Enter")  # the button keeps the focus: Enter sorts the other way
    expect(header).to_have_attribute("aria-sort", "descending")
    names = _column(page, 1)
    assert names[0] == web.other_homes[1].name, names
    assert names[-1] == web.other_homes[0].name, names  # 25 s; the board's home took 40 s once
    slow = page.locator(f'#homes tr[data-institution-id="{web.other_homes[1].institution_id}"]')
    expect(slow).to_contain_text("7 分钟")
    expect(page.locator("#attention")).to_contain_text(web.other_homes[1].name)
    expect(page.locator("#attention")).to_contain_text("5 分钟")  # unacknowledged over 5 minutes
    page.locator('button[data-sort="institution_name"]').click()
    assert _column(page, 1) == sorted(_column(page, 1))
    shot(page, "regulator")

    # Drill-down of the slow home.
    page.get_by_role("link", name=web.other_homes[1].name).first.click()
    ready(page, 30000)
    expect(page).to_have_url(
        f"{web.base}/regulator/institutions/{web.other_homes[1].institution_id}" + "?" + page.url.split("?")[1]
    )
    expect(page.locator("#home-name")).to_have_text(web.other_homes[1].name)
    expect(page.locator("#figures")).to_contain_text("7 分钟")
    expect(page.locator("#kinds")).to_contain_text("一键呼叫")
    expect(page.locator("#terms tbody tr").first).to_be_visible()
    expect(page.locator("#risks tbody tr").first).to_be_visible()
    # the credit rules and the inspection's findings in the page's language
    expect(page.locator("#terms")).to_contain_text("每秒扣 0.1 分")
    expect(page.locator("#risks")).to_contain_text("平台的数据无法反映此风险")
    expect(page.locator("#terms")).not_to_contain_text("point per")
    expect(page.locator("#risks")).not_to_contain_text("cannot speak")
    _subsidy_section(page, web)
    # The home's claim line for a person it never registered (tests/web/conftest.py): rejected, and why.
    expect(page.locator("#subsidy-lines tbody tr")).to_have_count(2)
    line = page.locator('#subsidy-lines tbody tr[data-line="1"]')
    expect(line).to_contain_text("不予通过")
    reason = line.locator('li[data-code="unknown_person"]')
    expect(reason).to_contain_text("人员未在本机构登记")
    expect(reason).to_contain_text(f"人员编码 {STRANGER} 未在本机构登记")  # the text too, in Chinese
    expect(reason).not_to_contain_text("is not registered")
    # no age or capability to judge eligibility by: that the home never registered the person says it all
    expect(line.locator("li")).to_have_count(1)
    expect(line).to_contain_text("高龄津贴")
    expect(line).to_contain_text("¥100.00")
    _nights_of_the_claims(page)
    expect(page.locator("#subsidy-table")).to_contain_text(web.other_homes[1].name)
    shot(page, "regulator-institution")
    _files_of_the_home(page)


def test_false_alarms_per_home_or_that_they_are_not_known(browsers: Browsers, web: World) -> None:
    """Counted among the alarms closed with an outcome code (migration 0015): the fast home closed five, one a false
    alarm; the slow home's were closed before there were codes, so its false alarms are not known, not zero."""
    page = browsers.open(web.users.regulator, viewport=(1600, 1100)).page("/regulator")
    ready(page, 30000)
    fast, slow = (f'#homes tr[data-institution-id="{h.institution_id}"]' for h in web.other_homes)
    expect(page.locator(f'{fast} td[data-key="false_alarms"]')).to_have_text("1")
    expect(page.locator(f'{fast} td[data-key="false_alarm_rate"]')).to_have_text("20.0%")
    expect(page.locator(f'{slow} td[data-key="false_alarms"]')).to_have_text("不详")
    expect(page.locator(f'{slow} td[data-key="false_alarm_rate"]')).to_have_text("不详")
    expect(page.locator('#totals [data-key="col_false_alarm_rate"] dd')).not_to_have_text("—")
    expect(page.locator("#table-title ~ p.muted").last).to_contain_text("误报、误按或设备问题")
    # unknown sorts last either way
    page.locator('button[data-sort="false_alarms"]').click()
    page.locator('button[data-sort="false_alarms"]').click()
    assert _column(page, 1)[-1] == web.other_homes[1].name
    page.get_by_role("button", name="English").click()
    expect(page.locator(f'{slow} td[data-key="false_alarm_rate"]')).to_have_text("not known")
    page.get_by_role("button", name="中文").click()

    page.get_by_role("link", name=web.other_homes[0].name).first.click()
    ready(page, 30000)
    expect(page.locator('#figures [data-key="false_alarms"] dd')).to_have_text("1")
    expect(page.locator('#figures [data-key="false_alarm_rate"] dd')).to_have_text("20.0%")
    expect(page.locator('#figures [data-key="false_alarm_rate"] dt')).to_have_text("误报率")


def _nights_of_the_claims(page: Page) -> None:
    """Each line not paid in full shows the month night by night, as the bed sensor's roll-ups and the registers
    say: the stranger was in no bed of the home; the resident's bed was empty one night and silent two."""
    stranger = page.locator('#subsidy-lines tbody tr[data-line="1"] .nights')
    days = stranger.locator(".night").count()
    assert 28 <= days <= 31
    expect(stranger.locator('.night[data-kind="none"]')).to_have_count(days)
    expect(stranger).to_have_attribute("aria-label", f"未住该床 {days} 晚")
    line = page.locator('#subsidy-lines tbody tr[data-line="2"]')
    expect(line).to_contain_text("运营补贴")
    expect(line.locator('li[data-code="absent_nights"]')).to_contain_text(f"{EMPTY_NIGHT} 日")
    nights = line.locator(".nights")
    kinds = [c.get_attribute("data-kind") for c in nights.locator(".night").all()]
    expected = ["present"] * days
    expected[EMPTY_NIGHT - 1] = "absent"
    for night in SILENT_NIGHTS:
        expected[night - 1] = "no_evidence"
    assert kinds == expected
    expect(nights).to_have_attribute("aria-label", f"在床 {days - 3} 晚，无人 1 晚，无数据 2 晚")
    expect(nights.locator(f'.night[data-day="{EMPTY_NIGHT}"]')).to_have_attribute("title", f"{EMPTY_NIGHT}日：无人")
    expect(page.locator("#nights-legend")).to_contain_text("无数据")


def _download(page: Page, button: Locator) -> tuple[str, bytes]:
    with page.expect_download() as started:
        button.click()
    download = started.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def _files_of_the_home(page: Page) -> None:
    """The home's claim lines as a file in the page's language, and the inspection as a PDF: the API's files,
    fetched with the session (a plain link could not carry it)."""
    name, data = _download(page, page.locator('#subsidy-files button[data-format="csv"]'))
    assert name.endswith(".csv"), name
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == headers(LINE_COLUMNS, "zh-CN")  # the page is in Chinese: so is the file
    line, bed_line = rows[1:]
    assert line[LINE_COLUMNS.index("person_code")] == STRANGER
    assert line[LINE_COLUMNS.index("verdict")] == "不予通过" and line[LINE_COLUMNS.index("programme")] == "高龄津贴"
    assert f"人员编码 {STRANGER} 未在本机构登记" in line[LINE_COLUMNS.index("reasons")]
    assert bed_line[LINE_COLUMNS.index("nights_absent")] == str(EMPTY_NIGHT)  # the same nights as the page's
    assert bed_line[LINE_COLUMNS.index("nights_no_evidence")] == ",".join(map(str, SILENT_NIGHTS))
    name, data = _download(page, page.locator("#risk-pdf"))
    assert name.startswith("risk-") and name.endswith(".pdf") and data.startswith(b"%PDF-"), name
    expect(page.locator("#subsidy-files-error")).to_be_hidden()
    expect(page.locator("#risk-pdf-error")).to_be_hidden()


def test_a_regulator_sees_no_names_of_residents_and_no_board(browsers: Browsers, web: World) -> None:
    token = web.token(web.users.regulator)
    reply = httpx.get(
        f"{web.base}/api/v1/institutions/{web.home.institution_id}/board", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200  # bed states, no names
    assert all(b["resident_id"] is None or "name" not in b for b in reply.json()["beds"])
    page = browsers.open(web.users.regulator).page("/board")
    page.wait_for_url(f"{web.base}/regulator")  # the board is for the home's staff: sent to their own view


def test_login_lands_on_the_page_of_the_role_and_logout_ends_the_session(browsers: Browsers, web: World) -> None:
    visit = browsers.open(None, viewport=(390, 844), is_mobile=True)
    page = visit.page("/board")
    page.wait_for_url(f"{web.base}/login?next=%2Fboard")
    page.get_by_label("用户名").fill(web.users.nurse)
    page.get_by_label("密码").fill("not-the-password")
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")
    assert "null" not in page.locator("header").inner_text()
    shot(page, "login-phone")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_label("密码").press("Enter")
    page.wait_for_url(f"{web.base}/board")
    ready(page)
    token = page.evaluate("JSON.parse(localStorage.getItem('eldercare.session')).token")
    me = httpx.get(f"{web.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(f"{web.base}/login")
    assert page.evaluate("localStorage.getItem('eldercare.session')") is None
    gone = httpx.get(f"{web.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401

    family = browsers.open(None).page("/login")
    family.get_by_label("用户名").fill(web.users.family_a)
    family.get_by_label("密码").fill(PASSWORD)
    family.get_by_role("button", name="登录").click()
    family.wait_for_url(f"{web.base}/family")
    family.goto(f"{web.base}/board")
    family.wait_for_url(f"{web.base}/family")  # a family user has no board


def test_a_user_quicker_than_the_login_page_is_logged_in_and_the_password_stays_out_of_the_address(
    browsers: Browsers, web: World
) -> None:
    """The form is sent before the page has its texts (a slow network, or a browser's autofill and a quick
    Enter). The browser must not send the form itself, to the login page's address with the password in it;
    the page logs the user in once it is ready."""
    visit = browsers.open(None)
    held = hold_texts(visit)
    page = visit.page("/login")
    page.get_by_label("用户名").fill(web.users.nurse2)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_label("密码").press("Enter")
    release(page, held)
    page.wait_for_url(f"{web.base}/board")
    ready(page)
    assert [url for url in visit.navigations if "?" in url] == [], visit.navigations
    assert not any(PASSWORD in url for url in visit.navigations)


def test_no_page_lets_the_browser_send_a_form_before_its_script_is_ready(browsers: Browsers, web: World) -> None:
    """The regulator's period form is on screen while the page loads. Sent then, the browser would load the page
    again with the form's fields in the address (on the login page: the password); nothing happens instead,
    and the page goes on to load."""
    visit = browsers.open(web.users.regulator)
    held = hold_texts(visit)
    page = visit.page("/regulator")
    page.get_by_label("行政区划代码").fill(REGION)
    page.get_by_role("button", name="查询").click()
    release(page, held)
    ready(page, 30000)
    assert [url for url in visit.navigations if "?" in url] == [], visit.navigations
    assert page.url == f"{web.base}/regulator"


def test_the_login_page_never_sends_a_user_elsewhere(browsers: Browsers, web: World) -> None:
    page = browsers.open(None).page("/login?next=//example.org/x")
    page.get_by_label("用户名").fill(web.users.nurse2)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{web.base}/board")
