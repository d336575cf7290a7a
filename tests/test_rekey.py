"""A rotation of the data key, end to end against the real database: a world sealed with the old key (residents with
names and ID numbers, contacts, channels, alarms with their text, hospital stays, deaths, discharges, parked messages,
positions, bed readings and roll-ups, the subsidy registers' hashes), rotated by ``eldercare db rekey``; then no sealed
column of the catalog holds a value the new key alone does not open to what it was, the ID number look-up works
during the rotation and after, and the old key is forgotten."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.registry.support import Database, create_database, drop_database

from eldercare.devices import codes
from eldercare.platform.crypto import (
    BED_DAILY_VITALS,
    BED_HOURLY_VITALS,
    EVENT_POSITION,
    INBOX_POSITION,
    LOCATION_POSITION,
    PARKED_PAYLOAD,
    DecryptionError,
    Vault,
    VitalsSummary,
)
from eldercare.platform.db import keycheck, rekey
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.sealed_vitals import micros_of, seal_reading, summary_row
from eldercare.platform.services_apply.service import find_applicant
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import seed_home

OLD, NEW = os.urandom(32), os.urandom(32)
_T0 = datetime(2026, 3, 1, tzinfo=UTC)
_READINGS = 40  # with batches of 7 (below): several batches, ties across a batch's end
_NOBODY = "420502194501010014"  # a register entry that names nobody registered here

# How the test opens each sealed column, by (table, column): (vault column, how the row is named for a value bound
# to it). A sealed column of the catalog missing here fails the test: add it here and to rekey.sealed_tables().
_GCM: dict[tuple[str, str], str] = {
    ("residents", "name_enc"): "residents.name",
    ("residents", "id_number_enc"): "residents.id_number",
    ("resident_contacts", "name_enc"): "resident_contacts.name",
    ("resident_contacts", "phone_enc"): "resident_contacts.phone",
    ("notification_channels", "address_enc"): "notification_channels.address",
    ("notification_channels", "secret_enc"): "notification_channels.secret",
    ("alarms", "detail_enc"): "alarms.detail",
    ("alarms", "outcome_enc"): "alarms.outcome",
    ("alarm_changes", "note_enc"): "alarm_changes.note",
    ("alarm_inbox", "position_enc"): INBOX_POSITION,
    ("hospital_stays", "hospital_enc"): "hospital_stays.hospital",
    ("hospital_stays", "note_enc"): "hospital_stays.note",
    ("deaths", "place_enc"): "deaths.place",
    ("bed_assignments", "end_note_enc"): "bed_assignments.end_note",
    ("resident_visits", "note_enc"): "resident_visits.note",
    ("parked_messages", "payload_enc"): PARKED_PAYLOAD,
    ("locations", "position_enc"): LOCATION_POSITION,
    ("device_events", "position_enc"): EVENT_POSITION,
}
_SUMMARIES = {("bed_hourly", "vitals_enc"): BED_HOURLY_VITALS, ("bed_daily", "vitals_enc"): BED_DAILY_VITALS}
_BLOCKS = {("bed_readings", "vitals_enc")}
_HASHES = {
    ("residents", "id_number_hash"),
    ("death_register", "id_number_hash"),
    ("hardship_register", "id_number_hash"),
}


@dataclass(frozen=True, slots=True)
class World:
    db: Database
    numbers: list[str]  # the residents' ID numbers
    institution: int


@pytest.fixture
def world(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setattr(rekey, "BATCH_ROWS", 7)
    monkeypatch.setattr(rekey, "READING_BATCH_ROWS", 7)
    db = create_database(stack, "ec_rekey")
    try:
        yield _seed(stack, db, Vault(OLD))
    finally:
        drop_database(stack, db)


def _seed(stack: StackInfo, db: Database, old: Vault) -> World:
    keycheck.check_data_key(db.url, old)

    async def home() -> int:
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
            seeded = await seed_home(
                conn, vault=old, broker=LocalBroker(stack.state_dir), rng=random.Random(11), staff_password="x" * 12
            )
            return seeded.institution_id

    institution = asyncio.run(home())
    with psycopg.connect(db.url, autocommit=True) as conn:
        residents = conn.execute("SELECT id, id_number_enc FROM residents ORDER BY id").fetchall()
        numbers = [old.decrypt(bytes(r[1]), column="residents.id_number") for r in residents]
        first = residents[0][0]
        user = conn.execute("SELECT id FROM users LIMIT 1").fetchone()
        device = conn.execute("SELECT id FROM devices WHERE kind = 'bed_sensor' ORDER BY id LIMIT 1").fetchone()
        gateway = conn.execute("SELECT id FROM gateways LIMIT 1").fetchone()
        assert user is not None and device is not None and gateway is not None
        dev = device[0]
        conn.execute(
            "INSERT INTO resident_contacts (resident_id, kind, name_enc, phone_enc, phone_masked, consent_at)"
            " VALUES (%s, 'family', %s, %s, '138****0000', now())",
            (
                first,
                old.encrypt("李四", column="resident_contacts.name"),
                old.encrypt("13800000000", column="resident_contacts.phone"),
            ),
        )
        conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc, secret_enc)"
            " VALUES (%s, 'webhook_wecom', %s, %s)",
            (
                user[0],
                old.encrypt("https://hook.example/x", column="notification_channels.address"),
                old.encrypt("s3cret", column="notification_channels.secret"),
            ),
        )
        for i in range(10):
            alarm = conn.execute(
                "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at,"
                " detail_enc, outcome_enc)"
                " VALUES (%s, 'fall', 'urgent', now(), now(), %s, %s) RETURNING id",
                (
                    institution,
                    old.encrypt(json.dumps({"n": i}), column="alarms.detail"),
                    old.encrypt(f"outcome {i}", column="alarms.outcome"),
                ),
            ).fetchone()
            assert alarm is not None
            conn.execute(
                "INSERT INTO alarm_changes (alarm_id, actor, to_state, note_enc) VALUES (%s, 'system', 'raised', %s)",
                (alarm[0], old.encrypt(f"note {i}", column="alarm_changes.note")),
            )
        conn.execute(
            "INSERT INTO alarm_inbox (event_time, device_id, institution_id, kind, position_enc)"
            " VALUES (now(), %s, %s, 'sos', %s)",
            (dev, institution, old.seal_position(30.5, 111.25, column=INBOX_POSITION)),
        )
        conn.execute(
            "INSERT INTO hospital_stays (resident_id, hospital, during, hospital_enc, note_enc)"
            " VALUES (%s, '', tstzrange(now() - interval '3 days', now() - interval '2 days'), %s, %s)",
            (
                first,
                old.encrypt("市一医院", column="hospital_stays.hospital"),
                old.encrypt("肺炎", column="hospital_stays.note"),
            ),
        )
        conn.execute(
            "UPDATE bed_assignments SET end_note_enc = %s, during = tstzrange(lower(during), now())"
            ", end_reason = 'discharge'"
            " WHERE resident_id = %s",
            (old.encrypt("出院", column="bed_assignments.end_note"), first),
        )
        conn.execute(
            "INSERT INTO resident_visits (resident_id, visited_at, visited_by, mode, outcome, note_enc)"
            " VALUES (%s, now() - interval '1 day', %s, 'in_person', 'needs_follow_up', %s)",
            (first, user[0], old.encrypt("膝盖痛", column="resident_visits.note")),
        )
        conn.execute(
            "INSERT INTO deaths (resident_id, died_at, source, place_enc) VALUES (%s, now(), 'institution', %s)",
            (residents[-1][0], old.encrypt("院内", column="deaths.place")),
        )
        conn.execute(
            "INSERT INTO parked_messages (kind, topic, reason, payload_enc) VALUES ('dead_letter', 't/x', 'bad', %s)",
            (old.seal_bytes(b"\x00raw", column=PARKED_PAYLOAD),),
        )
        sealer = old.vitals_sealer()
        for i in range(_READINGS):
            when = _T0 + timedelta(seconds=(i // 3) * 10)  # three readings a time: ties
            conn.execute(
                "INSERT INTO bed_readings (time, device_id, presence, vitals_enc) VALUES (%s, %s, true, %s)",
                (when, dev + i % 3, seal_reading(sealer, when, dev + i % 3, 60.0 + i, 15.5)),
            )
            conn.execute(
                "INSERT INTO locations (time, device_id, position_enc) VALUES (%s, %s, %s)",
                (when, dev, old.seal_position(30.0 + i / 100, 111.0, column=LOCATION_POSITION)),
            )
        for i in range(9):
            when = _T0 + timedelta(minutes=i // 2)
            conn.execute(
                "INSERT INTO device_events (time, device_id, gateway_pk, kind, position_enc)"
                " VALUES (%s, %s, %s, 'sos', %s)",
                (when, dev, gateway[0], old.seal_position(31.0, 112.0 + i / 100, column=EVENT_POSITION)),
            )
        for h in range(9):
            bucket = _T0 + timedelta(hours=h)
            summary = VitalsSummary(50.0 + h, 90.0, 7000.0, 12.0, 20.0, 1600.0)
            conn.execute(
                "INSERT INTO bed_hourly (bucket, device_id, samples, observed_minutes, occupied_minutes,"
                " hr_count, rr_count, vitals_enc)"
                " VALUES (%s, %s, 360, 60, 60, 100, 100, %s)",
                (bucket, dev, old.seal_vitals_summary(summary, column=BED_HOURLY_VITALS, row=summary_row(dev, bucket))),
            )
        day = _T0.date()
        conn.execute(
            "INSERT INTO bed_daily (day, device_id, samples, observed_minutes, occupied_minutes,"
            " hr_count, rr_count, vitals_enc)"
            " VALUES (%s, %s, 8640, 1440, 1440, 100, 100, %s)",
            (
                day,
                dev,
                old.seal_vitals_summary(
                    VitalsSummary(1, 2, 3, 4, 5, 6), column=BED_DAILY_VITALS, row=summary_row(dev, day)
                ),
            ),
        )
        region = conn.execute("SELECT region_code FROM institutions WHERE id = %s", (institution,)).fetchone()
        assert region is not None
        imports = [
            conn.execute(
                "INSERT INTO subsidy_register_imports (register, region_code, rows, added) VALUES (%s, %s, 2, 2)"
                " RETURNING id",
                (register, region[0]),
            ).fetchone()
            for register in ("deaths", "hardship")
        ]
        for number in (numbers[0], _NOBODY):
            conn.execute(
                "INSERT INTO death_register (id_number_hash, died_on, source, import_id)"
                " VALUES (%s, '2026-01-02', 'funeral', %s)",
                (old.lookup_hash(number), imports[0][0] if imports[0] else None),
            )
        conn.execute(
            "INSERT INTO hardship_register (id_number_hash, category, valid, import_id)"
            " VALUES (%s, 'dibao', '[2025-01-01,2026-12-31]', %s)",
            (old.lookup_hash(numbers[1]), imports[1][0] if imports[1] else None),
        )
        opened = _open_all(conn, old)
    assert opened  # the world opens with the old key
    return World(db, numbers, institution)


def _sealed_columns(conn: psycopg.Connection[tuple[Any, ...]]) -> set[tuple[str, str]]:
    """Every bytea column of the schema whose name ends in ``_enc``, and every ID number hash: from the catalog."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND data_type = 'bytea' AND (column_name LIKE '%\\_enc' OR column_name = 'id_number_hash')"
        " AND table_name NOT LIKE '\\_%'"
    ).fetchall()
    return {(t, c) for t, c in rows}


