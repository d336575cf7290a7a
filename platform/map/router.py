"""``/api/v1/map/...`` (public: no login, no personal data, cached, rate-limited) and the page ``/map``.

Every public answer is computed once per cache period per distinct query (see cache.py), carries an
ETag and ``Cache-Control: public, max-age``, and costs the client tokens of its bucket (ratelimit.py);
an empty bucket is answered 429 with ``Retry-After``. Adding and removing photos needs a login.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal, pool
from eldercare.platform.api.errors import RESPONSES, FieldError, NotFound, Problem
from eldercare.platform.auth.router import THROTTLED, client_of, throttled
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.auth.throttle import TooMany
from eldercare.platform.map import export, features, photos, service
from eldercare.platform.map.cache import Body, respond
from eldercare.platform.map.geo import Crs, LonLat, from_crs, to_crs
from eldercare.platform.map.models import (
    DistrictsQuery,
    ExportQuery,
    HomeFilter,
    HomesQuery,
    NearestQuery,
    check,
    parse_crs,
)
from eldercare.platform.map.page import router as page_router
from eldercare.platform.map.state import MapState, state_of

GEOJSON = "application/geo+json"
_CODE = r"^[0-9A-HJ-NPQRTUWXY]{18}$"

api = APIRouter(prefix="/api/v1/map", tags=["public: facility map"], responses=RESPONSES | THROTTLED)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _serve(
    request: Request, *, cost: float = 1.0, make: Callable[[], Awaitable[Body]], max_age: int | None = None
) -> Response:
    """Rate-limit, then answer from the cache (or compute once), with ETag and Cache-Control."""
    state = state_of(request)
    try:
        state.limiter.check(client_of(request), cost)
    except TooMany as exc:
        return throttled(exc)
    key = request.url.path + "?" + "&".join(f"{k}={v}" for k, v in sorted(request.query_params.multi_items()))
    entry = await state.cache.get(key, make)
    return respond(request, entry, max_age_s=int(state.settings.map_cache_ttl_s) if max_age is None else max_age)


@api.get("/homes", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def list_homes(request: Request, q: Annotated[HomesQuery, Query()]) -> Response:
    """Homes and community centres as a GeoJSON FeatureCollection, with beds and free beds right now.

    ``more`` tells whether homes beyond ``limit`` match; with ``bbox`` the homes nearest the box's centre
    come first, else they are ordered by district and name.
    """
    filters, out = check(q)

    async def make() -> Body:
        async with pool(request).connection() as conn:
            await _known_region(conn, filters)
            near = filters.bbox.centre if filters.bbox else None
            page = await service.homes(conn, filters=filters, near=near, limit=q.limit, offset=q.offset)
        found = [features.feature(r, out) for r in page.rows]
        return Body(
            _json(features.collection(found, out, {"more": page.more, "limit": q.limit, "offset": q.offset})), GEOJSON
        )

    return await _serve(request, make=make)


@api.get("/nearest", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def nearest(request: Request, q: Annotated[NearestQuery, Query()]) -> Response:
    """The ``n`` homes nearest to a point that match the filters, nearest first, each with ``distance_m``
    (great-circle metres from the point)."""
    filters, out = check(q)
    point = from_crs(q.lon, q.lat, out)

    async def make() -> Body:
        async with pool(request).connection() as conn:
            await _known_region(conn, filters)
            page = await service.homes(conn, filters=filters, near=point, limit=q.n)
        found = [features.feature(r, out) for r in page.rows]
        origin = features.geometry(point.lon, point.lat, out)
        return Body(_json(features.collection(found, out, {"origin": origin})), GEOJSON)

    return await _serve(request, make=make)


class DetailQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crs: str | None = Field(default=None, description="wgs84 (default) or gcj02")


@api.get("/homes/{code}", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def home_detail(
    request: Request,
    code: Annotated[str, Path(pattern=_CODE, description="the institution code (统一社会信用代码)")],
    q: Annotated[DetailQuery, Query()],
) -> Response:
    """One home: basic information, grade, photos, rooms with their beds, beds by kind, price, address,
    contact."""
    out = parse_crs(q.crs)

    async def make() -> Body:
        async with pool(request).connection() as conn:
            row = await service.home(conn, code=code)
            if row is None:
                raise NotFound("home")
            rooms = await service.rooms(conn, institution_id=row["id"])
            gallery = await photos.listing(conn, institution_id=row["id"])
        body = features.feature(row, out)
        body["coordinate_system"] = features.CRS_NAMES[out]
        body["properties"].update(
            capacity=row["capacity"],
            room_count=len(rooms),
            rooms=[features.room(r) for r in rooms],
            gallery=[{"url": features.PHOTO_URL.format(id=p["id"]), "caption": p["caption"]} for p in gallery],
        )
        return Body(_json(body), GEOJSON)

    return await _serve(request, make=make)


@api.get("/districts", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def districts(request: Request, q: Annotated[DistrictsQuery, Query()]) -> Response:
    """Districts (counties) with matching homes: name, number of homes, and the homes' centroid, for the
    map's labels when no tile source is reachable (there is no boundary data)."""
    filters, out = check(q)

    async def make() -> Body:
        async with pool(request).connection() as conn:
            await _known_region(conn, filters)
            rows = await service.districts(conn, filters=filters)
        return Body(_json(features.collection([features.district(r, out) for r in rows], out)), GEOJSON)

    return await _serve(request, make=make)


