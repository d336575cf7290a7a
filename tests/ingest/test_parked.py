"""`eldercare ingest parked list|show|replay`: a quarantined message is stored once after its device is
registered; a dead letter that is still bad stays parked with the reason."""

from __future__ import annotations

import asyncio
import subprocess

import psycopg
from tests.registry.support import data_key

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import PARKED_PAYLOAD, Vault
from eldercare.platform.db.migrate import seal_in_clear
from eldercare.platform.registry import service as registry
from eldercare.platform.sealed_vitals import micros_sql
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import ingest_cli, now_ms, scalar


def _eldercare(stack: StackInfo, *args: str) -> subprocess.CompletedProcess[str]:
    return ingest_cli(stack, "parked", *args)


def test_a_quarantined_message_is_stored_once_after_its_device_is_registered(
    stack: StackInfo, db: str, vault: Vault, world: LoadWorld
) -> None:
    gateway = world.gateways[0]
    ts = now_ms()
    newcomer = f"NEW-{world.institution_code[-6:]}"
    frame = m.Frame(
        v=1,
        epoch=5,
        seq=0,
        sent=ts,
        msgs=[
            m.BedSample(dev=gateway.beds[0], ts=ts, presence=True),
            m.BedSample(dev=newcomer, ts=ts + 1, presence=True, hr=64.0),
            m.Button(dev=newcomer, ts=ts + 2, action=m.ButtonAction.PRESS),
        ],
    )
    topic = topics.uplink(world.institution_code, gateway.gateway_id, topics.Channel.TELEMETRY)
    with psycopg.connect(db, autocommit=True) as conn:
        BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, [Received(topic, m.encode(frame))])
        parked_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM parked_messages WHERE topic = %s AND kind = 'quarantine' ORDER BY id", (topic,)
            ).fetchall()
        ]
    assert len(parked_ids) == 2

    listing = _eldercare(stack, "list", "--kind", "quarantine", "--limit", "500")
    assert listing.returncode == 0
    listed = [line.split("\t") for line in listing.stdout.splitlines()]
    mine = {int(row[0]): row for row in listed if int(row[0]) in parked_ids}
    assert set(mine) == set(parked_ids)
    assert all(row[3] == "open" and f"unknown device '{newcomer}'" in row[5] for row in mine.values())
    shown = _eldercare(stack, "show", str(parked_ids[0]))
    assert shown.returncode == 0
    assert f'"dev":"{newcomer}"' in shown.stdout and "kind: quarantine" in shown.stdout

    still_unknown = _eldercare(stack, "replay", str(parked_ids[0]))
    assert still_unknown.returncode == 1
    assert f"unknown device '{newcomer}'" in still_unknown.stderr

    async def register() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await registry.create_device(conn, institution_id=world.institution_id, code=newcomer, kind="bed_sensor")

    asyncio.run(register())
    replayed = _eldercare(stack, "replay", *map(str, parked_ids))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines() == [f"{parked_ids[0]}: stored", f"{parked_ids[1]}: stored"]
    again = _eldercare(stack, "replay", str(parked_ids[0]))
    assert again.returncode == 1
    assert "replayed already" in again.stderr

    def count(query: str) -> int:
        return int(scalar(db, query, (newcomer,)))

    assert count("SELECT count(*) FROM bed_readings r JOIN devices d ON d.id = r.device_id WHERE d.code = %s") == 1
    assert count("SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.code = %s") == 1
    assert count("SELECT count(*) FROM alarm_inbox a JOIN devices d ON d.id = a.device_id WHERE d.code = %s") == 1
    with psycopg.connect(db) as conn:
        row = conn.execute(
            f"SELECT {micros_sql('time')}, device_id, vitals_enc, heart_rate FROM bed_readings r"
            " JOIN devices d ON d.id = r.device_id WHERE d.code = %s",
            (newcomer,),
        ).fetchone()
    assert row is not None and row[3] is None  # replayed as ingest stores it: the rate sealed
    assert vault.open_vitals([row[0]], [row[1]], [row[2]]).hr.tolist() == [64.0]


def test_a_dead_letter_that_is_still_bad_stays_parked(
    stack: StackInfo, db: str, vault: Vault, world: LoadWorld
) -> None:
    topic = topics.uplink(world.institution_code, world.gateways[0].gateway_id, topics.Channel.ALARM)
    with psycopg.connect(db, autocommit=True) as conn:
        BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, [Received(topic, b'{"v":2}')])
        parked = conn.execute("SELECT id FROM parked_messages WHERE topic = %s", (topic,)).fetchone()
    assert parked is not None
    result = _eldercare(stack, "replay", str(parked[0]))
    assert result.returncode == 1
    assert "still not storable: dead_letter x1" in result.stderr
    assert scalar(db, "SELECT replayed_at IS NULL FROM parked_messages WHERE id = %s", (parked[0],)) is True


def test_a_payload_an_older_version_parked_in_clear_is_sealed_by_migrate_and_still_shown(
    stack: StackInfo, db: str, vault: Vault, world: LoadWorld
) -> None:
    """Parked payloads are what devices sent (heart rates, positions): sealed since 0026, and `db migrate` seals
    those an older ingest left in clear. Showing one opens it either way."""
    raw = b'{"t":"location","dev":"NOT-REGISTERED","ts":1,"lat":30.7123456,"lon":111.2987654}'
    topic = topics.uplink(world.institution_code, world.gateways[0].gateway_id, topics.Channel.TELEMETRY)
    parked_id = scalar(
        db,
        "INSERT INTO parked_messages (kind, topic, payload, reason) VALUES ('quarantine', %s, %s, 'unknown device')"
        " RETURNING id",
        (topic, raw),
    )
    before = _eldercare(stack, "show", str(parked_id))
    assert before.returncode == 0 and "30.7123456" in before.stdout, before

    sealed = [s for s in seal_in_clear(db, data_key=data_key(stack)) if s.table == "parked_messages"]
    assert sealed and sealed[0].rows >= 1
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT payload, payload_enc FROM parked_messages WHERE id = %s", (parked_id,)).fetchone()
    assert row is not None and row[0] is None
    assert vault.open_bytes(row[1], column=PARKED_PAYLOAD) == raw
    after = _eldercare(stack, "show", str(parked_id))
    assert after.returncode == 0 and "30.7123456" in after.stdout, after
