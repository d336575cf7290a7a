"""Fixtures for the alerting tests: a migrated database, a seeded home, and helpers to feed events."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import pytest
from tests.alerting.receivers import Mailbox, start_smtp

from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import SeededHome, seed_home

T = TypeVar("T")
_seeds = itertools.count(1000)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_conn(url: str, work: Callable[[AsyncConn], Awaitable[T]]) -> T:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await work(conn)


@pytest.fixture
def home(stack: StackInfo, db: str, vault: Vault) -> SeededHome:
    """A fresh home per test (its own codes), so tests never see each other's alarms."""

    async def seed(conn: AsyncConn) -> SeededHome:
        return await seed_home(
            conn,
            vault=vault,
            broker=LocalBroker(stack.state_dir),
            rng=random.Random(next(_seeds)),
            staff_password="staff-password-1",
        )

    return run(with_conn(db, seed))


def device_id(db: str, code: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT id FROM devices WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(row[0])


def put_event(
    db: str,
    home: SeededHome,
    code: str,
    kind: str,
    detail: dict[str, Any],
    at: datetime,
    *,
    gateway: str | None = None,
) -> None:
    """What ingest writes for an alarm-class message: an inbox row (the device event itself is not needed),
    delivered by the home's gateway unless another is named."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alarm_inbox (event_time, device_id, gateway_pk, institution_id, kind, detail, published_at)"
            " VALUES (%s, %s, (SELECT id FROM gateways WHERE gateway_id = %s), %s, %s, %s::jsonb, %s)",
            (
                at,
                device_id(db, code),
                gateway or home.gateway.gateway_id,
                home.institution_id,
                kind,
                json.dumps(detail),
                at,
            ),
        )


def alarms_of(db: str, home: SeededHome) -> list[dict[str, Any]]:
    with psycopg.connect(db) as conn:
        cur = conn.execute(
            "SELECT a.id, a.kind, a.priority::text, a.state::text, a.repeat_count, a.outcome, a.held_by,"
            " a.escalation_level, d.code AS device FROM alarms a LEFT JOIN devices d ON d.id = a.device_id"
            " WHERE a.institution_id = %s ORDER BY a.id",
            (home.institution_id,),
        )
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def set_rule(
    db: str,
    *,
    rule: str,
    params: dict[str, Any],
    institution_id: int | None,
    resident_id: int | None = None,
    enabled: bool = True,
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alarm_rules (institution_id, resident_id, rule, enabled, params) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (institution_id, resident_id, rule) DO UPDATE SET enabled = EXCLUDED.enabled,"
            " params = EXCLUDED.params",
            (institution_id, resident_id, rule, enabled, json.dumps(params)),
        )


@pytest.fixture
def mailbox(free_port: Callable[[], int]) -> Iterator[tuple[int, Mailbox]]:
    port = free_port()
    controller, box = start_smtp(port)
    yield port, box
    controller.stop()


def on_shift_all_day(conn: psycopg.Connection[Any], home: SeededHome, user_id: int, tier: int) -> None:
    conn.execute(
        "INSERT INTO shift_roster (institution_id, user_id, tier, starts, ends, timezone)"
        " VALUES (%s, %s, %s, '00:00', '00:00', 'UTC')",
        (home.institution_id, user_id, tier),
    )
