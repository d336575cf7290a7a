"""The public map API on the real database: counts of free beds right now, filters, nearest homes,
detail, GCJ-02 output, precise errors, and that no personal data leaves it."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from tests.map.conftest import Api, get
from tests.map.world import World

from eldercare.platform.map import geo


def codes_of(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [f["properties"]["code"] for f in reply.json()["features"]]


def by_code(reply: httpx.Response) -> dict[str, dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    return {f["properties"]["code"]: f for f in reply.json()["features"]}


def test_every_home_with_its_beds_free_right_now(api: Api, map_world: World) -> None:
    reply = get(api, "/api/v1/map/homes")
    assert reply.headers["content-type"] == "application/geo+json"
    body = reply.json()
    assert body["type"] == "FeatureCollection" and body["coordinate_system"] == "WGS-84" and body["more"] is False
    found = by_code(reply)
    assert set(found) == {h.code for h in map_world.homes.values()}
    for home in map_world.homes.values():
        props = found[home.code]["properties"]
        assert (props["beds"]["nursing"]["total"], props["beds"]["nursing"]["free"]) == home.nursing, home.name
        assert (props["beds"]["ordinary"]["total"], props["beds"]["ordinary"]["free"]) == home.ordinary, home.name
        assert props["beds"]["total"] == home.nursing[0] + home.ordinary[0]
        assert props["beds"]["free"] == home.nursing[1] + home.ordinary[1]
        assert props["name"] == home.name and props["type"] == home.kind and props["star_grade"] == home.grade
        assert props["services"] == list(home.services)
        if home.lon is None:
            assert found[home.code]["geometry"] is None
        else:
            assert found[home.code]["geometry"] == {"type": "Point", "coordinates": [home.lon, home.lat]}
    a = found[map_world.homes["A"].code]["properties"]
    assert (a["province"], a["city"], a["district"], a["region_code"]) == ("湖北省", "宜昌市", "西陵区", "420502")
    assert a["price"] == {"min": 3000.0, "max": 6000.0, "currency": "CNY", "per": "month"}
    assert a["contact_phone"] == "0717-6221234"


def test_a_new_stay_takes_a_bed_and_a_discharge_frees_it(api: Api, map_world: World) -> None:
    """ "Right now" moves with the registry: B's two free beds become one when an elder is admitted."""
    b = map_world.homes["B"]
    with psycopg.connect(api.db.url, autocommit=True) as conn:
        found = conn.execute("SELECT id FROM beds WHERE institution_id = %s ORDER BY id LIMIT 1", (b.id,)).fetchone()
        assert found is not None
        bed = found[0]
        # A resident without a stay now comes to B for a week.
        row = conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during)"
            " SELECT %s, r.id, tstzrange(now(), now() + interval '7 days') FROM residents r"
            " WHERE NOT EXISTS (SELECT 1 FROM bed_assignments a WHERE a.resident_id = r.id"
            " AND a.during && tstzrange(now(), now() + interval '7 days')) LIMIT 1 RETURNING id",
            (bed,),
        ).fetchone()
        assert row is not None
        try:
            taken = by_code(get(api, "/api/v1/map/homes", region="420503"))[b.code]["properties"]["beds"]
            assert (taken["total"], taken["free"]) == (2, 1)
            conn.execute("UPDATE bed_assignments SET during = tstzrange(lower(during), now()) WHERE id = %s", row)
            freed = by_code(get(api, "/api/v1/map/homes", region="420503"))[b.code]["properties"]["beds"]
            assert (freed["total"], freed["free"]) == (2, 2)
        finally:
            conn.execute("DELETE FROM bed_assignments WHERE id = %s", row)


@pytest.mark.parametrize(
    ("params", "letters"),
    [
        ({"region": "42"}, "ABCDF"),
        ({"region": "4205"}, "ABCF"),
        ({"region": "420502"}, "AF"),
        ({"region": "11"}, "E"),
        ({"type": "community_centre"}, "B"),
        ({"type": "residential_home,home_care_provider"}, "ACDEF"),
        ({"grade_min": 4}, "AD"),
        ({"grade_min": 2, "grade_max": 3}, "BC"),
        ({"price_max": 1000}, "BF"),  # the cheapest offer within budget
        ({"price_min": 7000}, "D"),  # some offer at or above
        ({"free_min": 1}, "ABDF"),
        ({"free_min": 3}, "A"),
        ({"free_min": 2, "free_kind": "nursing"}, "D"),
        ({"free_min": 2, "free_kind": "ordinary"}, "AB"),
        ({"services": "medical_care"}, "ACD"),
        ({"services": "medical_care,dementia_care"}, "A"),
        ({"services": "meal_assistance", "type": "community_centre", "region": "4205"}, "B"),
        ({"bbox": "111.2,30.6,111.4,30.75"}, "ABC"),
        ({"bbox": "111.2,30.6,111.4,30.75", "free_min": 1, "grade_min": 4}, "A"),
    ],
)
def test_filters(api: Api, map_world: World, params: dict[str, Any], letters: str) -> None:
    expected = {map_world.homes[x].code for x in letters}
    assert set(codes_of(get(api, "/api/v1/map/homes", **params))) == expected


