"""GCJ-02 against published reference points, and the exact inverse (no database needed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eldercare.platform.map import geo

# (WGS-84 lon, lat) -> (GCJ-02 lon, lat) as published in the tests of well-known open-source libraries.
REFERENCES = [
    # googollee/eviltransform, go/transform_test.go and python/test.py: Shanghai, Shenzhen, Beijing
    ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),
    ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),
    ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),
    # wandergis/coordtransform, as used by dromara/hutool CoordinateUtilTest.wgs84ToGcj02Test
    ((116.404, 39.915), (116.41024449916938, 39.91640428150164)),
]
# hujiulong/gcoord test/unit/crs/GCJ02.spec.js: GCJ-02 [123, 45] -> WGS-84 [122.99395597, 44.99804071] (5 decimals)
GCOORD_INVERSE = ((123.0, 45.0), (122.99395597, 44.99804071))


@pytest.mark.parametrize(("wgs", "gcj"), REFERENCES)
def test_forward_matches_the_references_to_a_millimetre(wgs: tuple[float, float], gcj: tuple[float, float]) -> None:
    got = geo.wgs84_to_gcj02(*wgs)
    assert geo.distance_m(got, geo.LonLat(*gcj)) < 0.001
    # and the shift itself is the few hundred metres it should be
    assert 100 < geo.distance_m(geo.LonLat(*wgs), got) < 1000


@pytest.mark.parametrize(("wgs", "gcj"), REFERENCES)
def test_inverse_of_the_references_to_a_millimetre(wgs: tuple[float, float], gcj: tuple[float, float]) -> None:
    assert geo.distance_m(geo.gcj02_to_wgs84(*gcj), geo.LonLat(*wgs)) < 0.001


def test_inverse_matches_gcoord_within_its_published_precision() -> None:
    (g_lon, g_lat), (w_lon, w_lat) = GCOORD_INVERSE
    got = geo.gcj02_to_wgs84(g_lon, g_lat)
    assert abs(got.lon - w_lon) < 5e-6 and abs(got.lat - w_lat) < 5e-6  # jest toBeCloseTo(x, 5)
    assert geo.distance_m(got, geo.LonLat(w_lon, w_lat)) < 1.0


@settings(max_examples=500, deadline=None)
@given(lon=st.floats(min_value=73.5, max_value=135.0), lat=st.floats(min_value=18.0, max_value=53.5))
def test_round_trip_inside_china_is_sub_millimetre(lon: float, lat: float) -> None:
    gcj = geo.wgs84_to_gcj02(lon, lat)
    back = geo.gcj02_to_wgs84(gcj.lon, gcj.lat)
    assert geo.distance_m(back, geo.LonLat(lon, lat)) < 0.001
    # and GCJ-02 -> WGS-84 -> GCJ-02
    wgs = geo.gcj02_to_wgs84(lon, lat)
    again = geo.wgs84_to_gcj02(wgs.lon, wgs.lat)
    assert geo.distance_m(again, geo.LonLat(lon, lat)) < 0.001


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(2.35, 48.85), (139.69, 35.69), (-74.0, 40.7), (71.9, 39.0), (137.9, 30.0), (110.0, 0.5), (100.0, 56.0)],
)
def test_outside_chinas_box_nothing_moves(lon: float, lat: float) -> None:
    assert geo.out_of_china(lon, lat)
    assert geo.wgs84_to_gcj02(lon, lat) == geo.LonLat(lon, lat)
    assert geo.gcj02_to_wgs84(lon, lat) == geo.LonLat(lon, lat)


def test_crs_helpers() -> None:
    assert geo.to_crs(111.29, 30.7, geo.Crs.WGS84) == geo.LonLat(111.29, 30.7)
    assert geo.to_crs(111.29, 30.7, geo.Crs.GCJ02) == geo.wgs84_to_gcj02(111.29, 30.7)
    assert geo.from_crs(111.29, 30.7, geo.Crs.GCJ02) == geo.gcj02_to_wgs84(111.29, 30.7)


def test_haversine_against_a_known_distance() -> None:
    # Beijing (116.4074, 39.9042) to Shanghai (121.4737, 31.2304): about 1,067 km on the mean sphere.
    d = geo.distance_m(geo.LonLat(116.4074, 39.9042), geo.LonLat(121.4737, 31.2304))
    assert d == pytest.approx(1_067_000, rel=0.005)
