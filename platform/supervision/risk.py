"""The one-press risk inspection (一键巡检) of a home, now, mapped to the nine risks of GB 38600-2019.

The data speak to falls (跌倒), falls from bed (坠床), wandering off (走失) and, in part, pressure sores
(压疮: whether bed-bound residents are watched; nothing here sees the skin). They cannot speak to
choking (噎食), wrong food or medicine (食品药品误食), scalds (烫伤), harm to self or others (他伤和自伤)
or activity accidents (活动意外): the report says so for each instead of showing a reassuring zero.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from eldercare.platform.api.errors import NotFound
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.supervision import risk_data as data

Level = Literal["ok", "warning", "danger", "no_data"]
Coverage = Literal["covered", "partial", "not_covered"]


class Section(BaseModel):
    code: str
    title: str
    title_zh: str
    count: int
    items: list[dict[str, Any]]


class Risk(BaseModel):
    code: str
    name: str
    name_zh: str
    coverage: Coverage
    level: Level
    findings: list[str]
    findings_zh: list[str] = Field(description="the same findings in Chinese, one for one")


class AlarmOutcomes(BaseModel):
    """How the home's alarms for people raised over the last days ended: how many were closed with an outcome code
    and how many of those were false alarms (closed as false_alarm, accidental_press or device_issue; migration
    0015), as the supervision figures count them. Said in English and in Chinese, "not known" when none has a code."""

    start: date = Field(description="first local day (Asia/Shanghai)")
    end: date = Field(description="last local day, today")
    closed_with_code: int
    false_alarms: int
    false_alarm_rate: float | None = Field(description="false_alarms / closed_with_code; null: not known")
    said: str
    said_zh: str


class RiskReport(BaseModel):
    institution_id: int
    institution_code: str
    institution_name: str
    generated_at: datetime
    devices: int
    residents: int
    sections: list[Section]
    risks: list[Risk]
    alarm_outcomes: AlarmOutcomes
    named: list[str] = Field(default_factory=list, exclude=True)  # person codes the report names, for the audit


NOT_COVERED: dict[str, tuple[str, str, str, str]] = {
    "choking": ("choking", "噎食", "no meal or swallowing data is collected", "不采集进食或吞咽数据"),
    "food_medicine": ("wrong food or medicine", "食品药品误食", "no medication or meal records are kept here",
                      "这里不记录用药或膳食"),
    "scalds": ("scalds", "烫伤", "no water-temperature or bathing data is collected", "不采集水温或洗浴数据"),
    "harm": ("harm to self or others", "他伤和自伤", "no behaviour data; emergency calls appear under open alarms",
             "没有行为数据；紧急呼叫见未关闭的报警"),
    "activity_accidents": ("activity accidents", "活动意外", "no activity records are kept here", "这里不记录活动"),
}  # fmt: skip


OUTCOME_DAYS = 30  # the last 30 local days, today included: the regulator's page's default period
LOCAL = ZoneInfo("Asia/Shanghai")


def _outcomes(row: dict[str, Any], start: date, end: date) -> AlarmOutcomes:
    coded, false = int(row["coded"]), int(row["false_alarms"])
    rate = false / coded if coded else None
    if rate is None:
        said = "false-alarm rate not known: no alarm for a resident was closed with an outcome code"
        said_zh = "误报率不详：没有一条为老人触发的报警带处理结果代码关闭"
    else:
        said = f"{false} false alarm(s) among {coded} alarm(s) closed with an outcome code: {rate:.1%}"
        said_zh = f"带处理结果代码关闭的报警 {coded} 条，其中误报 {false} 条，误报率 {rate:.1%}"
    return AlarmOutcomes(start=start, end=end, closed_with_code=coded, false_alarms=false, false_alarm_rate=rate,
                         said=said, said_zh=said_zh)  # fmt: skip


def _section(code: str, title: str, title_zh: str, items: list[dict[str, Any]]) -> Section:
    return Section(code=code, title=title, title_zh=title_zh, count=len(items), items=items)


def _level(danger: bool, warning: bool) -> Level:
    return "danger" if danger else "warning" if warning else "ok"


async def inspect(conn: AsyncConn, *, institution_id: int) -> RiskReport:
    """The home's id must already be checked against the caller's scope."""
    today = datetime.now(LOCAL).date()
    start = today - timedelta(days=OUTCOME_DAYS - 1)
    found = await data.read(conn, institution_id=institution_id, since=start, until=today)
    if not found["home"]:
        raise NotFound("institution")
    home = found["home"][0]
    devices, residents, alarms = found["devices"], found["residents"], found["alarms"]
    recent = {r["kind"]: r["n"] for r in found["recent"]}
    by_bed: dict[int, list[dict[str, Any]]] = {}
    for d in devices:
        if d["bed_id"] is not None:
            by_bed.setdefault(d["bed_id"], []).append(d)
    by_resident: dict[int, list[dict[str, Any]]] = {}
    for d in devices:
        if d["resident_id"] is not None:
            by_resident.setdefault(d["resident_id"], []).append(d)

    def watched(r: dict[str, Any], kinds: tuple[str, ...]) -> bool:
        near = by_bed.get(r["bed_id"], []) + by_resident.get(r["id"], [])
        return any(d["kind"] in kinds and data.working(d) for d in near)

    offline = [_device(d) for d in devices if data.offline(d)]
    low = [_device(d) for d in devices if d["battery"] is not None and d["battery"] < data.LOW_BATTERY]
    present = [r for r in residents if not r["in_hospital"]]
    unwatched_beds = [_resident(r) for r in present if not watched(r, data.BED_WATCHERS)]
    no_contact = [_resident(r) for r in residents if not r["has_emergency_contact"]]
    open_alarms = [_alarm(a) for a in alarms]
    overdue = [_alarm(a) for a in alarms if a["overdue"]]
    gateways = [
        {"gateway": g["gateway_id"], "name": g["name"], "last_seen_at": g["last_seen_at"], "status": g["last_status"]}
        for g in found["gateways"]
        if g["offline"]
    ]
    sections = [
        _section("devices_offline", "devices offline", "设备离线", offline),
        _section("gateways_offline", "gateways offline", "网关离线", gateways),
        _section("low_batteries", f"batteries below {data.LOW_BATTERY:.0f}%", "电量低", low),
        _section("beds_unwatched", "occupied beds without a working sensor", "在住床位无有效传感器", unwatched_beds),
        _section("no_emergency_contact", "residents without an emergency contact", "无紧急联系人", no_contact),
        _section("open_alarms", "open alarms", "未关闭告警", open_alarms),
        _section("overdue_alarms", "overdue alarms", "超时告警", overdue),
    ]
    named: set[str] = {str(i["person_code"]) for s in sections for i in s.items if i.get("person_code")}
    risks = _risks(present, alarms, recent, watched, named)
    return RiskReport(
        institution_id=home["id"],
        institution_code=home["code"],
        institution_name=home["name"],
        generated_at=datetime.now(UTC),
        devices=len(devices),
        residents=len(residents),
        sections=sections,
        risks=risks,
        alarm_outcomes=_outcomes(found["outcomes"][0], start, today),
        named=sorted(named),
    )


Row = dict[str, Any]


def _risks(
    present: list[Row],
    alarms: list[Row],
    recent: dict[str, int],
    watched: Callable[[Row, tuple[str, ...]], bool],
    named: set[str],
) -> list[Risk]:
    """The nine risks; adds the residents their findings name to ``named``."""
    open_kinds: dict[str, int] = {}
    for a in alarms:
        open_kinds[a["kind"]] = open_kinds.get(a["kind"], 0) + 1
    bedbound = [r for r in present if r["capability"] == "disabled"]
    bedbound_unwatched = [r for r in bedbound if not watched(r, ("bed_sensor",))]
    high_fall = [r for r in present if r["fall_risk"] == "high"]
    high_fall_bed_unwatched = [r for r in high_fall if not watched(r, ("bed_sensor",))]
    high_fall_unwatched = [r for r in high_fall if not watched(r, ("button", "fall_radar", "wearable", "wristband"))]
    wanderers = [r for r in present if r["wander_risk"]]
    wanderers_unwatched = [r for r in wanderers if not watched(r, ("wristband", "wearable"))]

    def beds(rs: list[dict[str, Any]], separator: str = ", ") -> str:
        named.update(str(r["person_code"]) for r in rs)
        return separator.join(f"{r['bed']} ({r['person_code']})" for r in rs)

    def risk(code: str, names: tuple[str, str], coverage: Coverage, level: Level, said: list[tuple[str, str]]) -> Risk:
        return Risk(code=code, name=names[0], name_zh=names[1], coverage=coverage, level=level,
                    findings=[en for en, _ in said], findings_zh=[zh for _, zh in said])  # fmt: skip

    bed_exits, falls, wanders = open_kinds.get("bed_exit", 0), open_kinds.get("fall", 0), open_kinds.get("wander", 0)
    bed_falls_level = _level(bed_exits > 0, bool(high_fall_bed_unwatched))
    falls_level = _level(falls > 0, bool(high_fall_unwatched) or recent.get("fall", 0) > 0)
    risks = [
        risk("pressure_sores", ("pressure sores", "压疮"), "partial", _level(False, bool(bedbound_unwatched)),
             [(f"{len(bedbound)} disabled (bed-bound) resident(s); the data show whether they are watched, "
               "not the state of their skin",
               f"失能（卧床）老人 {len(bedbound)} 位；数据只显示是否有人看护，不显示皮肤状况")]
             + ([(f"bed-bound without a working bed sensor: {beds(bedbound_unwatched)}",
                  f"卧床但没有有效的床位传感器：{beds(bedbound_unwatched, '、')}")] if bedbound_unwatched else [])),
        risk("falls_from_bed", ("falls from bed", "坠床"), "covered", bed_falls_level,
             [(f"{bed_exits} open bed-exit alarm(s); {recent.get('bed_exit', 0)} in 24 h",
               f"未关闭的离床报警 {bed_exits} 条；24 小时内 {recent.get('bed_exit', 0)} 条")]
             + ([(f"high fall risk without a working bed sensor: {beds(high_fall_bed_unwatched)}",
                  f"跌倒高风险但没有有效的床位传感器：{beds(high_fall_bed_unwatched, '、')}")]
                if high_fall_bed_unwatched else [])),
        risk("falls", ("falls", "跌倒"), "covered", falls_level,
             [(f"{falls} open fall alarm(s); {recent.get('fall', 0)} in 24 h; "
               f"{len(high_fall)} resident(s) at high fall risk",
               f"未关闭的跌倒报警 {falls} 条；24 小时内 {recent.get('fall', 0)} 条；"
               f"跌倒高风险老人 {len(high_fall)} 位")]
             + ([(f"high fall risk without a working button, radar or wearable: {beds(high_fall_unwatched)}",
                  f"跌倒高风险但没有有效的呼叫按钮、雷达或穿戴设备：{beds(high_fall_unwatched, '、')}")]
                if high_fall_unwatched else [])),
        risk("wandering", ("wandering off", "走失"), "covered", _level(wanders > 0, bool(wanderers_unwatched)),
             [(f"{wanders} open wandering alarm(s); {len(wanderers)} resident(s) at risk of wandering",
               f"未关闭的走失报警 {wanders} 条；有走失风险的老人 {len(wanderers)} 位")]
             + ([(f"at risk without a working wristband: {beds(wanderers_unwatched)}",
                  f"有走失风险但没有有效的手环：{beds(wanderers_unwatched, '、')}")] if wanderers_unwatched else [])),
    ]  # fmt: skip
    for code, (name, name_zh, why, why_zh) in NOT_COVERED.items():
        risks.append(Risk(code=code, name=name, name_zh=name_zh, coverage="not_covered", level="no_data",
                          findings=[f"the platform's data cannot speak to this risk: {why}"],
                          findings_zh=[f"平台的数据无法反映此风险：{why_zh}"]))  # fmt: skip
    order = ["choking", "food_medicine", "pressure_sores", "scalds", "falls_from_bed", "falls", "wandering", "harm",
             "activity_accidents"]  # fmt: skip
    return sorted(risks, key=lambda r: order.index(r.code))


def _device(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": d["code"],
        "kind": d["kind"],
        "bed": d["bed"],
        "last_seen": d["last_seen"],
        "battery": None if d["battery"] is None else round(d["battery"], 1),
    }


def _resident(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("person_code", "bed", "capability", "fall_risk")
    return {k: r[k] for k in keys}


def _alarm(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "alarm": a["id"],
        "kind": a["kind"],
        "priority": a["priority"],
        "state": a["state"],
        "bed": a["bed"],
        "raised_at": a["raised_at"],
        "minutes_open": round(a["age_s"] / 60, 1),
    }
