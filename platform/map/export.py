"""A region's homes as a file: CSV for spreadsheets, GeoJSON for GIS tools.

The CSV is UTF-8 with a byte-order mark (EF BB BF) so that Excel, which otherwise reads a CSV in the
system's ANSI code page (GBK on Chinese Windows), shows the Chinese text correctly; rows end in CRLF
(RFC 4180). Headers and the type and service names are in Chinese (``lang=zh-CN``) or English.
A text cell that begins with ``= + - @`` (or a tab or carriage return) is prefixed with an apostrophe,
so a spreadsheet never runs it as a formula (CSV injection); the numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from eldercare.platform.map.features import beds, feature
from eldercare.platform.map.geo import Crs, to_crs

BOM = "\ufeff"
LANGS = ("zh-CN", "en")

_HEADERS = {
    "zh-CN": [
        "机构代码", "名称", "类型", "行政区划代码", "省", "市", "区县", "地址", "经度", "纬度", "坐标系",
        "星级", "最低价格(元/月)", "最高价格(元/月)", "床位总数", "空余床位", "护理型床位", "护理型空余",
        "普通床位", "普通空余", "服务", "联系电话",
    ],
    "en": [
        "code", "name", "type", "region_code", "province", "city", "district", "address", "lon", "lat", "crs",
        "star_grade", "price_min_cny_month", "price_max_cny_month", "beds_total", "beds_free", "nursing_total",
        "nursing_free", "ordinary_total", "ordinary_free", "services", "contact_phone",
    ],
}  # fmt: skip

NAMES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "residential_home": "养老机构",
        "community_centre": "社区养老服务中心",
        "home_care_provider": "居家养老服务商",
        "medical_care": "医养结合",
        "rehabilitation": "康复护理",
        "dementia_care": "认知症照护",
        "day_care": "日间照料",
        "respite_care": "喘息服务",
        "palliative_care": "安宁疗护",
        "meal_assistance": "老年助餐",
        "home_visits": "上门服务",
    },
    "en": {
        "residential_home": "residential home",
        "community_centre": "community centre",
        "home_care_provider": "home-care provider",
        "medical_care": "integrated medical care",
        "rehabilitation": "rehabilitation",
        "dementia_care": "dementia care",
        "day_care": "day care",
        "respite_care": "respite care",
        "palliative_care": "palliative care",
        "meal_assistance": "meal assistance",
        "home_visits": "home visits",
    },
}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """A text cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA) else value


def csv_bytes(rows: list[dict[str, Any]], *, crs: Crs, lang: str) -> bytes:
    names = NAMES[lang]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_HEADERS[lang])
    for row in rows:
        b = beds(row)
        pos = to_crs(row["lon"], row["lat"], crs) if row["lon"] is not None else None
        writer.writerow(
            [
                row["code"],
                safe_text(row["name"]),
                names[row["kind"]],
                row["region_code"],
                row["province"] or "",
                row["city"] or "",
                row["district"] or "",
                safe_text(row["address"]),
                f"{pos.lon:.7f}" if pos else "",
                f"{pos.lat:.7f}" if pos else "",
                "GCJ-02" if crs is Crs.GCJ02 else "WGS-84",
                "" if row["star_grade"] is None else row["star_grade"],
                "" if row["price_min"] is None else f"{row['price_min']:.2f}",
                "" if row["price_max"] is None else f"{row['price_max']:.2f}",
                b["total"],
                b["free"],
                b["nursing"]["total"],
                b["nursing"]["free"],
                b["ordinary"]["total"],
                b["ordinary"]["free"],
                "、".join(names.get(s, s) for s in row["services"])
                if lang == "zh-CN"
                else "; ".join(names.get(s, s) for s in row["services"]),
                safe_text(row["contact_phone"]),
            ]
        )
    return (BOM + out.getvalue()).encode("utf-8")


def geojson_bytes(rows: list[dict[str, Any]], *, crs: Crs, region: str) -> bytes:
    body = {
        "type": "FeatureCollection",
        "coordinate_system": "GCJ-02" if crs is Crs.GCJ02 else "WGS-84",
        "region": region,
        "features": [feature(row, crs) for row in rows],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
