"""Where simulated homes are: the counties of a region, their township names and a coordinate anchor each.

No boundary data exists in the repository, so a county is represented by an **anchor**: the approximate
position of its seat of government (WGS-84, read off public maps to about 1 km) and a radius in which its
homes are placed (2-3 km: most homes are in or around the county town). ``data/anchors.csv`` holds the
anchors of Yichang (4205), the city of the seed plans, with a weight per county: its population in units of
10,000 (approximate 2020 census figures), which spreads the homes of a city over its counties. Other regions
work with an anchors file of the same columns (``--anchors``).

County names come from the platform's own division table (``platform/db/data/regions/areas.csv``, the
table the database's ``regions`` is loaded from, so every code used exists there); township names for
addresses from ``data/streets_<city>.csv`` (rows of the shared ``streets.csv``), when present.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from eldercare.simulators.errors import SimError

_KM_PER_DEG_LAT = 111.32


@dataclass(frozen=True, slots=True)
class County:
    code: str  # 6 digits, GB/T 2260
    name: str  # 西陵区
    province: str  # 湖北省
    city: str  # 宜昌市
    lon: float
    lat: float
    radius_km: float
    weight: float
    townships: tuple[str, ...]

    @property
    def short(self) -> str:
        """西陵区 -> 西陵, 长阳土家族自治县 -> 长阳, 宜都市 -> 宜都."""
        for suffix in ("土家族自治县", "自治县", "区", "县", "市"):
            if self.name.endswith(suffix) and len(self.name) > len(suffix) + 1:
                return self.name[: -len(suffix)]
        return self.name

    def contains(self, lon: float, lat: float) -> bool:
        return distance_km(self.lon, self.lat, lon, lat) <= self.radius_km + 1e-9

    def place(self, rng: random.Random, *, radius_km: float | None = None) -> tuple[float, float]:
        """A point uniformly distributed in the county's disc, rounded to 6 decimals (about 0.1 m)."""
        radius = radius_km if radius_km is not None else self.radius_km
        r = radius * math.sqrt(rng.random())
        angle = rng.random() * 2 * math.pi
        d_lat = r * math.sin(angle) / _KM_PER_DEG_LAT
        d_lon = r * math.cos(angle) / (_KM_PER_DEG_LAT * math.cos(math.radians(self.lat)))
        return round(self.lon + d_lon, 6), round(self.lat + d_lat, 6)


def distance_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine, mean earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def offset(lon: float, lat: float, *, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` metres east and ``north_m`` north of (lon, lat)."""
    d_lat = north_m / 1000 / _KM_PER_DEG_LAT
    d_lon = east_m / 1000 / (_KM_PER_DEG_LAT * math.cos(math.radians(lat)))
    return lon + d_lon, lat + d_lat


def _read(package: str, name: str) -> list[dict[str, str]]:
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _division_names() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    package = "eldercare.platform.db.data.regions"
    provinces = {r["code"]: r["name"] for r in _read(package, "provinces.csv")}
    cities = {r["code"]: r["name"] for r in _read(package, "cities.csv")}
    areas = {r["code"]: r["name"] for r in _read(package, "areas.csv")}
    return provinces, cities, areas


def _townships(city: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    path = resources.files("eldercare.simulators").joinpath("data").joinpath(f"streets_{city}.csv")
    if not path.is_file():
        return out
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")):
        out.setdefault(row["areaCode"], []).append(row["name"])
    return out


def _anchor_rows(anchors: Path | None) -> list[dict[str, str]]:
    if anchors is None:
        return _read("eldercare.simulators.data", "anchors.csv")
    try:
        return list(csv.DictReader(io.StringIO(anchors.read_text(encoding="utf-8"), newline="")))
    except OSError as exc:
        raise SimError(f"cannot read the anchors file {anchors}: {exc}") from exc


def counties(region: str, *, anchors: Path | None = None) -> list[County]:
    """The counties of ``region`` (a 4-digit city or a 6-digit county code) that have an anchor."""
    if not (region.isdigit() and len(region) in (4, 6)):
        raise SimError(f"region {region!r}: give a city (4 digits, e.g. 4205) or a county (6 digits, e.g. 420502)")
    provinces, cities, areas = _division_names()
    city = region[:4]
    if city not in cities or (len(region) == 6 and region not in areas):
        raise SimError(f"region {region!r} is not an administrative division code of the platform's table")
    towns = _townships(city)
    found: list[County] = []
    for row in _anchor_rows(anchors):
        code = row["code"]
        if not code.startswith(region):
            continue
        if code not in areas:
            raise SimError(f"anchors: {code} is not a county code of the platform's division table")
        try:
            lon, lat = float(row["lon"]), float(row["lat"])
            radius, weight = float(row["radius_km"]), float(row["weight"])
        except (KeyError, ValueError) as exc:
            raise SimError(f"anchors: the row of {code} needs numbers lon, lat, radius_km, weight ({exc})") from exc
        name = cities[city]
        found.append(
            County(
                code=code,
                name=areas[code],
                province=provinces[code[:2]],
                city=name if name != "市辖区" else provinces[code[:2]],
                lon=lon,
                lat=lat,
                radius_km=radius,
                weight=weight,
                townships=tuple(towns.get(code, ())),
            )
        )
    if not found:
        raise SimError(
            f"no anchor is known for region {region} (shipped: Yichang 4205 and its counties); "
            "give --anchors FILE with columns code,name,lon,lat,radius_km,weight"
        )
    return sorted(found, key=lambda c: c.code)
