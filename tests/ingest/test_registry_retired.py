"""The registry tells a retired device from one never registered, so that what is quarantined for it says which
(``retired_device``, "retired device 'CODE'"): an operator chasing the reason looks for a retirement, not for a
missing registration. Both have no id; :meth:`Registry.device_cause` says why, from the look-up that left the code
out (no query of its own)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from eldercare.ingest.registry import Registry
from eldercare.ingest.watch import RegistryWatch
from eldercare.simulators.load import LoadWorld

from .helpers import scalar, wait_until

NOTICED_S = 0.5


def _execute(db: str, query: str, params: Sequence[Any]) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(query.encode(), params)


def _device_id(db: str, world: LoadWorld, code: str) -> int:
    return int(
        scalar(db, "SELECT id FROM devices WHERE institution_id = %s AND code = %s", (world.institution_id, code))
    )


def test_a_retired_device_is_told_from_an_unknown_one(db: str, world: LoadWorld) -> None:
    config = world.gateways[0]
    active, retired, never = config.beds[0], config.beds[1], f"NONE-{uuid.uuid4().hex[:8]}"
    _execute(db, "UPDATE devices SET retired_at = now() WHERE id = %s", (_device_id(db, world, retired),))
    registry = Registry(retry_s=60)
    inst = world.institution_id
    with psycopg.connect(db, autocommit=True) as conn:
        ids = registry.device_ids(conn, inst, [active, retired, never])
        assert ids == [_device_id(db, world, active), None, None]
        assert registry.device_cause(inst, retired) == "retired_device"
        assert registry.device_cause(inst, never) == "unknown_device"
        # the same code in another institution is not retired there: unknown
        assert registry.device_ids(conn, inst + 1_000_000, [retired]) == [None]
        assert registry.device_cause(inst + 1_000_000, retired) == "unknown_device"
    # held for unknown: asked again without a query (the connection is closed), the same answer and cause
    assert registry.device_ids(conn, inst, [retired, never, active]) == [None, None, ids[0]]
    assert registry.device_cause(inst, retired) == "retired_device"
    assert registry.device_cause(inst, never) == "unknown_device"


def test_the_cause_follows_a_device_retired_and_brought_back(db: str, world: LoadWorld) -> None:
    """Through the watch, as in a running ingest: retired while cached, brought back, retired again, deleted."""
    code = f"BS-{uuid.uuid4().hex[:8]}"
    inst = world.institution_id
    _execute(db, "INSERT INTO devices (institution_id, code, kind) VALUES (%s, %s, 'bed_sensor')", (inst, code))
    device_id = _device_id(db, world, code)
    watch = RegistryWatch(database_url=db)
    watch.start()
    try:
        assert watch.wait_listening(10)
        registry = Registry(retry_s=60, watch=watch)
        with psycopg.connect(db, autocommit=True) as conn:

            def look_up() -> int | None:
                """As a batch does: drop what changed, then ask."""
                registry.refresh()
                return registry.device_ids(conn, inst, [code])[0]

            def change(query: str) -> None:
                seen = watch.generation
                _execute(db, query, (device_id,))
                wait_until(lambda: watch.generation > seen, timeout=NOTICED_S, what="the change notified", every=0.005)

            assert look_up() == device_id  # cached
            change("UPDATE devices SET retired_at = now() WHERE id = %s")
            assert look_up() is None
            assert registry.device_cause(inst, code) == "retired_device"
            change("UPDATE devices SET retired_at = NULL WHERE id = %s")
            assert look_up() == device_id
            change("UPDATE devices SET retired_at = now() WHERE id = %s")
            assert look_up() is None
            assert registry.device_cause(inst, code) == "retired_device"
            change("DELETE FROM devices WHERE id = %s")  # never done by the API; a code no device has any more
            assert look_up() is None
            assert registry.device_cause(inst, code) == "unknown_device"
    finally:
        watch.stop()