@api.get("/export.{fmt}", response_class=Response)
async def export_region(
    request: Request,
    fmt: Annotated[str, Path(pattern="^(csv|geojson)$")],
    q: Annotated[ExportQuery, Query()],
) -> Response:
    """The region's homes as a file: CSV (UTF-8 with BOM, so Excel shows Chinese) or GeoJSON."""
    filters, out = check(q)
    state = state_of(request)

    async def make() -> Body:
        async with pool(request).connection() as conn:
            await _known_region(conn, filters)
            rows = [row async for row in service.all_homes(conn, filters=filters)]
        name = f"homes-{q.region}-{out.value}.{fmt}"
        disposition = (("Content-Disposition", f'attachment; filename="{name}"'),)
        if fmt == "csv":
            return Body(export.csv_bytes(rows, crs=out, lang=q.lang), "text/csv; charset=utf-8", disposition)
        return Body(export.geojson_bytes(rows, crs=out, region=q.region), GEOJSON, disposition)

    return await _serve(request, cost=state.settings.map_export_cost, make=make)


@api.get("/photos/{photo_id}", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def photo(request: Request, photo_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    """A photo of a home. Photos never change (a new one gets a new id), so clients may keep them a day."""
    _no_extra(request, set())

    async def make() -> Body:
        async with pool(request).connection() as conn:
            found = await photos.get(conn, photo_id=photo_id)
        return Body(found.data, found.content_type)

    return await _serve(request, make=make, max_age=86_400)


@api.get("/config")
async def config(request: Request) -> JSONResponse:
    """What the map page needs: the tile source (empty: none, the plain background) and the start view."""
    s = state_of(request).settings
    centre = to_crs(s.map_centre_lon, s.map_centre_lat, s.map_tile_crs)
    return JSONResponse(
        {
            "tile_url": s.map_tile_url,
            "tile_attribution": s.map_tile_attribution,
            "tile_crs": s.map_tile_crs.value,
            "tile_max_zoom": s.map_tile_max_zoom,
            "centre": {"lon": centre.lon, "lat": centre.lat},  # in the tiles' system
            "zoom": s.map_zoom,
        },
        headers={"Cache-Control": "public, max-age=60"},
    )


@api.post("/homes/{code}/photos", status_code=201, responses={413: {}, 415: {}})
async def add_photo(
    *,
    request: Request,
    conn: Conn,
    principal: CurrentPrincipal,
    code: Annotated[str, Path(pattern=_CODE)],
    caption: Annotated[str, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = "",
    position: Annotated[int, Query(ge=0, le=99)] = 0,
) -> dict[str, Any]:
    """Add a photo of the home (heads of the home, admins): the body is the image, the Content-Type its type."""
    # Who may, and what type, before a byte of the body is read; then at most MAX_BYTES + 1 of it.
    home = await photos.may_add(conn, principal=principal, code=code)
    media = photos.check_media(request.headers.get("content-type", ""))
    data = await photos.read_body(request.stream(), content_length=request.headers.get("content-length"))
    photo_id = await photos.add(
        conn,
        principal=principal,
        home=home,
        media=media,
        data=data,
        caption=caption,
        position=position,
    )
    return {"id": photo_id, "url": features.PHOTO_URL.format(id=photo_id)}


@api.delete("/homes/{code}/photos/{photo_id}", status_code=204)
async def remove_photo(
    conn: Conn,
    principal: CurrentPrincipal,
    code: Annotated[str, Path(pattern=_CODE)],
    photo_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> Response:
    await photos.remove(conn, principal=principal, code=code, photo_id=photo_id)
    return Response(status_code=204)


async def _known_region(conn: AsyncConn, filters: HomeFilter) -> None:
    if filters.region is not None and not await service.region_exists(conn, code=filters.region):
        raise Problem(422, "the request is not valid", [FieldError(field="query.region", reason="no such region")])


def _no_extra(request: Request, allowed: set[str]) -> None:
    extra = sorted(k for k in request.query_params if k not in allowed)
    if extra:
        raise Problem(
            422,
            "the request is not valid",
            [FieldError(field=f"query.{k}", reason="not a parameter of this endpoint") for k in extra],
        )


router = APIRouter()
router.include_router(api)
router.include_router(page_router)

__all__ = ["Crs", "LonLat", "MapState", "router"]
