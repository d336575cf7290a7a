"""The map's queries: homes with their free beds right now, nearest homes, one home's detail, districts.

"Free right now" (see docs/map.md): a bed in a room of the home (not a home-care bed in an elder's own
home), not retired, with no stay that has not ended (a current stay, or one booked to start later), and
whose bed sensor does not show someone lying in it now (its newest reading in the last 15 minutes says
presence). An assigned bed is never free, even when it is empty tonight (hospital, home visit).

The beds of a home are counted in a LATERAL subquery, so a nearest-first scan of the spatial index
counts only the homes it returns; the free-bed filter applies to the counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.map.geo import LonLat
from eldercare.platform.map.models import HomeFilter

PRESENCE_WINDOW = timedelta(minutes=15)
MAX_EXPORT = 200_000

# Whether bed ``b`` is free now (see the module's docstring). %(presence_window)s is PRESENCE_WINDOW.
BED_FREE = sql.SQL(
    "(NOT EXISTS (SELECT 1 FROM bed_assignments a WHERE a.bed_id = b.id AND a.during && tstzrange(now(), NULL))"
    " AND NOT EXISTS (SELECT 1 FROM device_bindings d WHERE d.bed_id = b.id AND d.during @> now()"
    " AND (SELECT r.presence FROM bed_readings r WHERE r.device_id = d.device_id"
    " AND r.time > now() - %(presence_window)s ORDER BY r.time DESC LIMIT 1)))"
)
# The beds of a home's rooms that are in service now.
BEDS_IN_SERVICE = sql.SQL("b.room_id IS NOT NULL AND (b.retired_at IS NULL OR b.retired_at > now())")

_COUNTS = sql.SQL(
    "SELECT count(*) FILTER (WHERE fb.kind = 'nursing')::int AS nursing_total,"
    " count(*) FILTER (WHERE fb.kind = 'nursing' AND fb.free)::int AS nursing_free,"
    " count(*) FILTER (WHERE fb.kind = 'ordinary')::int AS ordinary_total,"
    " count(*) FILTER (WHERE fb.kind = 'ordinary' AND fb.free)::int AS ordinary_free"
    " FROM (SELECT b.kind, {free} AS free FROM beds b WHERE b.institution_id = i.id AND {in_service}) fb"
).format(free=BED_FREE, in_service=BEDS_IN_SERVICE)

_COLUMNS = sql.SQL(
    "i.id, i.code, i.name, i.kind::text AS kind, i.address, i.region_code, r6.name AS district,"
    " r4.name AS city, r2.name AS province, i.lon, i.lat, i.star_grade, i.capacity,"
    " i.price_min::float8 AS price_min, i.price_max::float8 AS price_max, i.services, i.contact_phone,"
    " c.nursing_total, c.nursing_free, c.ordinary_total, c.ordinary_free,"
    " ARRAY(SELECT p.id FROM institution_photos p WHERE p.institution_id = i.id ORDER BY p.position, p.id)"
    " AS photo_ids"
)
_REGION_JOINS = sql.SQL(
    " LEFT JOIN regions r6 ON r6.code = left(i.region_code, 6)"
    " LEFT JOIN regions r4 ON r4.code = left(i.region_code, 4)"
    " LEFT JOIN regions r2 ON r2.code = left(i.region_code, 2)"
)
_EARTH = sql.SQL("map_earth(i.lat, i.lon)")
_FROM_POINT = sql.SQL("map_earth(%(lat)s::float8, %(lon)s::float8)")


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    more: bool  # there are rows beyond the limit


def _home_conditions(f: HomeFilter, params: dict[str, Any]) -> list[sql.Composable]:
    """Conditions on the ``institutions i`` row alone (the cheap ones, before counting beds)."""
    conds: list[sql.Composable] = []
    if f.region is not None:
        # The prefix as a range in byte order, which the text_pattern_ops index serves also when the
        # prefix is a bound parameter (LIKE $1 is planned as a filter on a full scan).
        conds.append(sql.SQL("i.region_code ~>=~ %(region_lo)s AND i.region_code ~<~ %(region_hi)s"))
        params.update(region_lo=f.region, region_hi=f.region[:-1] + chr(ord(f.region[-1]) + 1))
    if f.kinds:
        conds.append(sql.SQL("i.kind = ANY(%(kinds)s::institution_kind[])"))
        params["kinds"] = [k.value for k in f.kinds]
    if f.grade_min is not None:
        conds.append(sql.SQL("i.star_grade >= %(grade_min)s"))
        params["grade_min"] = f.grade_min
    if f.grade_max is not None:
        conds.append(sql.SQL("i.star_grade <= %(grade_max)s"))
        params["grade_max"] = f.grade_max
    if f.price_max is not None:
        conds.append(sql.SQL("coalesce(i.price_min, i.price_max) <= %(price_max)s"))
        params["price_max"] = f.price_max
    if f.price_min is not None:
        conds.append(sql.SQL("coalesce(i.price_max, i.price_min) >= %(price_min)s"))
        params["price_min"] = f.price_min
    if f.services:
        conds.append(sql.SQL("i.services @> %(services)s::text[]"))
        params["services"] = [s.value for s in f.services]
    if f.bbox is not None:
        conds.append(
            sql.SQL("i.lat IS NOT NULL AND point(i.lon, i.lat) <@ box(point(%(w)s, %(s)s), point(%(e)s, %(n)s))")
        )
        params.update(w=f.bbox.west, s=f.bbox.south, e=f.bbox.east, n=f.bbox.north)
    return conds


def _bed_conditions(f: HomeFilter, params: dict[str, Any]) -> list[sql.Composable]:
    if not f.needs_bed_counts:
        return []
    params["free_min"] = f.free_min
    match f.free_kind:
        case None:
            return [sql.SQL("c.nursing_free + c.ordinary_free >= %(free_min)s")]
        case kind:
            return [sql.SQL("c.{} >= %(free_min)s").format(sql.Identifier(f"{kind.value}_free"))]


def _where(conds: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")


def _query(
    f: HomeFilter,
    *,
    near: LonLat | None,
    limit: int,
    offset: int,
    params: dict[str, Any],
    extra: tuple[sql.Composable, ...] = (),
) -> sql.Composed:
    """Homes matching ``f``: nearest first from ``near``, else by district and name.

    Without a free-bed filter the homes are chosen (and limited) before their beds are counted; with one,
    the counts decide, and nearest-first scans stop as soon as ``limit`` homes qualify.
    """
    params["presence_window"] = PRESENCE_WINDOW
    params.update(limit=limit, offset=offset)
    home_conds = [*_home_conditions(f, params), *extra]
    bed_conds = _bed_conditions(f, params)
    order: sql.Composable
    distance: sql.Composable
    if near is not None:
        params.update(lat=near.lat, lon=near.lon)
        home_conds = [sql.SQL("i.lat IS NOT NULL"), *home_conds]
        order = sql.SQL("{earth} <-> {point}").format(earth=_EARTH, point=_FROM_POINT)
        distance = sql.SQL(", map_surface_m({earth} <-> {point}) AS distance_m").format(earth=_EARTH, point=_FROM_POINT)
    else:
        order = sql.SQL("i.region_code, i.name, i.id")
        distance = sql.SQL("")
    page = sql.SQL(" ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s").format(order=order)
    if bed_conds:
        return sql.SQL(
            "SELECT {columns}{distance} FROM institutions i CROSS JOIN LATERAL ({counts}) c{joins}{where}{page}"
        ).format(
            columns=_COLUMNS,
            distance=distance,
            counts=_COUNTS,
            joins=_REGION_JOINS,
            where=_where(home_conds + bed_conds),
            page=page,
        )
    return sql.SQL(
        "SELECT {columns}{distance} FROM (SELECT i.* FROM institutions i{where}{page}) i"
        " CROSS JOIN LATERAL ({counts}) c{joins} ORDER BY {order}"
    ).format(
        columns=_COLUMNS,
        distance=distance,
        where=_where(home_conds),
        page=page,
        counts=_COUNTS,
        joins=_REGION_JOINS,
        order=order,
    )


async def homes(conn: AsyncConn, *, filters: HomeFilter, near: LonLat | None, limit: int, offset: int = 0) -> Page:
    """One page of homes (``limit`` of them at most) and whether more match."""
    params: dict[str, Any] = {}
    query = _query(filters, near=near, limit=limit + 1, offset=offset, params=params)
    async with _interactive(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    return Page(rows=rows[:limit], more=len(rows) > limit)


@asynccontextmanager
async def _interactive(conn: AsyncConn) -> AsyncIterator[None]:
    """A transaction planned for a quick answer: no JIT compilation (10-40 ms to compile, more than the
    query runs, once a large district's estimated cost passes jit_above_cost) and no parallel workers
    (starting one took 0.6 s on the loaded 2-core machine; these queries read a few thousand rows)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0")  # one round trip
        yield


async def all_homes(conn: AsyncConn, *, filters: HomeFilter, batch: int = 2000) -> AsyncIterator[dict[str, Any]]:
    """Every matching home (for exports), by district and name, fetched in batches by a server-side cursor."""
    params: dict[str, Any] = {}
    query = _query(filters, near=None, limit=MAX_EXPORT, offset=0, params=params)
    async with conn.transaction(), conn.cursor(name="map_export", row_factory=dict_row) as cur:
        cur.itersize = batch
        await cur.execute(query, params)
        async for row in cur:
            yield row


async def region_exists(conn: AsyncConn, *, code: str) -> bool:
    row = await (await conn.execute("SELECT 1 FROM regions WHERE code = %s", (code,))).fetchone()
    return row is not None


async def region_path(conn: AsyncConn, *, code: str) -> list[tuple[str, str]]:
    """(code, name) of the province, city and county of ``code`` that exist, top first."""
    prefixes = [code[:n] for n in (2, 4, 6, 9) if len(code) >= n]
    cur = await conn.execute("SELECT code, name FROM regions WHERE code = ANY(%s) ORDER BY level", (prefixes,))
    return [(str(c), str(n)) for c, n in await cur.fetchall()]


async def home(conn: AsyncConn, *, code: str) -> dict[str, Any] | None:
    """One home by its institution code (统一社会信用代码), with its bed counts and region names."""
    params: dict[str, Any] = {"code": code}
    query = _query(HomeFilter(), near=None, limit=1, offset=0, params=params, extra=(sql.SQL("i.code = %(code)s"),))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def rooms(conn: AsyncConn, *, institution_id: int) -> list[dict[str, Any]]:
    """The home's rooms with their beds in service, by kind, and how many of them are free now."""
    query = sql.SQL(
        "SELECT bu.name AS building, fl.name AS floor, ro.name AS room,"
        " count(*) FILTER (WHERE b.kind = 'nursing')::int AS nursing_total,"
        " count(*) FILTER (WHERE b.kind = 'nursing' AND b.free)::int AS nursing_free,"
        " count(*) FILTER (WHERE b.kind = 'ordinary')::int AS ordinary_total,"
        " count(*) FILTER (WHERE b.kind = 'ordinary' AND b.free)::int AS ordinary_free"
        " FROM (SELECT b.room_id, b.kind, {free} AS free FROM beds b"
        " WHERE b.institution_id = %(id)s AND {in_service}) b"
        " JOIN rooms ro ON ro.id = b.room_id JOIN floors fl ON fl.id = ro.floor_id"
        " JOIN buildings bu ON bu.id = fl.building_id"
        " GROUP BY bu.name, fl.level, fl.name, ro.name ORDER BY bu.name, fl.level, fl.name, ro.name"
    ).format(free=BED_FREE, in_service=BEDS_IN_SERVICE)
    async with _interactive(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, {"id": institution_id, "presence_window": PRESENCE_WINDOW})
        return await cur.fetchall()


async def districts(conn: AsyncConn, *, filters: HomeFilter, limit: int = 4000) -> list[dict[str, Any]]:
    """Counties (6-digit codes) with matching homes in view: name, number of homes and their centroid.

    The centroid is the mean WGS-84 position of all the county's matching homes (not only those in the
    box), so a label stays put while the map pans. There is no boundary data; the homes stand in for it.
    """
    params: dict[str, Any] = {"limit": limit}
    conds = _home_conditions(filters, params)
    unboxed = _home_conditions(replace(filters, bbox=None), params)
    query = sql.SQL(
        "WITH shown AS (SELECT DISTINCT left(i.region_code, 6) AS code FROM institutions i{where})"
        " SELECT r.code, r.name, count(*)::int AS homes, avg(i.lon) AS lon, avg(i.lat) AS lat"
        " FROM shown JOIN regions r ON r.code = shown.code"
        " JOIN institutions i ON left(i.region_code, 6) = shown.code AND i.lat IS NOT NULL{also}"
        " GROUP BY r.code, r.name ORDER BY r.code LIMIT %(limit)s"
    ).format(
        where=_where(conds),
        also=sql.SQL("").join(sql.SQL(" AND ") + c for c in unboxed),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