def _open_all(conn: psycopg.Connection[tuple[Any, ...]], vault: Vault) -> dict[tuple[str, str], list[object]]:
    """Every value of every sealed column of the catalog, opened with ``vault`` (raises on one it does not open)."""
    found: dict[tuple[str, str], list[object]] = {}
    for table, column in sorted(_sealed_columns(conn)):
        key = (table, column)
        if key in _HASHES:
            continue
        values: list[object] = []
        if key in _GCM:
            for (blob,) in conn.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY 1"):
                values.append(vault.open_bytes(bytes(blob), column=_GCM[key]))
        elif key in _SUMMARIES:
            period = "bucket" if table == "bed_hourly" else "day"
            for dev, when, blob in conn.execute(f"SELECT device_id, {period}, {column} FROM {table} ORDER BY 1, 2"):
                values.append(vault.open_vitals_summary(blob, column=_SUMMARIES[key], row=summary_row(dev, when)))
        elif key in _BLOCKS:
            rows = conn.execute("SELECT time, device_id, vitals_enc FROM bed_readings ORDER BY 1, 2").fetchall()
            opened = vault.open_vitals(
                [micros_of(r[0]) for r in rows], [r[1] for r in rows], [bytes(r[2]) for r in rows]
            )
            if not opened.ok.all():
                raise DecryptionError(f"{(~opened.ok).sum()} bed reading(s) do not open")
            values = [*opened.hr.tolist(), *opened.rr.tolist()]
        else:
            pytest.fail(f"{table}.{column} is a sealed column this test does not know: add it here and to rekey")
        assert values, f"the world seeds no value of {table}.{column}"
        found[key] = sorted(values, key=repr)
    return found


