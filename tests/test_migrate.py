"""Migrations: applied once, recorded, idempotent, and an edited applied migration is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from eldercare.platform.db import migrate as mig
from eldercare.platform.stack.model import StackInfo


@pytest.fixture
def fresh_db(stack: StackInfo) -> Iterator[str]:
    """A new empty database on the test stack (owned by the app user), dropped afterwards."""
    name = "migrate_test"
    with psycopg.connect(stack.admin_database_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name} OWNER eldercare")
        with psycopg.connect(stack.admin_database_url.replace("/eldercare?", f"/{name}?"), autocommit=True) as db:
            db.execute("CREATE EXTENSION timescaledb")
    yield stack.database_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(stack.admin_database_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migrate_applies_once_and_loads_regions(fresh_db: str) -> None:
    first = mig.migrate(fresh_db)
    assert [m.version for m in first] == [m.version for m in mig.available()]
    assert mig.migrate(fresh_db) == []
    with psycopg.connect(fresh_db) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        hypertables = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        regions = conn.execute("SELECT level, count(*) FROM regions GROUP BY level ORDER BY level").fetchall()
        yichang = conn.execute("SELECT name, parent_code FROM regions WHERE code = '420502'").fetchone()
    assert [r[0] for r in recorded] == [m.version for m in mig.available()]
    assert {"bed_readings", "device_events", "device_readings", "locations"} <= hypertables
    assert "uplink_frames" not in hypertables  # 0002: keyed by (gateway, epoch, seq) alone, an ordinary table
    assert regions == [(1, 31), (2, 342), (3, 2978)]
    assert yichang == ("西陵区", "4205")


def test_an_edited_applied_migration_is_refused(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mig.migrate(fresh_db)
    original = mig.available()
    edited = [mig.Migration(m.version, m.name, m.sql + "\n-- edited") if m.version == 1 else m for m in original]
    monkeypatch.setattr(mig, "available", lambda: edited)
    with pytest.raises(mig.MigrationError, match="has changed"):
        mig.migrate(fresh_db)


def test_the_database_refuses_a_resident_in_two_beds(fresh_db: str) -> None:
    mig.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        inst = conn.execute(
            "INSERT INTO institutions (code, name, kind, region_code) VALUES"
            " ('91350100M000100Y43', 'h', 'residential_home', '420502') RETURNING id"
        ).fetchone()
        assert inst is not None
        beds = [
            conn.execute(
                "INSERT INTO beds (institution_id, code, label, kind) VALUES (%s, %s, %s, 'nursing') RETURNING id",
                (inst[0], c, c),
            ).fetchone()
            for c in ("B0000000001", "B0000000002")
        ]
        resident = conn.execute(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex) VALUES (%s, 'P0000000001', '\\x00', '\\x00', %s,"
            " '420502********1234', '1940-01-01', 'male') RETURNING id",
            (inst[0], b"\x00" * 32),
        ).fetchone()
        assert resident is not None and beds[0] is not None and beds[1] is not None
        conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, '[2026-01-01,)')",
            (beds[0][0], resident[0]),
        )
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute(
                "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, '[2026-02-01,2026-03-01)')",
                (beds[1][0], resident[0]),
            )


def test_raw_dropped_starts_as_what_an_earlier_retention_job_may_have_dropped(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0009 records the chunks retention drops from then on; for before, it records (as dropped) everything older
    than each raw table's oldest chunk, or than the job's last run for an empty table, if the job ever ran."""
    everything = mig.available()
    monkeypatch.setattr(mig, "available", lambda: [m for m in everything if m.version < 9])
    mig.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_jobs (job, last_run_at) VALUES ('retention', '2026-06-01T00:00Z'),"
            " ('rollups', '2026-06-02T00:00Z')"
        )
        conn.execute("INSERT INTO bed_readings (time, device_id, presence) VALUES ('2026-05-10T05:00Z', 1, true)")
    monkeypatch.setattr(mig, "available", lambda: everything)
    assert [m.version for m in mig.migrate(fresh_db)] == [m.version for m in everything if m.version >= 9]
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT table_name, range_start = '-infinity', range_end FROM raw_dropped ORDER BY table_name"
        ).fetchall()
    june = datetime(2026, 6, 1, tzinfo=UTC)
    assert [(t, s, e) for t, s, e in rows] == [
        ("accel_chunks", True, june),
        ("bed_readings", True, datetime(2026, 5, 10, tzinfo=UTC)),  # its oldest chunk's start (1-day chunks)
        ("device_events", True, june),
        ("device_readings", True, june),
        ("locations", True, june),
    ]


def test_raw_dropped_starts_empty_where_retention_never_ran(fresh_db: str) -> None:
    mig.migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT count(*) FROM raw_dropped").fetchone()
    assert row == (0,)
