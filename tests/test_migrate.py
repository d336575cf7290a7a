"""Migrations: applied once, recorded, idempotent, and an edited applied migration is refused."""

from __future__ import annotations

from collections.abc import Iterator

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
