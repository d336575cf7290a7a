"""Gateway status messages: what ingest records of a birth, a heartbeat, a clean goodbye and a last will."""

from __future__ import annotations

import psycopg

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore
from eldercare.platform.crypto import Vault
from eldercare.simulators.load import LoadWorld

from .helpers import now_ms


def _last_status(db: str, vault: Vault, world: LoadWorld, message: m.StatusMessage) -> str:
    gateway = world.gateways[-1].gateway_id
    status = Received(topics.uplink(world.institution_code, gateway, topics.Channel.STATUS), m.encode(message))
    with psycopg.connect(db, autocommit=True) as conn:
        BatchStore(registry=Registry(retry_s=0), vault=vault).write(conn, [status])
        row = conn.execute("SELECT last_status FROM gateways WHERE gateway_id = %s", (gateway,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_clean_goodbye_is_told_apart_from_a_last_will(db: str, vault: Vault, world: LoadWorld) -> None:
    assert _last_status(db, vault, world, m.Birth(ts=now_ms(), epoch=1, software="t")) == "birth"
    assert _last_status(db, vault, world, m.Death(ts=now_ms() + 1, clean=True)) == "goodbye"
    assert _last_status(db, vault, world, m.Birth(ts=now_ms() + 2, epoch=2, software="t")) == "birth"
    assert _last_status(db, vault, world, m.Death(ts=now_ms() + 3)) == "death"
