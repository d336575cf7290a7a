"""The database side: the extension the migration needs is trusted (it ran as the database owner), the
spatial indexes are there and used, and the database's distance agrees with the haversine formula."""

from __future__ import annotations

import psycopg
import pytest
from tests.map.conftest import Api

from eldercare.platform.map import geo


def test_migration_ran_as_the_owner_with_a_trusted_extension(api: Api) -> None:
    with psycopg.connect(api.db.url) as conn:
        row = conn.execute(
            "SELECT r.rolsuper, e.extname, (SELECT trusted FROM pg_available_extension_versions v"
            " WHERE v.name = e.extname AND v.version = e.extversion)"
            " FROM pg_roles r, pg_extension e WHERE r.rolname = current_user AND e.extname = 'cube'"
        ).fetchone()
        assert row == (False, "cube", True)
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'earthdistance'").fetchone() == (0,)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT id FROM institutions i WHERE lat IS NOT NULL"
            " ORDER BY map_earth(lat, lon) <-> map_earth(30.7, 111.29) LIMIT 10",
            "institutions_earth",
        ),
        (
            "SELECT id FROM institutions i WHERE lat IS NOT NULL"
            " AND point(lon, lat) <@ box(point(111, 30), point(112, 31))",
            "institutions_lonlat",
        ),
        ("SELECT id FROM institutions i WHERE region_code LIKE '4205%'", "institutions_region"),
        ("SELECT 1 FROM device_bindings d WHERE d.bed_id = 1 AND d.during @> now()", "device_bindings_bed"),
    ],
)
def test_the_indexes_serve_the_maps_queries(api: Api, query: str, index: str) -> None:
    with psycopg.connect(api.db.url) as conn:
        # The test world is tiny, so tell the planner that scanning is expensive; a plan without the
        # index would still scan, which is what this would catch.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN {query}").fetchall())
    assert index in plan, plan


@pytest.mark.parametrize(
    ("a", "b"),
    [((111.29, 30.70), (114.316, 30.554)), ((116.4074, 39.9042), (121.4737, 31.2304)), ((87.6, 43.8), (126.6, 45.8))],
)
def test_database_distance_is_the_great_circle(api: Api, a: tuple[float, float], b: tuple[float, float]) -> None:
    with psycopg.connect(api.db.url) as conn:
        row = conn.execute(
            "SELECT map_surface_m(map_earth(%s, %s) <-> map_earth(%s, %s))", (a[1], a[0], b[1], b[0])
        ).fetchone()
    assert row is not None
    assert row[0] == pytest.approx(geo.distance_m(geo.LonLat(*a), geo.LonLat(*b)), rel=1e-9)
