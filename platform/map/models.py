"""What a map query asks for: the filters, the box or point, and how each is read from a request.

Every public endpoint takes the same filters; each is checked here, and a bad one becomes a 422 naming
the query field and the reason (the API's one error shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from eldercare.platform import divisions
from eldercare.platform.api.errors import FieldError, Problem
from eldercare.platform.map.geo import Crs, LonLat, from_crs
from eldercare.platform.registry.institutions import Kind, Service

MAX_PRICE = 1_000_000.0
INVALID = "the request is not valid"


class BedKind(StrEnum):
    NURSING = "nursing"
    ORDINARY = "ordinary"


@dataclass(frozen=True, slots=True)
class BBox:
    """A lon/lat rectangle in WGS-84 (west < east: a box across the antimeridian is not needed in China)."""

    west: float
    south: float
    east: float
    north: float

    @property
    def centre(self) -> LonLat:
        return LonLat((self.west + self.east) / 2, (self.south + self.north) / 2)


@dataclass(frozen=True, slots=True)
class HomeFilter:
    """Filters of the map's homes; ``None`` or empty means "any"."""

    region: str | None = None  # administrative division code prefix (GB/T 2260)
    kinds: tuple[Kind, ...] = ()
    grade_min: int | None = None
    grade_max: int | None = None
    price_max: float | None = None  # a home whose cheapest offer is within this budget (yuan/month)
    price_min: float | None = None  # a home with some offer at or above this
    free_min: int | None = None  # at least this many free beds (of free_kind, or of any kind)
    free_kind: BedKind | None = None
    services: tuple[Service, ...] = ()  # offers all of these
    bbox: BBox | None = None

    @property
    def needs_bed_counts(self) -> bool:
        """True when a row can only be kept or dropped after its beds are counted."""
        return self.free_min is not None and self.free_min > 0


class PlaceQuery(BaseModel):
    """The filters on a home's own facts, as query parameters; an unknown parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(default=None, description="division code prefix (GB/T 2260): 42, 4205, 420502")
    type: str | None = Field(default=None, description="comma-separated: residential_home, community_centre, ...")
    grade_min: int | None = Field(default=None, ge=0, le=5, description="star grade 0-5")
    grade_max: int | None = Field(default=None, ge=0, le=5)
    price_min: float | None = Field(default=None, ge=0, le=MAX_PRICE, description="a home with an offer >= this")
    price_max: float | None = Field(default=None, ge=0, le=MAX_PRICE, description="a home with an offer <= this")
    services: str | None = Field(default=None, description="comma-separated; the home offers all of them")
    crs: str | None = Field(default=None, description="wgs84 (default) or gcj02: the output's and the input's")


class FilterQuery(PlaceQuery):
    """And the filters on its beds, which need them counted."""

    free_min: int | None = Field(default=None, ge=0, le=100_000, description="at least this many free beds now")
    free_kind: str | None = Field(default=None, description="count free beds of this kind only: nursing, ordinary")


class HomesQuery(FilterQuery):
    bbox: str | None = Field(default=None, description="west,south,east,north: homes in view, nearest its centre first")
    limit: int = Field(default=500, ge=1, le=2000)
    offset: int = Field(default=0, ge=0, le=100_000)


class NearestQuery(FilterQuery):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    n: int = Field(default=10, ge=1, le=100)


class DistrictsQuery(PlaceQuery):
    bbox: str | None = Field(default=None, description="west,south,east,north: districts with homes in view")


class ExportQuery(FilterQuery):
    region: str = Field(description="the region to export: a division code of 2, 4, 6 or 9 digits")
    lang: Literal["zh-CN", "en"] = Field(default="zh-CN", description="the CSV's headers and names")


def _choices(text: str | None, allowed: type[StrEnum], name: str, errors: list[FieldError]) -> tuple[str, ...]:
    if text is None or not text.strip():
        return ()
    values = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    known = {member.value for member in allowed}
    bad = [v for v in values if v not in known]
    if bad:
        errors.append(FieldError(field=f"query.{name}", reason=f"unknown {', '.join(bad)}; one of {sorted(known)}"))
        return ()
    return values


def parse_crs(text: str | None) -> Crs:
    if text is None or text == "":
        return Crs.WGS84
    try:
        return Crs(text.lower())
    except ValueError:
        raise Problem(
            422, "the request is not valid", [FieldError(field="query.crs", reason="wgs84 or gcj02")]
        ) from None


def _bbox(text: str, crs: Crs, errors: list[FieldError]) -> BBox | None:
    parts = text.split(",")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        errors.append(FieldError(field="query.bbox", reason="four numbers: west,south,east,north (degrees)"))
        return None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        errors.append(
            FieldError(field="query.bbox", reason="need -180 <= west < east <= 180, -90 <= south < north <= 90")
        )
        return None
    sw, ne = from_crs(west, south, crs), from_crs(east, north, crs)
    return BBox(sw.lon, sw.lat, ne.lon, ne.lat)


def check(raw: PlaceQuery) -> tuple[HomeFilter, Crs]:
    """The checked filter and output system; 422 listing every bad field at once."""
    crs = parse_crs(raw.crs)
    errors: list[FieldError] = []
    region = raw.region.strip() if raw.region else None
    if region is not None and not divisions.is_region(region):
        errors.append(FieldError(field="query.region", reason=divisions.RULE))
    kinds = tuple(Kind(k) for k in _choices(raw.type, Kind, "type", errors))
    services = tuple(Service(s) for s in _choices(raw.services, Service, "services", errors))
    if raw.grade_min is not None and raw.grade_max is not None and raw.grade_min > raw.grade_max:
        errors.append(FieldError(field="query.grade_max", reason="must not be below grade_min"))
    free_min = raw.free_min if isinstance(raw, FilterQuery) else None
    free_kind_text = raw.free_kind if isinstance(raw, FilterQuery) else None
    free_kind = None
    if free_kind_text:
        try:
            free_kind = BedKind(free_kind_text)
        except ValueError:
            errors.append(FieldError(field="query.free_kind", reason="nursing or ordinary"))
    box_text = raw.bbox if isinstance(raw, HomesQuery | DistrictsQuery) else None
    bbox = _bbox(box_text, crs, errors) if box_text else None
    if errors:
        raise Problem(422, INVALID, errors)
    return (
        HomeFilter(
            region=region,
            kinds=kinds,
            grade_min=raw.grade_min,
            grade_max=raw.grade_max,
            price_max=raw.price_max,
            price_min=raw.price_min,
            free_min=free_min,
            free_kind=free_kind,
            services=services,
            bbox=bbox,
        ),
        crs,
    )
