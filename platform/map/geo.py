"""Coordinates: WGS-84 as stored, GCJ-02 (国测局坐标, "Mars coordinates") for Chinese map providers.

GCJ-02 is WGS-84 shifted by a published-by-leak formula on the Krasovsky ellipsoid; map providers in
mainland China (AutoNavi/Gaode, Tencent, Google's China tiles) draw their tiles in it, so a WGS-84 point
lands 300-700 m off on them. This module is the standard "eviltransform" algorithm: the forward transform
inside China's bounding test (outside it the two systems are the same), and the exact inverse by
fixed-point iteration (the forward shift varies slowly, so each step shrinks the error about a
thousandfold; a few steps reach far below a millimetre).

References the tests compare against: the test vectors of googollee/eviltransform (Shanghai, Shenzhen,
Beijing), of wandergis/coordtransform (as used by hutool's CoordinateUtilTest) and of hujiulong/gcoord.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# The Krasovsky 1940 ellipsoid, as the GCJ-02 formula uses it.
KRASOVSKY_A = 6378245.0
KRASOVSKY_EE = 0.00669342162296594323
# Mean earth radius (IUGG), for great-circle distances; the same constant as the database's map_earth().
EARTH_RADIUS_M = 6371008.8


class Crs(StrEnum):
    """The coordinate system of a request's output (and of the point or box it sends)."""

    WGS84 = "wgs84"
    GCJ02 = "gcj02"


@dataclass(frozen=True, slots=True)
class LonLat:
    lon: float
    lat: float


def out_of_china(lon: float, lat: float) -> bool:
    """The bounding test of the algorithm: outside it GCJ-02 equals WGS-84."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _shift_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _shift_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _delta(lon: float, lat: float) -> tuple[float, float]:
    """The GCJ-02 offset (degrees of lon, lat) at a WGS-84 point."""
    x, y = lon - 105.0, lat - 35.0
    rad_lat = math.radians(lat)
    magic = 1.0 - KRASOVSKY_EE * math.sin(rad_lat) ** 2
    sqrt_magic = math.sqrt(magic)
    d_lat = (_shift_lat(x, y) * 180.0) / ((KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrt_magic) * math.pi)
    d_lon = (_shift_lon(x, y) * 180.0) / (KRASOVSKY_A / sqrt_magic * math.cos(rad_lat) * math.pi)
    return d_lon, d_lat


def wgs84_to_gcj02(lon: float, lat: float) -> LonLat:
    if out_of_china(lon, lat):
        return LonLat(lon, lat)
    d_lon, d_lat = _delta(lon, lat)
    return LonLat(lon + d_lon, lat + d_lat)


def gcj02_to_wgs84(lon: float, lat: float, *, tolerance_deg: float = 1e-10, max_steps: int = 30) -> LonLat:
    """The exact inverse: the WGS-84 point whose GCJ-02 image is (lon, lat), to ``tolerance_deg``."""
    if out_of_china(lon, lat):
        return LonLat(lon, lat)
    w_lon, w_lat = lon, lat
    for _ in range(max_steps):
        g = wgs84_to_gcj02(w_lon, w_lat)
        e_lon, e_lat = g.lon - lon, g.lat - lat
        w_lon, w_lat = w_lon - e_lon, w_lat - e_lat
        if max(abs(e_lon), abs(e_lat)) < tolerance_deg:
            break
    return LonLat(w_lon, w_lat)


def to_crs(lon: float, lat: float, crs: Crs) -> LonLat:
    """A stored WGS-84 position in the output system."""
    return wgs84_to_gcj02(lon, lat) if crs is Crs.GCJ02 else LonLat(lon, lat)


def from_crs(lon: float, lat: float, crs: Crs) -> LonLat:
    """A position sent in ``crs`` as WGS-84, for the database."""
    return gcj02_to_wgs84(lon, lat) if crs is Crs.GCJ02 else LonLat(lon, lat)


def distance_m(a: LonLat, b: LonLat) -> float:
    """Great-circle (haversine) distance in metres on the mean-radius sphere."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
