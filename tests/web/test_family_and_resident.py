"""The family page and the resident's page in a real browser: a family member sees their elder's state in
plain words, each alarm with how it was handled, and sets their notifications; they cannot open another
resident's page and see nothing of them; staff see the vital-sign charts from TimescaleDB."""

from __future__ import annotations

import httpx
import psycopg
from playwright.sync_api import Response, expect
from tests.web.conftest import Browsers, ready, shot
from tests.web.support import World

from eldercare.platform.crypto import Vault

NOT_FOUND = "未找到，或您无权查看。"


def test_the_family_page_tells_the_state_alarms_and_settings(browsers: Browsers, web: World) -> None:
    page = browsers.open(web.users.family_a, viewport=(390, 844), is_mobile=True, has_touch=True).page("/family")
    ready(page)
    mine = web.beds[0]
    expect(page.locator("#now-title")).to_contain_text(mine.name)
    expect(page.locator("#now-state")).to_have_text(f"{mine.name}正在床上休息。")
    expect(page.locator("#now-seen")).to_contain_text("床垫最后一次检测")
    story = page.locator(f'#alarms li[data-alarm-id="{web.past_alarm_id}"]')
    expect(story).to_contain_text("一键呼叫")
    expect(story).to_contain_text("护理员收到报警")
    expect(story).to_contain_text("40 秒后")
    expect(story).to_contain_text("处理完毕：误按")

    # Notification settings: only falls and calls, quiet hours; a channel added, a bad one refused.
    page.get_by_label("只通知下面选中的").check()
    for kind in (
        "夜间离床未归",
        "心率或呼吸异常",
        "走失风险",
        "长时间无人在床",
        "SOS 求助",
        "烟雾报警",
        "燃气泄漏",
        "漏水",
    ):
        page.get_by_label(kind).uncheck()
    page.get_by_label("开启免打扰").check()
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#prefs-result")).to_have_text("已保存")
    prefs = web.api(web.users.family_a, "GET", "/api/v1/me/notifications/prefs").json()
    assert sorted(prefs["kinds"]) == ["button", "fall"]
    assert prefs["quiet_from"] == "22:00:00" and prefs["quiet_to"] == "07:00:00"

    page.locator("#channel-address").fill("12345")
    page.get_by_role("button", name="添加").click()
    expect(page.locator("#channel-result")).to_contain_text("格式不对")
    page.locator("#channel-address").fill("13812345678")
    page.get_by_role("button", name="添加").click()
    expect(page.locator("#channels li")).to_have_count(1)
    expect(page.locator("#channels")).to_contain_text("138****5678")
    assert "13812345678" not in page.content()
    shot(page, "family-phone")
    page.reload()
    ready(page)
    expect(page.get_by_label("只通知下面选中的")).to_be_checked()
    expect(page.get_by_label("跌倒")).to_be_checked()
    expect(page.get_by_label("走失风险")).not_to_be_checked()


def test_the_family_page_offers_only_the_channels_the_platform_sends(
    browsers: Browsers, web: World, vault: Vault
) -> None:
    """This platform has no mail server: e-mail cannot be chosen, and an e-mail channel from before (when it had
    one) is marked as not sent, with the warning that alarms would reach nobody."""
    with psycopg.connect(web.db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc, position)"
            " SELECT id, 'email', %s, 1 FROM users WHERE username = %s",
            (vault.encrypt("old@example.cn", column="notification_channels.address"), web.users.family_b),
        )
    page = browsers.open(web.users.family_b).page("/family")
    ready(page)
    kinds = page.locator("#channel-kind option")
    expect(kinds).to_have_count(4)
    assert "email" not in [kinds.nth(i).get_attribute("value") for i in range(4)]
    channel = page.locator("#channels li")
    expect(channel).to_have_count(1)
    expect(channel).to_contain_text("o***@example.cn")
    expect(channel).to_contain_text("本平台目前不发送这种通知")
    expect(page.locator("#channels-empty")).to_be_visible()


def test_a_family_user_cannot_open_another_residents_page(browsers: Browsers, web: World) -> None:
    other = web.beds[1]  # the same home, another family's elder
    visit = browsers.open(web.users.family_a)
    answers: list[Response] = []
    page = visit.page("/family")
    ready(page)
    page.on("response", lambda r: answers.append(r))  # noqa: PLW0108 - Playwright refuses a bound builtin

    def no_trace(path: str) -> None:
        """Open ``path``; it must say "not found", show no content, and nothing it received names the other."""
        answers.clear()
        page.goto(f"{web.base}{path}")
        expect(page.locator("#page-error")).to_have_text(NOT_FOUND)
        expect(page.locator("#content")).to_be_hidden()
        page.wait_for_load_state("networkidle")
        for text in (other.name, other.person_code, other.bed_code, other.label):
            assert text not in page.content()
        for r in answers:
            if "/api/" in r.url:
                body = r.text()
                assert other.name not in body and other.person_code not in body, r.url
                if f"/residents/{other.resident_id}" in r.url:
                    assert r.status == 404, (r.url, r.status)

    no_trace(f"/resident/{other.resident_id}")
    assert any(f"/residents/{other.resident_id}" in r.url for r in answers), "the page did not ask the API"
    no_trace(f"/family?resident={other.resident_id}")
    shot(page, "family-other-resident-refused")
    # The API says the same to the family user directly, for every read about that resident.
    token = web.token(web.users.family_a)
    for path in ("", "/status", "/vitals", "/alarms"):
        reply = httpx.get(
            f"{web.base}/api/v1/residents/{other.resident_id}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 404, (path, reply.text)
        assert other.name not in reply.text and other.person_code not in reply.text


def test_the_resident_page_charts_vital_signs_and_lists_alarms(browsers: Browsers, web: World) -> None:
    me = web.beds[0]
    page = browsers.open(web.users.nurse).page(f"/resident/{me.resident_id}")
    ready(page)
    expect(page.locator("#resident-name")).to_have_text(me.name)
    expect(page.locator("#resident-state")).to_contain_text("在床")
    expect(page.locator("#chart-hr canvas")).to_have_count(1)
    expect(page.locator("#chart-rr canvas")).to_have_count(1)
    expect(page.locator("#vitals-note")).to_contain_text("每 1 分钟")  # 6 h in buckets of a minute
    expect(page.locator(f'#history tr[data-alarm-id="{web.past_alarm_id}"]')).to_contain_text("误按")
    shot(page, "resident-6h")
    page.get_by_role("button", name="1 小时").click()
    expect(page.locator("#vitals-note")).to_contain_text("每个点是一次测量")
    page.get_by_role("button", name="24 小时").click()
    expect(page.locator("#vitals-note")).to_contain_text("每 5 分钟")
    expect(page.get_by_role("button", name="24 小时")).to_have_attribute("aria-pressed", "true")
    shot(page, "resident-24h")

    # The family of this resident may open the same page (and sees the same charts).
    family = browsers.open(web.users.family_a, viewport=(390, 844), is_mobile=True).page(f"/resident/{me.resident_id}")
    ready(family)
    expect(family.locator("#chart-hr canvas")).to_have_count(1)
    shot(family, "resident-family-phone")