def test_a_box_lists_nearest_its_centre_first_and_pages(api: Api, map_world: World) -> None:
    h = map_world.homes
    box = {"bbox": "111.0,30.5,111.5,30.9"}  # centre 111.25, 30.70: C (1 km) then A (3.8 km) then B
    assert codes_of(get(api, "/api/v1/map/homes", **box)) == [h["C"].code, h["A"].code, h["B"].code]
    first = get(api, "/api/v1/map/homes", **box, limit=2)
    assert codes_of(first) == [h["C"].code, h["A"].code] and first.json()["more"] is True
    rest = get(api, "/api/v1/map/homes", **box, limit=2, offset=2)
    assert codes_of(rest) == [h["B"].code] and rest.json()["more"] is False


def test_nearest_homes_with_great_circle_distances(api: Api, map_world: World) -> None:
    here = geo.LonLat(111.30, 30.69)
    reply = get(api, "/api/v1/map/nearest", lat=here.lat, lon=here.lon, n=4)
    placed = [h for h in map_world.homes.values() if h.lon is not None and h.lat is not None]
    expected = sorted(placed, key=lambda h: geo.distance_m(here, geo.LonLat(h.lon or 0, h.lat or 0)))[:4]
    assert codes_of(reply) == [h.code for h in expected]
    for feature, home in zip(reply.json()["features"], expected, strict=True):
        truth = geo.distance_m(here, geo.LonLat(home.lon or 0, home.lat or 0))
        assert feature["properties"]["distance_m"] == pytest.approx(truth, rel=1e-6, abs=0.1)
    # Wuhan is 290 km away, Beijing 1,100 km: the database's sphere and haversine agree.
    assert reply.json()["features"][3]["properties"]["distance_m"] == pytest.approx(290_000, rel=0.02)
    assert reply.json()["origin"] == {"type": "Point", "coordinates": [111.3, 30.69]}
    # Filters apply before the count: the nearest home with a free nursing bed is D in Wuhan, after A.
    free_nursing = get(api, "/api/v1/map/nearest", lat=here.lat, lon=here.lon, n=2, free_min=1, free_kind="nursing")
    assert codes_of(free_nursing) == [map_world.homes["A"].code, map_world.homes["D"].code]


def test_gcj02_output_and_input(api: Api, map_world: World) -> None:
    a = map_world.homes["A"]
    assert a.lon is not None and a.lat is not None
    shifted = geo.wgs84_to_gcj02(a.lon, a.lat)
    reply = get(api, "/api/v1/map/homes", region="420502", crs="gcj02")
    body = reply.json()
    assert body["coordinate_system"] == "GCJ-02"
    lon, lat = by_code(reply)[a.code]["geometry"]["coordinates"]
    assert (lon, lat) == (pytest.approx(shifted.lon, abs=1e-7), pytest.approx(shifted.lat, abs=1e-7))
    assert geo.distance_m(geo.LonLat(lon, lat), geo.LonLat(a.lon, a.lat)) > 100  # visibly moved
    # A point sent in GCJ-02 is the same place: A's GCJ-02 position finds A at 0 m.
    near = get(api, "/api/v1/map/nearest", lat=shifted.lat, lon=shifted.lon, n=1, crs="gcj02").json()
    assert near["features"][0]["id"] == a.code
    assert near["features"][0]["properties"]["distance_m"] < 0.01
    detail = get(api, f"/api/v1/map/homes/{a.code}", crs="gcj02").json()
    assert detail["geometry"]["coordinates"] == [lon, lat]


def test_detail_of_a_home(api: Api, map_world: World) -> None:
    a = map_world.homes["A"]
    body = get(api, f"/api/v1/map/homes/{a.code}").json()
    assert body["type"] == "Feature" and body["id"] == a.code
    p = body["properties"]
    assert p["name"] == "夕阳红养老院" and p["star_grade"] == 5 and p["capacity"] == 7
    assert p["address"] == "湖北省宜昌市西陵区夷陵大道1号" and p["contact_phone"] == "0717-6221234"
    rooms = {r["room"]: r["beds"] for r in p["rooms"]}
    assert p["room_count"] == 4 and set(rooms) == {"101", "102", "201", "202"}
    assert (rooms["101"]["nursing"], rooms["102"]["nursing"]) == ({"total": 2, "free": 1}, {"total": 2, "free": 0})
    assert rooms["201"]["ordinary"] == {"total": 2, "free": 1}  # 201-2 is retired, 201-3 free
    assert p["rooms"][0]["building"] == "1号楼" and p["rooms"][0]["floor"] == "1层"
    assert get(api, "/api/v1/map/homes/not-a-code").status_code == 422
    unknown = get(api, "/api/v1/map/homes/12420502MA4K00001X")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "home not found"


