"""Server-rendered HTML pages: the one-press risk inspection of a home, and the public inspections page.

Plain HTML with every value escaped; no script, so a page can be printed or saved as it is.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from eldercare.platform.supervision.inspections import PublicDraw
from eldercare.platform.supervision.risk import Risk, RiskReport

LOCAL = ZoneInfo("Asia/Shanghai")
_STYLE = (
    "body{font-family:'Noto Sans CJK SC',sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;font-size:90%}h2{background:#e8f0fe;padding:.2em}"
    ".danger{color:#c62828}.warning{color:#ed6c02}.ok{color:#2e7d32}.no_data{color:#757575}code{font-size:85%}"
)


def _v(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return escape(value.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M"))
    return escape(str(value))


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "<p>无 / none</p>"
    columns = list(items[0])
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{_v(i[c])}</td>" for c in columns) + "</tr>" for i in items)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _findings(risk: Risk) -> str:
    """Each finding in Chinese, with the English under it."""
    pairs = zip(risk.findings_zh, risk.findings, strict=True)
    return "<br>".join(f"{escape(zh)}<br><small>{escape(en)}</small>" for zh, en in pairs)


def risk_page(report: RiskReport, pdf_href: str) -> str:
    risks = "".join(
        f'<tr><td class="{r.level}">{escape(r.level)}</td><td>{escape(r.name_zh)} {escape(r.name)}</td>'
        f"<td>{escape(r.coverage)}</td><td>{_findings(r)}</td></tr>"
        for r in report.risks
    )
    sections = "".join(
        f"<h2>{escape(s.title_zh)} / {escape(s.title)}: {s.count}</h2>{_table(s.items)}" for s in report.sections
    )
    o = report.alarm_outcomes
    outcomes = (
        f'<h2>报警处理结果 / alarm outcomes · {o.start} ~ {o.end}</h2><p id="alarm-outcomes">{escape(o.said_zh)}'
        f"<br><small>{escape(o.said)}</small></p>"
    )
    body = (
        f"<h1>一键巡检 · {escape(report.institution_name)}</h1>"
        f"<p><code>{escape(report.institution_code)}</code> · {_v(report.generated_at)} · "
        f'devices {report.devices} · residents {report.residents} · <a href="{escape(pdf_href)}">PDF</a></p>'
        f"<h2>GB 38600-2019 九类风险 / the nine risks</h2><table><tr><th>level</th><th>risk</th><th>coverage</th>"
        f"<th>findings</th></tr>{risks}</table>{outcomes}{sections}"
    )
    return _page(f"一键巡检 {report.institution_name}", body)


def public_page(draws: list[PublicDraw]) -> str:
    parts = [
        "<h1>双随机一公开 · random inspections</h1>",
        "<p>Every draw is kept and shown here. Re-run any draw from its seed and candidate lists with the "
        "algorithm <code>hmac-sha256-v1</code> (see the JSON at <code>/api/v1/public/inspections</code>).</p>",
    ]
    for d in draws:
        rows = [
            {
                "#": i.position + 1,
                "home": f"{i.institution_name} ({i.institution_code})",
                "team": " ".join(i.team),
                "inspected": i.inspected_at,
                "outcome": i.outcome,
                "summary": i.summary,
            }
            for i in d.inspections
        ]
        parts.append(
            f"<h2>draw {d.id} · {escape(d.region_name)} ({escape(d.region_code)}) · {_v(d.drawn_at)}</h2>"
            f"<p>{escape(d.purpose)}</p><p>seed <code>{escape(d.seed)}</code> · {d.homes_requested} of "
            f"{len(d.home_candidates)} homes (list SHA-256 <code>{d.home_candidates_sha256}</code>) · "
            f"{d.inspectors_requested} of {len(d.inspector_candidates)} inspectors (list SHA-256 "
            f"<code>{d.inspector_candidates_sha256}</code>) · teams of {d.team_size}</p>{_table(rows)}"
        )
    if not draws:
        parts.append("<p>No draw yet.</p>")
    return _page("双随机一公开", "".join(parts))
