"""``eldercare db migrate`` seals the positions an older version stored in clear (before 0024): a wristband's fixes
in ``locations`` and an SOS press's place in the ``sos`` events' detail; ``eldercare db scrub`` then rewrites both
tables. Every position comes out of the seal as it went in, and nothing else of the rows changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.platform_procs import migrate_command, scrub_command
from tests.registry.support import Database, data_key, drop_database, old_database

from eldercare.platform.crypto import EVENT_POSITION, LOCATION_POSITION, Vault
from eldercare.platform.db import positions
from eldercare.platform.stack.model import StackInfo

_T0 = datetime(2026, 11, 1, tzinfo=UTC)
_FIXES = positions.BATCH_ROWS + 700  # more than a batch, over several daily chunks


@pytest.fixture
def old_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Database, int]]:
    """A database of the version before positions were sealed, with fixes and events in clear; and the device."""
    db, home = old_database(stack, monkeypatch, below=24, prefix="ec_pos")
    with psycopg.connect(db.url, autocommit=True) as conn:
        device = conn.execute(
            "INSERT INTO devices (institution_id, code, kind) VALUES (%s, 'WB-OLD-1', 'wristband') RETURNING id",
            (home,),
        ).fetchone()
        gateway = conn.execute(
            "INSERT INTO gateways (institution_id, gateway_id) VALUES (%s, 'gw-old-1') RETURNING id", (home,)
        ).fetchone()
        assert device is not None and gateway is not None
        conn.execute(
            "INSERT INTO locations (time, device_id, lat, lon, accuracy)"
            " SELECT %s + n * interval '2 minutes', %s, 30 + n / 100000.0, 111 - n / 100000.0, n %% 20"
            " FROM generate_series(1, %s) AS n",
            (_T0, device[0], _FIXES),
        )
        # the same fix delivered twice (before frames were deduplicated): both copies are sealed
        conn.execute(
            "INSERT INTO locations (time, device_id, lat, lon) VALUES (%s, %s, 30.5, 111.5), (%s, %s, 30.5, 111.5)",
            (_T0, device[0], _T0, device[0]),
        )
        events = [
            ("sos", {"lat": 30.7123456, "lon": 111.2987654}),
            ("sos", {"lat": None, "lon": None}),  # pressed without a fix
            ("button", {"action": "press"}),
        ]
        for minutes, (kind, detail) in enumerate(events):
            conn.execute(
                "INSERT INTO device_events (time, device_id, gateway_pk, kind, detail) VALUES (%s, %s, %s, %s, %s)",
                (_T0 + timedelta(minutes=minutes), device[0], gateway[0], kind, json.dumps(detail)),
            )
    yield db, int(device[0])
    drop_database(stack, db)


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_migrate_seals_every_position_left_in_clear_and_each_opens_to_what_it_was(
    stack: StackInfo, old_db: tuple[Database, int]
) -> None:
    db, _ = old_db
    key, vault = data_key(stack), Vault(data_key(stack))
    before = sorted(_rows(db.url, "SELECT time, device_id, lat, lon, accuracy FROM locations"))

    refused = migrate_command(db.url, None)
    assert refused.returncode == 1 and "ELDERCARE_DATA_KEY" in refused.stderr, refused
    assert "applied 0024_sealed_positions" in refused.stdout and "Traceback" not in refused.stderr

    done = migrate_command(db.url, key)
    assert done.returncode == 0, done.stderr
    fixes = _FIXES + 2
    assert f"sealed {fixes + 2} row(s) of 2 table(s) that held positions in clear" in done.stdout, done.stdout
    assert f"locations {fixes}, device_events 2" in done.stdout

    sealed = _rows(db.url, "SELECT time, device_id, lat, lon, accuracy, position_enc FROM locations")
    assert all(lat is None and lon is None and enc is not None for _, _, lat, lon, _, enc in sealed)
    opened = sorted((t, d, *vault.open_position(enc, column=LOCATION_POSITION), acc) for t, d, _, _, acc, enc in sealed)
    assert opened == before

    events = _rows(db.url, "SELECT kind, detail, position_enc FROM device_events ORDER BY time")
    assert [(kind, detail) for kind, detail, _ in events] == [("sos", {}), ("sos", {}), ("button", {"action": "press"})]
    assert vault.open_position(events[0][2], column=EVENT_POSITION) == (30.7123456, 111.2987654)
    assert events[1][2] is None and events[2][2] is None

    again = migrate_command(db.url, None)  # nothing left in clear: no key needed
    assert again.returncode == 0 and again.stdout.strip() == "up to date", again


def test_scrub_waits_for_the_seal_then_rewrites_the_position_tables(
    stack: StackInfo, old_db: tuple[Database, int]
) -> None:
    db, _ = old_db
    early = migrate_command(db.url, None)  # the SQL only: the positions stay in clear for want of the key
    assert early.returncode == 1
    refused = scrub_command(db.url)
    assert refused.returncode == 1 and "locations" in refused.stderr and "db migrate" in refused.stderr, refused

    assert migrate_command(db.url, data_key(stack)).returncode == 0
    chunks = "SELECT relfilenode FROM pg_class WHERE oid IN (SELECT tableoid FROM locations)"
    files_before = set(_rows(db.url, chunks))
    scrubbed = scrub_command(db.url)
    assert scrubbed.returncode == 0, scrubbed.stderr
    assert "locations" in scrubbed.stdout and "device_events" in scrubbed.stdout
    assert files_before.isdisjoint(_rows(db.url, chunks))  # every chunk of fixes was written anew
