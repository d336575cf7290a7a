"""A gateway or a device registered right after ingest asked for its code is known at once (migration 0025), not
after ``UNKNOWN_RETRY_S``: a button pressed right after it was registered raises its alarm.

Ingest holds a code it did not find for unknown for ``ingest_unknown_retry_s`` (5 s by default; a minute here, so
that the test cannot pass by the negative cache running out). Registering notifies ``ingest_registry`` as taking
back does (0022), and the watch drops the code from the negative cache before the next batch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from eldercare.devices import messages as m
from eldercare.ingest.registry import Registry
from eldercare.ingest.watch import RegistryWatch
from eldercare.platform.registry import service
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import gateways, now_ms, scalar, wait_until

RETRY_S = 60.0  # the negative cache, far longer than the test
NOTICED_S = 0.5  # a registration is noticed well within this

_INBOX = "SELECT count(*) FROM alarm_inbox a JOIN devices d ON d.id = a.device_id WHERE d.code = %s"


def _parked(db: str, gateway: str) -> list[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT reason FROM parked_messages WHERE gateway = %s ORDER BY id", (gateway,))
        return [str(r[0]) for r in rows.fetchall()]


def _register_device(db: str, *, institution_id: int, code: str) -> None:
    """As ``POST /institutions/{id}/devices`` registers it."""

    async def register() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await service.create_device(conn, institution_id=institution_id, code=code, kind="button")

    asyncio.run(register())


def test_a_button_registered_right_after_its_code_was_asked_for_raises_its_next_press(
    stack: StackInfo, db: str, world: LoadWorld, run_ingest: Callable[..., Any]
) -> None:
    config = world.gateways[0]
    code = f"BTN-{uuid.uuid4().hex[:8]}"

    def press() -> m.Button:
        return m.Button(dev=code, ts=now_ms(), action=m.ButtonAction.PRESS)

    with run_ingest(ingest_unknown_retry_s=RETRY_S), gateways(stack, world) as (link,):
        link.send(link.frame([press()]), alarm=True)  # a code ingest does not know yet: held for unknown
        wait_until(lambda: _parked(db, config.gateway_id), timeout=15, what="the press quarantined")
        assert _parked(db, config.gateway_id) == [f"msgs[0]: unknown device {code!r}"]

        _register_device(db, institution_id=world.institution_id, code=code)
        time.sleep(NOTICED_S)
        link.send(link.frame([press()]), alarm=True)
        wait_until(
            lambda: scalar(db, _INBOX, (code,)) + len(_parked(db, config.gateway_id)) >= 2,
            timeout=15,
            what="the second press raised or quarantined",
        )
        assert scalar(db, _INBOX, (code,)) == 1, "the press of the device just registered was not raised"
        assert len(_parked(db, config.gateway_id)) == 1


def test_a_gateway_registered_right_after_its_code_was_asked_for_is_known_at_once(
    stack: StackInfo, db: str, world: LoadWorld
) -> None:
    """Its broker login is issued inside the registering transaction, so its first frames can reach ingest a
    moment before the commit makes it known."""
    gateway_id = f"GW-{uuid.uuid4().hex[:8]}"
    watch = RegistryWatch(database_url=db)
    watch.start()
    try:
        assert watch.wait_listening(10)
        registry = Registry(retry_s=RETRY_S, watch=watch)
        with psycopg.connect(db, autocommit=True) as conn:
            registry.refresh()
            assert registry.gateway(conn, world.institution_code, gateway_id) is None
            seen = watch.generation

            async def register() -> None:
                async with await psycopg.AsyncConnection.connect(db, autocommit=True) as aconn:
                    await service.create_gateway(
                        aconn,
                        institution_id=world.institution_id,
                        gateway_id=gateway_id,
                        name="",
                        broker=LocalBroker(stack.state_dir),
                    )

            asyncio.run(register())
            wait_until(
                lambda: watch.generation > seen, timeout=NOTICED_S, what="the registration notified", every=0.005
            )
            assert watch.changes_since(seen) == (seen + 1, [(world.institution_code, gateway_id)])
            registry.refresh()
            found = registry.gateway(conn, world.institution_code, gateway_id)
            assert found is not None and not found.revoked
            assert found.institution_id == world.institution_id
    finally:
        watch.stop()


@pytest.mark.parametrize("count", [1, 3])
def test_every_device_registered_in_one_statement_is_notified(db: str, world: LoadWorld, count: int) -> None:
    """An import registers many devices in one statement: the trigger runs once for it and notifies each code."""
    codes = [f"IMP-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    watch = RegistryWatch(database_url=db)
    watch.start()
    try:
        assert watch.wait_listening(10)
        seen = watch.generation
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO devices (institution_id, code, kind) SELECT %s, c, 'bed_sensor' FROM unnest(%s::text[]) c",
                (world.institution_id, codes),
            )
        wait_until(lambda: watch.generation >= seen + count, timeout=NOTICED_S, what="the codes notified", every=0.005)
        _, keys = watch.changes_since(seen)
        assert keys is not None
        assert len(keys) == count
        assert set(keys) == {(world.institution_id, c) for c in codes}
    finally:
        watch.stop()
