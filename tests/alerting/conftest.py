"""Fixtures for the alerting tests: a migrated database, a seeded home, and helpers to feed events."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import pytest
from tests.alerting.receivers import Mailbox, start_smtp

from eldercare.platform.alarms import engine, ticker
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


def process(db: str, vault: Vault, *, limit: int = 200) -> int:
    """One pass of the alarm engine over its inbox, as ``eldercare serve`` runs it (the vault seals the text)."""
    return run(with_conn(db, lambda conn: engine.process_pending(conn, vault=vault, limit=limit)))


def tick(db: str, vault: Vault) -> dict[str, int]:
    """Every time-based rule once, as ``eldercare serve`` runs them."""
    return run(with_conn(db, lambda conn: ticker.tick(conn, vault=vault)))


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
            "SELECT a.id, a.kind, a.priority::text, a.state::text, a.repeat_count, a.held_by,"
            " a.escalation_level, d.code AS device FROM alarms a LEFT JOIN devices d ON d.id = a.device_id"
            " WHERE a.institution_id = %s ORDER BY a.id",
            (home.institution_id,),
        )
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@dataclass(frozen=True, slots=True)
class AlarmText:
    detail: dict[str, Any]
    outcome: str | None
    notes: list[str]  # of its changes, oldest first


def alarm_text(db: str, vault: Vault, alarm_id: int) -> AlarmText:
    """An alarm's detail, outcome and notes as stored: encrypted, so opened with the vault."""
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT detail_enc, outcome_enc FROM alarms WHERE id = %s", (alarm_id,)).fetchone()
        notes = conn.execute("SELECT note_enc FROM alarm_changes WHERE alarm_id = %s ORDER BY id", (alarm_id,))
        sealed = [n for (n,) in notes.fetchall()]
    assert row is not None
    detail, outcome = row
    return AlarmText(
        detail=json.loads(vault.decrypt(detail, column="alarms.detail")) if detail else {},
        outcome=vault.decrypt(outcome, column="alarms.outcome") if outcome else None,
        notes=[vault.decrypt(n, column="alarm_changes.note") if n else "" for n in sealed],
    )


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
