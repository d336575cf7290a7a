"""Rows of the map's queries as GeoJSON (RFC 7946) features, in WGS-84 or GCJ-02.

RFC 7946 coordinates are WGS-84; a collection asked for in GCJ-02 says so in its foreign member
``coordinate_system`` ("GCJ-02"), so nobody mistakes it for standard GeoJSON positions.
"""

from __future__ import annotations

from typing import Any

from eldercare.platform.map.geo import Crs, to_crs

PHOTO_URL = "/api/v1/map/photos/{id}"
DETAIL_URL = "/api/v1/map/homes/{code}"
CRS_NAMES = {Crs.WGS84: "WGS-84", Crs.GCJ02: "GCJ-02"}
_DECIMALS = 7  # about 1 cm


def geometry(lon: float | None, lat: float | None, crs: Crs) -> dict[str, Any] | None:
    if lon is None or lat is None:
        return None
    p = to_crs(lon, lat, crs)
    return {"type": "Point", "coordinates": [round(p.lon, _DECIMALS), round(p.lat, _DECIMALS)]}


def beds(row: dict[str, Any]) -> dict[str, Any]:
    nursing = {"total": row["nursing_total"], "free": row["nursing_free"]}
    ordinary = {"total": row["ordinary_total"], "free": row["ordinary_free"]}
    return {
        "total": nursing["total"] + ordinary["total"],
        "free": nursing["free"] + ordinary["free"],
        "nursing": nursing,
        "ordinary": ordinary,
    }


def properties(row: dict[str, Any]) -> dict[str, Any]:
    """The public facts of a home: nothing about any person (the contact is the home's phone)."""
    props: dict[str, Any] = {
        "code": row["code"],
        "name": row["name"],
        "type": row["kind"],
        "address": row["address"],
        "region_code": row["region_code"],
        "province": row["province"],
        "city": row["city"],
        "district": row["district"],
        "star_grade": row["star_grade"],
        "beds": beds(row),
        "price": {"min": row["price_min"], "max": row["price_max"], "currency": "CNY", "per": "month"},
        "services": list(row["services"]),
        "photos": [PHOTO_URL.format(id=pid) for pid in row["photo_ids"]],
        "contact_phone": row["contact_phone"],
        "detail": DETAIL_URL.format(code=row["code"]),
    }
    if "distance_m" in row and row["distance_m"] is not None:
        props["distance_m"] = round(float(row["distance_m"]), 1)
    return props


def feature(row: dict[str, Any], crs: Crs) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row["code"],
        "geometry": geometry(row["lon"], row["lat"], crs),
        "properties": properties(row),
    }


def collection(features: list[dict[str, Any]], crs: Crs, members: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FeatureCollection; ``members`` are foreign members (``more``, ``origin``) placed before the features."""
    return {"type": "FeatureCollection", "coordinate_system": CRS_NAMES[crs], **(members or {}), "features": features}


def district(row: dict[str, Any], crs: Crs) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row["code"],
        "geometry": geometry(row["lon"], row["lat"], crs),
        "properties": {"code": row["code"], "name": row["name"], "homes": row["homes"]},
    }


def room(row: dict[str, Any]) -> dict[str, Any]:
    return {"building": row["building"], "floor": row["floor"], "room": row["room"], "beds": beds(row)}