def test_districts_are_labelled_at_their_homes(api: Api, map_world: World) -> None:
    body = get(api, "/api/v1/map/districts", region="4205").json()
    found = {f["properties"]["code"]: f for f in body["features"]}
    assert {c: f["properties"]["name"] for c, f in found.items()} == {
        "420502": "西陵区",
        "420503": "伍家岗区",
        "420504": "点军区",
    }
    assert found["420502"]["properties"]["homes"] == 1  # F has no position, so it places no label
    assert found["420502"]["geometry"]["coordinates"] == [111.29, 30.7]
    in_view = get(api, "/api/v1/map/districts", bbox="111.33,30.6,111.4,30.7").json()
    assert [f["id"] for f in in_view["features"]] == ["420503"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/map/homes", {"region": "4205x"}, "query.region"),
        ("/api/v1/map/homes", {"region": "99"}, "query.region"),  # well-formed, no such region
        ("/api/v1/map/homes", {"type": "hospital"}, "query.type"),
        ("/api/v1/map/homes", {"services": "karaoke"}, "query.services"),
        ("/api/v1/map/homes", {"grade_min": 6}, "query.grade_min"),
        ("/api/v1/map/homes", {"grade_min": 4, "grade_max": 2}, "query.grade_max"),
        ("/api/v1/map/homes", {"price_max": -1}, "query.price_max"),
        ("/api/v1/map/homes", {"free_kind": "sofa"}, "query.free_kind"),
        ("/api/v1/map/homes", {"bbox": "1,2,3"}, "query.bbox"),
        ("/api/v1/map/homes", {"bbox": "112,30,111,31"}, "query.bbox"),
        ("/api/v1/map/homes", {"crs": "bd09"}, "query.crs"),
        ("/api/v1/map/homes", {"limit": 0}, "query.limit"),
        ("/api/v1/map/homes", {"grade": 4}, "query.grade"),  # a typo is told, not ignored
        ("/api/v1/map/nearest", {"lat": 30.7}, "query.lon"),
        ("/api/v1/map/nearest", {"lat": 91, "lon": 111}, "query.lat"),
        ("/api/v1/map/nearest", {"lat": 30, "lon": 111, "n": 101}, "query.n"),
        ("/api/v1/map/districts", {"free_min": 1}, "query.free_min"),
        ("/api/v1/map/export.csv", {}, "query.region"),
        ("/api/v1/map/export.csv", {"region": "4205", "lang": "fr"}, "query.lang"),
    ],
)
def test_bad_requests_name_the_field(api: Api, path: str, params: dict[str, Any], field: str) -> None:
    reply = get(api, path, **params)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["detail"] and field in [e["field"] for e in body["errors"]], body


def test_no_personal_data_in_any_public_answer(api: Api, map_world: World) -> None:
    a = map_world.homes["A"]
    texts = [
        get(api, "/api/v1/map/homes").text,
        get(api, "/api/v1/map/nearest", lat=30.7, lon=111.29, n=10).text,
        get(api, f"/api/v1/map/homes/{a.code}").text,
        get(api, "/api/v1/map/export.csv", region="42").content.decode("utf-8-sig"),
        get(api, "/api/v1/map/export.geojson", region="42").text,
    ]
    assert len(map_world.resident_names) >= 5
    with psycopg.connect(api.db.url) as conn:
        person_codes = [r[0] for r in conn.execute("SELECT person_code FROM residents").fetchall()]
    assert person_codes
    for text in texts:
        for secret in [*map_world.resident_names, *map_world.id_numbers, *person_codes]:
            assert secret not in text
        assert "院长办公室" not in text  # the contact person's name is not published, only the home's phone
        assert "person_code" not in text


