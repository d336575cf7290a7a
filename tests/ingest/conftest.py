"""Fixtures of the ingest tests: the migrated session database, load worlds (a home with gateways and bed
sensors registered through the registry's services), and ingest run in this process or as `eldercare ingest`.

Every test gets its own shared-subscription group, so ingest processes of other tests (whose persistent
sessions outlive them) never take its messages.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from tests.platform_procs import TEST_SESSION_EXPIRY_S

from eldercare.ingest.service import Ingest, build
from eldercare.ingest.settings import IngestSettings
from eldercare.platform.config import BrokerSettings
from eldercare.platform.crypto import Vault
from eldercare.platform.db.migrate import migrate
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld, create_world

_seeds = itertools.count(4000)


@pytest.fixture(scope="session")
def db(stack: StackInfo) -> str:
    migrate(stack.database_url)
    return stack.database_url


def broker_settings(stack: StackInfo) -> BrokerSettings:
    return BrokerSettings(
        mqtt_host=stack.mqtt_host,
        mqtt_port=stack.ports.mqtt_tls,
        mqtt_tls=True,
        mqtt_ca_file=stack.ca_file,
        mqtt_username=stack.platform_username,
        mqtt_password=stack.platform_password,
    )


def new_world(stack: StackInfo, db: str, *, gateways: int = 1, beds: int = 10) -> LoadWorld:
    async def make() -> LoadWorld:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            return await create_world(
                conn,
                broker=LocalBroker(stack.state_dir),
                gateways=gateways,
                beds=beds,
                rng=random.Random(next(_seeds)),
            )

    return asyncio.run(make())


@pytest.fixture
def world(stack: StackInfo, db: str) -> Iterator[LoadWorld]:
    """A fresh home with one gateway, ten bed sensors and a button. The alarm inbox rows its test stored are
    removed afterwards: no alarm engine runs here, and one run by a later test (the alerting tests' ``process``
    takes every row) would have counted them."""
    world = new_world(stack, db)
    yield world
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM alarm_inbox WHERE institution_id = %s", (world.institution_id,))


@pytest.fixture
def group() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run_ingest(stack: StackInfo, db: str, vault: Vault, group: str) -> Iterator[Callable[..., Any]]:
    """``with run_ingest(name=..., **settings) as ingest:`` an ingest in this process, in the test's group."""
    started: list[Ingest] = []

    @contextmanager
    def start(*, name: str = "a", **overrides: Any) -> Iterator[Ingest]:
        values: dict[str, Any] = {
            "ingest_name": name,
            "ingest_group": group,
            "ingest_maintain": False,
            "ingest_metrics_port": None,
            "ingest_session_expiry_s": TEST_SESSION_EXPIRY_S,
            **overrides,
        }
        ingest = build(settings=IngestSettings(**values), broker=broker_settings(stack), database_url=db, vault=vault)
        started.append(ingest)
        ingest.start()
        assert ingest.wait_subscribed(20), "ingest did not subscribe"
        try:
            yield ingest
        finally:
            ingest.stop()
            started.remove(ingest)

    yield start
    for ingest in started:
        ingest.stop()
