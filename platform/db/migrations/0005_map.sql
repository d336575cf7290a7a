-- The facility map (养老地图, issue 10): a spatial index on the homes' WGS-84 positions, their photos, and
-- the indexes that keep "free beds right now" cheap to count. See docs/map.md.
-- Forward-only: a later change is a new file, never an edit of this one.

-- contrib cube is "trusted" (PostgreSQL 13+): the database owner creates it, no superuser needed.
-- contrib earthdistance is not trusted, so its ll_to_earth() is written out here on top of cube.
CREATE EXTENSION IF NOT EXISTS cube;

-- A WGS-84 position as an earth-centred 3-D point in metres on the mean-radius sphere: the construction
-- of earthdistance's ll_to_earth(). The straight (chord) distance between two such points grows with
-- their great-circle distance, so a GiST index on it answers "nearest first" (ORDER BY <->) exactly.
-- Plain SQL and IMMUTABLE, so an index can be built on it and the planner inlines it.
CREATE FUNCTION map_earth(lat double precision, lon double precision) RETURNS cube
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT cube(ARRAY[
        6371008.8 * cos(radians(lat)) * cos(radians(lon)),
        6371008.8 * cos(radians(lat)) * sin(radians(lon)),
        6371008.8 * sin(radians(lat))
    ])
$$;

-- A chord of the sphere above, as metres along the surface (great-circle distance).
CREATE FUNCTION map_surface_m(chord double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT 2 * 6371008.8 * asin(least(1.0, chord / (2 * 6371008.8)))
$$;

-- Nearest-first and radius queries (KNN on the 3-D point).
CREATE INDEX institutions_earth ON institutions USING gist (map_earth(lat, lon)) WHERE lat IS NOT NULL;
-- The map's view box (lon/lat rectangle), with the built-in point GiST operator class.
CREATE INDEX institutions_lonlat ON institutions USING gist (point(lon, lat)) WHERE lat IS NOT NULL;

-- Photos of a home (its look: 外观, rooms, garden), served by the platform itself so the public map loads
-- nothing from elsewhere. Heads of the home and admins add them; the public sees them.
CREATE TABLE institution_photos (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id bigint NOT NULL REFERENCES institutions (id),
    position       smallint NOT NULL DEFAULT 0 CHECK (position BETWEEN 0 AND 99),
    caption        text NOT NULL DEFAULT '' CHECK (length(caption) <= 200),
    content_type   text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    data           bytea NOT NULL CHECK (length(data) BETWEEN 1 AND 4194304),
    sha256         bytea NOT NULL CHECK (length(sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX institution_photos_institution ON institution_photos (institution_id, position, id);

-- "Is anyone lying in this unassigned bed?": the bed sensors watching a bed, found by bed.
CREATE INDEX device_bindings_bed ON device_bindings (bed_id) WHERE bed_id IS NOT NULL;
