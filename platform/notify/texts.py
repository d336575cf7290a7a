"""What a person reads: short texts in Chinese or English, one line per alarm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from eldercare.platform.notify.channels import Message

_KIND = {
    "zh-CN": {
        "button": "紧急呼叫",
        "fall": "跌倒",
        "sos": "手环求救",
        "bed_exit": "夜间离床未归",
        "vitals": "生命体征异常",
        "wander": "走失预警",
        "smoke": "烟雾报警",
        "gas": "燃气报警",
        "water": "漏水报警",
        "gateway_offline": "网关离线",
        "no_presence": "长时间无人在床",
    },
    "en": {
        "button": "emergency call",
        "fall": "fall",
        "sos": "wristband SOS",
        "bed_exit": "out of bed at night",
        "vitals": "vital signs out of range",
        "wander": "wandering alert",
        "smoke": "smoke alarm",
        "gas": "gas alarm",
        "water": "water leak",
        "gateway_offline": "gateway offline",
        "no_presence": "no one in bed for hours",
    },
}
_EVENT = {
    "zh-CN": {"raised": "报警", "escalated": "升级", "resolved": "已处理"},
    "en": {"raised": "alarm", "escalated": "escalated", "resolved": "handled"},
}
_PRIORITY = {
    "zh-CN": {"emergency": "紧急", "urgent": "重要", "routine": "一般", "technical": "设备"},
    "en": {"emergency": "EMERGENCY", "urgent": "urgent", "routine": "routine", "technical": "technical"},
}
_TZ = ZoneInfo("Asia/Shanghai")


def compose(*, delivery_id: str, language: str, items: Sequence[tuple[str, Sequence[Any]]]) -> Message:
    """``items`` are (event, alarm row: id, kind, priority, state, occurred_at, outcome, home, bed label, ...)."""
    lang = language if language in _KIND else "zh-CN"
    lines: list[str] = []
    alarms: list[dict[str, Any]] = []
    for event, row in items:
        alarm_id, kind, priority, state, occurred_at, outcome, home, bed_label, bed_code, person_code = row[:10]
        when = occurred_at.astimezone(_TZ).strftime("%m-%d %H:%M:%S")
        what = _KIND[lang].get(kind, kind)
        where = f"{home} {bed_label or ''}".strip()
        tail = f" ({outcome})" if event == "resolved" and outcome else ""
        lines.append(f"[{_PRIORITY[lang].get(priority, priority)}] {when} {where} {what} {_EVENT[lang][event]}{tail}")
        alarms.append(
            {
                "alarm_id": alarm_id,
                "event": event,
                "kind": kind,
                "priority": priority,
                "state": state,
                "occurred_at": occurred_at.isoformat(),
                "institution": home,
                "bed_code": bed_code,
                "person_code": person_code,
                "outcome": outcome,
            }
        )
    first_event, first = items[0]
    first_kind = _KIND[lang].get(first[1], first[1])
    more = len(items) - 1
    if lang == "zh-CN":
        subject = f"【智慧养老】{first[6]} {first_kind}{_EVENT[lang][first_event]}" + (
            f" 等{more + 1}条" if more else ""
        )
    else:
        subject = f"[eldercare] {first[6]}: {first_kind} {_EVENT[lang][first_event]}" + (f" (+{more})" if more else "")
    return Message(delivery_id=delivery_id, subject=subject, text="\n".join(lines), payload={"alarms": alarms})
