"""One-press risk inspection (一键巡检) of home A, now: findings, the nine risks, the page and the PDF."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import psycopg
import pytest
from tests.registry.support import Client, Database
from tests.supervision.world import World

from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading
from eldercare.platform.supervision import pages, report_pdf, risk

NINE = ["choking", "food_medicine", "pressure_sores", "scalds", "falls_from_bed", "falls", "wandering", "harm",
        "activity_accidents"]  # fmt: skip


@pytest.fixture(scope="module")
def now_state(sup_db: Database, world: World, vault: Vault) -> World:
    """Home A now: sensors 0-7 reporting, 8-9 silent; a low battery; a faulty sensor; a fresh fall alarm."""
    now = datetime.now(UTC)
    a = world.a
    sealer = vault.vitals_sealer()
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        for n in range(8):
            at, sensor = now - timedelta(seconds=20), a.devices[f"BS-A{n}"]
            conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence, vitals_enc) VALUES (%s, %s, true, %s)",
                (at, sensor, seal_reading(sealer, at, sensor, 70, None)),
            )
        conn.execute(
            "INSERT INTO device_readings (time, device_id, metric, value) VALUES (%s, %s, 'battery', 15),"
            " (%s, %s, 'battery', 80)",
            (now - timedelta(minutes=2), a.devices["BT-A0"], now - timedelta(hours=2), a.devices["BT-A1"]),
        )
        for kind, priority, device, bed in (
            ("device_sensor_error", "technical", a.devices["BS-A1"], a.beds[1]),
            ("fall", "emergency", None, a.beds[1]),
        ):
            conn.execute(
                "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, occurred_at, raised_at,"
                " last_event_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (a.id, kind, priority, device, bed, now - timedelta(minutes=1), now - timedelta(minutes=1), now),
            )
        conn.execute(
            "INSERT INTO gateways (institution_id, gateway_id, last_seen_at, last_status) VALUES (%s, 'GW-SUP-A', %s,"
            " 'heartbeat')",
            (a.id, now - timedelta(minutes=10)),
        )
    return world


def test_findings_and_the_nine_risks(as_user: Callable[[str], Client], now_state: World) -> None:
    a = now_state.a
    report = as_user("sup-head-a").ok("GET", f"/api/v1/supervision/institutions/{a.id}/risk-inspection")
    sections = {s["code"]: s for s in report["sections"]}
    assert {i["device"] for i in sections["devices_offline"]["items"]} == {"BS-A8", "BS-A9", "BT-A1"}
    assert [i["device"] for i in sections["low_batteries"]["items"]] == ["BT-A0"]
    assert [i["bed"] for i in sections["beds_unwatched"]["items"]] == ["101-2"]
    assert sections["no_emergency_contact"]["count"] == 2
    assert {i["kind"] for i in sections["open_alarms"]["items"]} == {"sos", "fall", "device_sensor_error"}
    assert [i["kind"] for i in sections["overdue_alarms"]["items"]] == ["sos"]
    assert [i["gateway"] for i in sections["gateways_offline"]["items"]] == ["GW-SUP-A"]
    risks = {r["code"]: r for r in report["risks"]}
    assert [r["code"] for r in report["risks"]] == NINE
    assert risks["falls"]["level"] == "danger"
    assert risks["falls_from_bed"]["level"] == "warning" and "101-2" in risks["falls_from_bed"]["findings"][1]
    assert risks["wandering"]["level"] == "warning"
    assert risks["pressure_sores"] == {**risks["pressure_sores"], "level": "ok", "coverage": "partial"}
    for code in ("choking", "food_medicine", "scalds", "harm", "activity_accidents"):
        assert (risks[code]["coverage"], risks[code]["level"]) == ("not_covered", "no_data")
    assert (report["devices"], report["residents"]) == (12, 8)
    # every finding is said in Chinese too, one for one, naming the same beds
    for r in report["risks"]:
        assert len(r["findings_zh"]) == len(r["findings"]) >= 1, r
        assert all(re.search(r"[\u4e00-\u9fff]", f) for f in r["findings_zh"]), r
    assert "101-2" in risks["falls_from_bed"]["findings_zh"][1]
    assert risks["falls_from_bed"]["findings_zh"][0].startswith("未关闭的离床报警")


def test_every_inspection_read_is_audited(as_user: Callable[[str], Client], now_state: World, sup_db: Database) -> None:
    """The inspection names residents with their capability and fall risk: JSON, page and PDF are each logged,
    with the person codes the report names (in its lists and in its findings)."""
    a = now_state.a
    base = f"/api/v1/supervision/institutions/{a.id}/risk-inspection"

    def reads() -> list[dict[str, object]]:
        with psycopg.connect(sup_db.url) as conn:
            rows = conn.execute(
                "SELECT detail FROM audit_log WHERE action = 'read_health' AND object_type = 'risk_inspection'"
                " AND institution_id = %s ORDER BY seq",
                (a.id,),
            ).fetchall()
        return [r[0] for r in rows]

    before = len(reads())
    report = as_user("sup-xiling").ok("GET", base)
    for suffix in (".html", ".pdf"):
        assert as_user("sup-xiling").get(base + suffix).status_code == 200
    logged = reads()[before:]
    assert [r["as"] for r in logged] == ["json", "html", "pdf"]
    listed = {i["person_code"] for s in report["sections"] for i in s["items"] if i.get("person_code")}
    in_findings = {c for r in report["risks"] for f in r["findings"] for c in re.findall(r"\((P[A-Z0-9]{10})\)", f)}
    assert in_findings - listed  # the findings name someone no list does: they count too
    for entry in logged:
        assert set(cast(list[str], entry["person_codes"])) == listed | in_findings
        assert entry["residents_read"] == report["residents"]
    assert as_user("sup-head-d").get(base).status_code == 404
    assert len(reads()) == before + 3  # a refused read reads nothing


def test_scope_of_the_risk_inspection(as_user: Callable[[str], Client], now_state: World) -> None:
    path = f"/api/v1/supervision/institutions/{now_state.a.id}/risk-inspection"
    assert as_user("sup-nurse-a").get(path).status_code == 200
    assert as_user("sup-xiling").get(path).status_code == 200
    assert as_user("sup-head-d").get(path).status_code == 404
    assert as_user("sup-wuhan").get(path).status_code == 404
    assert as_user("sup-family").get(path).status_code == 403
    assert as_user("sup-head-a").get("/api/v1/supervision/institutions/0/risk-inspection").status_code == 422


def test_page_and_pdf(as_user: Callable[[str], Client], now_state: World, tmp_path: Path) -> None:
    base = f"/api/v1/supervision/institutions/{now_state.a.id}/risk-inspection"
    page = as_user("sup-head-a").get(base + ".html")
    assert page.status_code == 200 and "跌倒" in page.text and "西陵福寿院" in page.text and "BT-A1" in page.text
    assert "未关闭的跌倒报警" in page.text and "open fall alarm(s)" in page.text
    reply = as_user("sup-head-a").get(base + ".pdf")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/pdf"
    assert reply.content.startswith(b"%PDF-")
    pdf = tmp_path / "risk.pdf"
    pdf.write_bytes(reply.content)
    for tool in ("pdftotext", "pdffonts"):
        assert shutil.which(tool), f"{tool} (Debian package poppler-utils) is needed to read the PDF back"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    expected_texts = ("一键巡检报告", "西陵福寿院", "跌倒", "坠床", "噎食", "数据无法反映", "BT-A1", "设备离线",
                      "平台的数据无法反映此风险", "未关闭的跌倒报警", "open fall alarm(s)")  # fmt: skip
    for expected in expected_texts:
        assert expected in text, expected
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "NotoSansCJKSC" in fonts and " yes yes " in fonts  # embedded, subset


def test_pdf_with_the_cut_font(
    now_state: World, tmp_path: Path, sup_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-off cut of the CJK face (GB 2312 hanzi) renders the report; a character it lacks sends the
    report to the full face."""
    monkeypatch.setenv("ELDERCARE_CACHE_DIR", str(tmp_path / "cache"))
    source = report_pdf.font_path()
    target = report_pdf._cut_path(source)
    assert target.parent == tmp_path / "cache"
    report_pdf._cut(source, target)
    assert target.is_file() and target.stat().st_size < source.stat().st_size / 3
    covered = report_pdf._covered(target)
    assert ord("跌") in covered and ord("\U00020000") not in covered  # GB 2312 hanzi; one of Extension B
    assert report_pdf._face(source, "一键巡检 跌倒") == (target, 0)
    assert report_pdf._face(source, "王\U00020000") == (source, report_pdf.SIMPLIFIED_CHINESE_FACE)

    async def inspect() -> risk.RiskReport:
        async with await psycopg.AsyncConnection.connect(sup_db.url, autocommit=True) as conn:
            return await risk.inspect(conn, institution_id=now_state.a.id)

    report = asyncio.run(inspect())
    pdf = tmp_path / "cut.pdf"
    pdf.write_bytes(report_pdf.render(report))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "一键巡检报告" in text and "西陵福寿院" in text and "BT-A1" in text
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "NotoSansCJKSC" in fonts
    # drawn with a small face of the report's own characters, cut once and then reused
    small = list((tmp_path / "cache").glob("noto-sans-sc-report-*.otf"))
    assert len(small) == 1 and small[0].stat().st_size < 200_000
    covered = report_pdf._covered(small[0])
    assert {ord(c) for c in "一键巡检报告西陵福寿院跌倒数据无法反映…"} <= covered and ord("龘") not in covered
    made = small[0].stat().st_mtime_ns
    report_pdf.render(report)
    assert list((tmp_path / "cache").glob("noto-sans-sc-report-*.otf")) == small
    assert small[0].stat().st_mtime_ns == made