def test_responses_are_cached_with_etags(api: Api, map_world: World) -> None:
    from tests.map.conftest import settings

    b = map_world.homes["B"]

    async def work(http: httpx.AsyncClient) -> None:
        first = await http.get("/api/v1/map/homes", params={"region": "420503"})
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=30"
        etag = first.headers["etag"]
        again = await http.get("/api/v1/map/homes", params={"region": "420503"}, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
        with psycopg.connect(api.db.url, autocommit=True) as conn:
            conn.execute("UPDATE beds SET retired_at = now() WHERE institution_id = %s AND label = '101-2'", (b.id,))
        try:
            # Within the cache period the same answer is served (documented: at most 30 s old) ...
            cached = await http.get("/api/v1/map/homes", params={"region": "420503"})
            assert cached.headers["etag"] == etag
            assert cached.json()["features"][0]["properties"]["beds"]["total"] == 2
            # ... and a different query is computed now.
            fresh = await http.get("/api/v1/map/homes", params={"region": "4205", "type": "community_centre"})
            assert fresh.json()["features"][0]["properties"]["beds"]["total"] == 1
        finally:
            with psycopg.connect(api.db.url, autocommit=True) as conn:
                conn.execute("UPDATE beds SET retired_at = NULL WHERE institution_id = %s AND label = '101-2'", (b.id,))

    api(work, map_settings=settings(map_cache_ttl_s=30.0))


def test_an_expired_entry_is_computed_again(api: Api, map_world: World) -> None:
    from tests.map.conftest import settings

    async def work(http: httpx.AsyncClient) -> tuple[str, str]:
        first = await http.get("/api/v1/map/homes", params={"region": "420504"})
        with psycopg.connect(api.db.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE bed_assignments SET during = tstzrange(lower(during), now()) WHERE bed_id IN"
                " (SELECT id FROM beds WHERE institution_id = %s AND label = '101-1')",
                (map_world.homes["C"].id,),
            )
        try:
            import asyncio

            await asyncio.sleep(0.3)
            second = await http.get("/api/v1/map/homes", params={"region": "420504"})
            assert second.json()["features"][0]["properties"]["beds"]["free"] == 1
            return first.headers["etag"], second.headers["etag"]
        finally:
            with psycopg.connect(api.db.url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE bed_assignments SET during = tstzrange(lower(during), NULL) WHERE bed_id IN"
                    " (SELECT id FROM beds WHERE institution_id = %s AND label = '101-1')",
                    (map_world.homes["C"].id,),
                )

    before, after = api(work, map_settings=settings(map_cache_ttl_s=0.2))
    assert before != after


def test_rate_limit_per_client_address(api: Api) -> None:
    from tests.map.conftest import settings

    async def work(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [await http.get("/api/v1/map/homes", params={"region": "420502"}) for _ in range(6)]

    limited = settings(map_rate_per_s=0.5, map_burst=4.0, map_cache_ttl_s=30.0)
    replies = api(work, map_settings=limited, client=("203.0.113.7", 4000))
    assert [r.status_code for r in replies[:4]] == [200] * 4  # cached answers count too
    refused = replies[4]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"  # one token at 0.5 per second
    assert "too many" in refused.json()["detail"]


def test_an_export_costs_more_than_a_page(api: Api) -> None:
    from tests.map.conftest import settings

    async def work(http: httpx.AsyncClient) -> list[int]:
        out = [(await http.get("/api/v1/map/export.csv", params={"region": "42"})).status_code]
        out.append((await http.get("/api/v1/map/export.csv", params={"region": "42"})).status_code)
        out.append((await http.get("/api/v1/map/homes", params={"region": "42"})).status_code)
        return out

    statuses = api(work, map_settings=settings(map_rate_per_s=0.1, map_burst=25.0, map_export_cost=20.0))
    assert statuses == [200, 429, 200]


def test_config_has_no_tiles_by_default(api: Api) -> None:
    from tests.map.conftest import settings

    body = get(api, "/api/v1/map/config").json()
    assert body["tile_url"] == "" and body["tile_crs"] == "wgs84"
    assert body["centre"] == {"lon": 111.29, "lat": 30.7}

    async def work(http: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
        config = (await http.get("/api/v1/map/config")).json()
        page = await http.get("/map")
        return config, page.headers["content-security-policy"]

    gaode = settings(map_tile_url="https://webrd0{s}.example.cn/tiles/{z}/{x}/{y}.png", map_tile_crs="gcj02")
    config, csp = api(work, map_settings=gaode)
    shifted = geo.wgs84_to_gcj02(111.29, 30.70)
    assert config["centre"] == {"lon": pytest.approx(shifted.lon), "lat": pytest.approx(shifted.lat)}
    assert "img-src 'self' data: https://webrd0*.example.cn" in csp and "connect-src 'self'" in csp


def test_the_page_allows_only_the_platform_when_no_tiles(api: Api) -> None:
    page = get(api, "/map")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "养老地图" in page.text and "/static/vendor/leaflet/leaflet.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:;" in csp
    assert get(api, "/static/app/map.js").status_code == 200
    assert get(api, "/static/app/map.i18n.js").status_code == 200