def _hashes(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> set[bytes]:
    return {bytes(r[0]) for r in conn.execute(f"SELECT id_number_hash FROM {table}")}


def _applicant(db: Database, vault: Vault, number: str) -> bool:
    async def find() -> bool:
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
            row = await conn.execute(
                "SELECT name_enc FROM residents WHERE id_number_hash = ANY(%s)", (vault.lookup_hashes(number),)
            )
            blob = await row.fetchone()
            assert blob is not None
            name = vault.decrypt(bytes(blob[0]), column="residents.name")
            found = await find_applicant(conn, vault=vault, name=name, id_number=number, today=date.today())
            return found is not None

    return asyncio.run(find())


def _rekey_command(db: Database, *extra: str, previous: bytes | None = OLD) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env["ELDERCARE_ENV_FILE"] = "/nonexistent/eldercare.env"
    env["ELDERCARE_DATA_KEY"] = base64.b64encode(NEW).decode()
    if previous is not None:
        env["ELDERCARE_DATA_KEY_PREVIOUS"] = base64.b64encode(previous).decode()
    exe = Path(sys.executable).with_name("eldercare")
    return subprocess.run(
        [str(exe), "db", "rekey", "--database-url", db.url, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_rekey_leaves_nothing_under_the_old_key(world: World) -> None:
    db, both, new_only = world.db, Vault(NEW, previous=OLD), Vault(NEW)
    with psycopg.connect(db.url, autocommit=True) as conn:
        before = _open_all(conn, Vault(OLD))
        assert set(before) == _sealed_columns(conn) - _HASHES  # every sealed column is seeded
        with pytest.raises(DecryptionError):
            _open_all(conn, new_only)
    # during the rotation (the key check records NEW, OLD retiring): the look-up finds the rows hashed with OLD
    keycheck.check_data_key(db.url, both)
    assert _applicant(db, both, world.numbers[0])
    # the kill-midway case: one table re-sealed in part (its first batch), then the whole run
    with psycopg.connect(db.url, autocommit=True) as conn:
        table = next(t for t in rekey.sealed_tables() if t.table == "bed_readings")
        assert isinstance(table, rekey.TimeTable)
        partial = rekey._rekey_time(conn, both, table)
        assert partial.resealed == _READINGS
    done = _rekey_command(world.db, "--drop-unmatched-registers")
    assert done.returncode == 0, done.stderr
    assert "rotation finished" in done.stdout
    assert "bed_readings: 40 row(s) read, 0 sealed again" in done.stdout  # done before the kill: not again
    assert "residents: 4 row(s) read, 4 sealed again" in done.stdout
    with psycopg.connect(db.url, autocommit=True) as conn:
        after = _open_all(conn, new_only)  # raises on any value the new key alone does not open
        assert after == before
        with pytest.raises(DecryptionError):
            _open_all(conn, Vault(OLD))
        new_hashes = {new_only.lookup_hash(n) for n in world.numbers}
        assert _hashes(conn, "residents") == new_hashes
        assert _hashes(conn, "death_register") == {new_only.lookup_hash(world.numbers[0])}  # nobody's entry dropped
        assert _hashes(conn, "hardship_register") == {new_only.lookup_hash(world.numbers[1])}
        found = keycheck.recorded(conn)
        assert found == keycheck.Recorded(new_only.key_check(), None)
    assert _applicant(db, new_only, world.numbers[0])
    again = _rekey_command(world.db)
    assert again.returncode == 0, again.stderr
    assert "no rotation under way" in again.stdout


def test_a_register_entry_of_nobody_keeps_the_rotation_open(world: World) -> None:
    first = _rekey_command(world.db)
    assert first.returncode == 1
    assert "death_register" in first.stdout and "name no resident" in first.stdout
    with psycopg.connect(world.db.url) as conn:
        found = keycheck.recorded(conn)
    assert found is not None and found.retiring == Vault(OLD).key_check()
    with pytest.raises(keycheck.DataKeyMismatchError, match="ELDERCARE_DATA_KEY_PREVIOUS"):
        keycheck.check_data_key(world.db.url, Vault(NEW))  # not finished: the new key alone is refused


def test_a_duplicate_id_number_is_refused_during_the_rotation(world: World) -> None:
    from eldercare.platform.registry.service import create_resident

    both = Vault(NEW, previous=OLD)
    keycheck.check_data_key(world.db.url, both)

    async def register(number: str) -> None:
        async with await psycopg.AsyncConnection.connect(world.db.url) as conn:
            await create_resident(
                conn, vault=both, institution_id=world.institution, name="重复", id_number=number, rng=random.Random(3)
            )
            await conn.commit()

    with pytest.raises(psycopg.errors.UniqueViolation, match="id_number_hash"):
        asyncio.run(register(world.numbers[0]))  # registered under OLD's hash before the rotation
    other = codes.generate_id_number(random.Random(5), region6="420502", birth_date=date(1940, 5, 5), sex="male")
    asyncio.run(register(other))  # a new number is registered, under NEW's hash
    with psycopg.connect(world.db.url) as conn:
        assert Vault(NEW).lookup_hash(other) in _hashes(conn, "residents")


def test_a_service_left_on_the_old_key_stops_the_rekey_and_is_named(world: World) -> None:
    """A service running since before the rotation, never restarted, seals with the old key still: no start-up check
    sees it, its connections' key tag does. The rekey refuses until it is gone, naming it, and finishes then."""
    keycheck.check_data_key(world.db.url, Vault(NEW, previous=OLD))  # the others restarted: the rotation began
    stale = keycheck.tagged(world.db.url, Vault(OLD), "eldercare-platform")
    with psycopg.connect(stale, autocommit=True):
        refused = _rekey_command(world.db, "--drop-unmatched-registers")
        assert refused.returncode == 1
        assert "still runs on the key being replaced" in refused.stderr, refused.stderr
        assert f"eldercare-platform {keycheck.key_tag(Vault(OLD).key_check())} (from " in refused.stderr
    with psycopg.connect(world.db.url) as conn:
        assert keycheck.recorded(conn) == keycheck.Recorded(Vault(NEW).key_check(), Vault(OLD).key_check())
    done = _rekey_command(world.db, "--drop-unmatched-registers")  # restarted (here: gone)
    assert done.returncode == 0, done.stderr
    assert "rotation finished" in done.stdout


@pytest.mark.parametrize("name", ["", "ingest-alarm"])
def test_a_connection_of_the_services_role_with_no_key_tag_stops_the_rekey(
    world: World, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform of the version before the key tags (its connections named nothing) or an ingest of it
    (``ingest-alarm``): which key it seals with is not known. The rekey refuses to start while one is connected as the
    services' role, naming it and saying what to do, and re-seals nothing."""
    monkeypatch.delenv("PGAPPNAME", raising=False)
    keycheck.check_data_key(world.db.url, Vault(NEW, previous=OLD))
    with psycopg.connect(world.db.url, autocommit=True, application_name=name) as old_version:
        pid = old_version.info.backend_pid
        assert old_version.execute("SHOW application_name").fetchone() == (name,)
        refused = _rekey_command(world.db, "--drop-unmatched-registers")
    assert refused.returncode == 1
    assert "does not say which data key its process holds" in refused.stderr, refused.stderr
    assert f"{name or '(no name)'} (from " in refused.stderr and f", pid {pid})" in refused.stderr
    assert "Restart a service on the current version" in refused.stderr
    assert "close one that is not a service (a psql session, a script)" in refused.stderr
    with psycopg.connect(world.db.url) as conn:
        assert keycheck.recorded(conn) == keycheck.Recorded(Vault(NEW).key_check(), Vault(OLD).key_check())
        _open_all(conn, Vault(OLD))  # nothing was sealed again: all of it opens with the old key alone
    done = _rekey_command(world.db, "--drop-unmatched-registers")  # gone
    assert done.returncode == 0, done.stderr
    assert "rotation finished" in done.stdout


def test_a_connection_of_another_role_with_no_name_does_not_stop_the_rekey(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dashboard's reader, the superuser, a backup tool: not the services' role, not looked at."""
    monkeypatch.delenv("PGAPPNAME", raising=False)
    keycheck.check_data_key(world.db.url, Vault(NEW, previous=OLD))
    with psycopg.connect(world.db.url) as conn:
        services = conn.execute("SELECT session_user").fetchone()
    with psycopg.connect(world.db.admin_url, autocommit=True, application_name="") as other:
        assert other.execute("SELECT session_user").fetchone() != services
        done = _rekey_command(world.db, "--drop-unmatched-registers")
    assert done.returncode == 0, done.stderr
    assert "rotation finished" in done.stdout


def test_a_service_of_another_role_left_on_the_old_key_is_named(world: World) -> None:
    """A service on the old key connected as another role than the rekey's: found by its tag all the same, and named
    with what the rekey's role is shown of it (not its address nor its start)."""
    keycheck.check_data_key(world.db.url, Vault(NEW, previous=OLD))
    stale = keycheck.tagged(world.db.admin_url, Vault(OLD), "eldercare-platform")
    with psycopg.connect(stale, autocommit=True) as other:
        pid = other.info.backend_pid
        refused = _rekey_command(world.db)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    tag = keycheck.key_tag(Vault(OLD).key_check())
    assert f"still runs on the key being replaced and seals new data with it: eldercare-platform {tag} (" in (
        refused.stderr
    )
    assert f"pid {pid})" in refused.stderr


def _register_matches(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """The residents a subsidy check finds in the registers (by hash, as ``platform/subsidy`` joins them)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM residents r JOIN death_register d USING (id_number_hash))"
        " + (SELECT count(*) FROM residents r JOIN hardship_register h USING (id_number_hash))"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_residents_hash_and_its_register_entries_change_in_one_commit(world: World) -> None:
    """Subsidy checks may run while the rekey does (it takes hours over the readings): a resident whose hash the
    rekey changed is found in the registers as before, at once, not only when the registers' turn comes at the end."""
    both = Vault(NEW, previous=OLD)
    keycheck.check_data_key(world.db.url, both)
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        before = _register_matches(conn)
        assert before == 2  # a death and a hardship entry of two residents
        residents = next(t for t in rekey.sealed_tables() if t.table == "residents")
        assert isinstance(residents, rekey.KeyedTable)
        assert rekey._rekey_keyed(conn, both, residents).resealed == 4
        assert _hashes(conn, "residents") == {Vault(NEW).lookup_hash(n) for n in world.numbers}
        assert _register_matches(conn) == before