def test_pdf_without_a_writable_cache_uses_the_full_face(
    now_state: World, tmp_path: Path, sup_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("ELDERCARE_CACHE_DIR", str(blocked / "cache"))

    async def inspect() -> risk.RiskReport:
        async with await psycopg.AsyncConnection.connect(sup_db.url, autocommit=True) as conn:
            return await risk.inspect(conn, institution_id=now_state.a.id)

    pdf = tmp_path / "full.pdf"
    pdf.write_bytes(report_pdf.render(asyncio.run(inspect())))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "一键巡检报告" in text and "西陵福寿院" in text


def _pdf_text(data: bytes, tmp_path: Path, name: str) -> str:
    pdf = tmp_path / name
    pdf.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_false_alarms_of_the_last_30_days_or_that_they_are_not_known(
    as_user: Callable[[str], Client], now_state: World, sup_db: Database, tmp_path: Path
) -> None:
    """How the home's alarms for people of the last 30 local days ended (migration 0015): none of home A's has an
    outcome code, so its false alarms are not known (not 0%); closed with codes, they are counted as the figures
    count them (a technical alarm and one without a code left out)."""
    a = now_state.a
    base = f"/api/v1/supervision/institutions/{a.id}/risk-inspection"
    unknown = as_user("sup-xiling").ok("GET", base)["alarm_outcomes"]
    assert (unknown["closed_with_code"], unknown["false_alarms"], unknown["false_alarm_rate"]) == (0, 0, None)
    assert "not known" in unknown["said"] and "不详" in unknown["said_zh"]
    page = as_user("sup-xiling").get(base + ".html").text
    assert "报警处理结果 / alarm outcomes" in page and "误报率不详" in page and "false-alarm rate not known" in page
    text = _pdf_text(as_user("sup-xiling").get(base + ".pdf").content, tmp_path, "unknown.pdf")
    assert "报警处理结果" in text and "误报率不详" in text and "rate not known" in text

    async def coded() -> risk.RiskReport:
        async with await psycopg.AsyncConnection.connect(sup_db.url) as conn:  # rolled back: the world stays
            raised = datetime.now(UTC) - timedelta(days=2)
            ended = [("false_alarm", "urgent"), ("accidental_press", "emergency"), ("real_event", "emergency"),
                     ("device_issue", "technical"), (None, "emergency")]  # fmt: skip
            for code, priority in ended:
                await conn.execute(
                    "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at,"
                    " acknowledged_at, closed_at, last_event_at, outcome_code)"
                    " VALUES (%s, 'button', %s, 'resolved', %s, %s, %s, %s, %s, %s)",
                    (a.id, priority, raised, raised, raised + timedelta(seconds=20), raised + timedelta(minutes=5),
                     raised, code),
                )  # fmt: skip
            found = await risk.inspect(conn, institution_id=a.id)
            await conn.rollback()
            return found

    report = asyncio.run(coded())
    o = report.alarm_outcomes
    assert (o.closed_with_code, o.false_alarms) == (3, 2) and o.false_alarm_rate == pytest.approx(2 / 3)
    assert (o.end - o.start).days == 29
    assert o.said_zh == "带处理结果代码关闭的报警 3 条，其中误报 2 条，误报率 66.7%"
    assert o.said == "2 false alarm(s) among 3 alarm(s) closed with an outcome code: 66.7%"
    assert o.said_zh in pages.risk_page(report, "risk-inspection.pdf")
    text = _pdf_text(report_pdf.render(report), tmp_path, "coded.pdf")
    assert "误报 2 条" in text and "66.7%" in text and f"{o.start} ~ {o.end}" in text
