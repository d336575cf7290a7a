"""Exports of a region's homes: CSV that Excel opens (UTF-8 with BOM) and GeoJSON."""

from __future__ import annotations

import csv
import io

from tests.map.conftest import Api, get
from tests.map.world import World

from eldercare.platform.map import geo


def test_csv_is_utf8_with_bom_and_chinese_headers(api: Api, map_world: World) -> None:
    reply = get(api, "/api/v1/map/export.csv", region="4205")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert reply.headers["content-disposition"] == 'attachment; filename="homes-4205-wgs84.csv"'
    assert reply.content.startswith(b"\xef\xbb\xbf")
    text = reply.content[3:].decode("utf-8")
    assert "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    by_code = {r["机构代码"]: r for r in rows}
    assert set(by_code) == {map_world.homes[x].code for x in "ABCF"}
    a = by_code[map_world.homes["A"].code]
    assert a["名称"] == "夕阳红养老院" and a["类型"] == "养老机构" and a["区县"] == "西陵区" and a["市"] == "宜昌市"
    assert (a["床位总数"], a["空余床位"], a["护理型床位"], a["护理型空余"]) == ("7", "3", "4", "1")
    assert (a["经度"], a["纬度"], a["坐标系"]) == ("111.2900000", "30.7000000", "WGS-84")
    assert a["服务"] == "医养结合、认知症照护" and a["最低价格(元/月)"] == "3000.00"
    # A name starting with '=' is not run as a formula by a spreadsheet.
    assert by_code[map_world.homes["F"].code]["名称"] == "'=西陵区无坐标敬老院"
    assert by_code[map_world.homes["F"].code]["经度"] == ""


def test_csv_in_english_and_gcj02(api: Api, map_world: World) -> None:
    reply = get(api, "/api/v1/map/export.csv", region="420502", lang="en", crs="gcj02")
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"), newline="")))
    a = next(r for r in rows if r["code"] == map_world.homes["A"].code)
    shifted = geo.wgs84_to_gcj02(111.29, 30.70)
    assert (a["lon"], a["lat"], a["crs"]) == (f"{shifted.lon:.7f}", f"{shifted.lat:.7f}", "GCJ-02")
    assert a["type"] == "residential home" and a["services"] == "integrated medical care; dementia care"


def test_geojson_export_with_filters(api: Api, map_world: World) -> None:
    reply = get(api, "/api/v1/map/export.geojson", region="42", free_min=2)
    assert reply.headers["content-disposition"] == 'attachment; filename="homes-42-wgs84.geojson"'
    body = reply.json()
    assert body["type"] == "FeatureCollection" and body["region"] == "42"
    assert {f["id"] for f in body["features"]} == {map_world.homes[x].code for x in "ABD"}


def test_an_empty_region_exports_the_header_only(api: Api) -> None:
    reply = get(api, "/api/v1/map/export.csv", region="65")
    lines = reply.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 1 and lines[0].startswith("机构代码,名称,类型")
