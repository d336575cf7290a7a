"""The audit log: a hash chain that concurrent writers keep intact, that ``eldercare audit verify`` checks,
and that shows the first entry someone changed behind the platform's back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.registry.support import Database, World, create_database, drop_database

from eldercare.platform.audit import log
from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.stack.model import StackInfo


def _verify_cli(url: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("eldercare")
    return subprocess.run(
        [str(exe), "audit", "verify", "--database-url", url], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def scratch(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "ec_audit")
    yield db
    drop_database(stack, db)


async def _write(url: str, writers: int, each: int) -> None:
    principal = Principal(1, "tester", Role.ADMIN, None, None)

    async def one(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for k in range(each):
                async with conn.transaction():
                    await log.record(
                        conn,
                        principal=principal,
                        action="update",
                        object_type="thing",
                        object_id=n * 1000 + k,
                        institution_id=None,
                        detail={"n": n, "k": k, "f": 0.1},
                    )

    await asyncio.gather(*(one(n) for n in range(writers)))


def test_concurrent_writers_keep_the_chain_and_tampering_is_found(scratch: Database) -> None:
    asyncio.run(_write(scratch.url, writers=8, each=25))
    with psycopg.connect(scratch.url) as conn:
        count = conn.execute("SELECT count(*), max(seq) FROM audit_log").fetchone()
    assert count == (200, 200)
    intact = _verify_cli(scratch.url)
    assert intact.returncode == 0 and "intact: 200 entries" in intact.stdout, intact.stdout + intact.stderr

    with psycopg.connect(scratch.url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 77")  # the app's role cannot

    with psycopg.connect(scratch.admin_url, autocommit=True) as conn:  # a superuser going around the trigger
        conn.execute("SET session_replication_role = replica")
        conn.execute("""UPDATE audit_log SET detail = jsonb_set(detail, '{k}', '99') WHERE seq = 77""")
    broken = _verify_cli(scratch.url)
    assert broken.returncode == 1
    assert "BROKEN at entry 77" in broken.stdout and "76 entries before it are intact" in broken.stdout


def test_a_deleted_entry_is_found(scratch: Database) -> None:
    asyncio.run(_write(scratch.url, writers=2, each=10))
    with psycopg.connect(scratch.admin_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM audit_log WHERE seq = 5")
    verdict = asyncio.run(_async_verify(scratch.url))
    assert not verdict.ok and verdict.broken_seq == 5 and "missing" in verdict.reason


async def _async_verify(url: str) -> log.Verdict:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await log.verify(conn)


def test_the_platform_chain_is_intact_after_real_use(world: World) -> None:
    """Every registry test before this one wrote through the API with its concurrent connections."""
    check = world.admin.ok("GET", "/api/v1/audit/verify")
    assert check["ok"] is True and check["checked"] > 50, check
    assert world.users["head_a"].get("/api/v1/audit/verify").status_code == 403
    with ThreadPoolExecutor(8) as pool:  # parallel requests, each appending an audit entry
        replies = list(
            pool.map(
                lambda r: world.users["staff_a"].get(f"/api/v1/residents/{r}").status_code,
                [world.a.residents[n % 2]["id"] for n in range(40)],
            )
        )
    assert set(replies) == {200}
    assert world.admin.ok("GET", "/api/v1/audit/verify")["ok"] is True
    entries = world.admin.ok("GET", "/api/v1/audit", params={"limit": 5})
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]


def _read_health_since(world: World, seq: int, user_id: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(world.db.url) as conn:
        return conn.execute(
            "SELECT object_type, object_id, institution_id, detail FROM audit_log"
            " WHERE seq > %s AND actor_user_id = %s AND action = 'read_health' ORDER BY seq",
            (seq, user_id),
        ).fetchall()


@pytest.mark.parametrize("who", ["staff_a", "head_a", "family_a", "reg_4205"])
def test_alarm_reads_are_audited(world: World, who: str) -> None:
    """Alarms are health data (a fall, a heart rate in ``detail``, the person): the list, one alarm and its
    history each write one read_health entry naming the alarms and residents shown, as the resident's own
    alarm page does; a read that finds nothing (out of scope) writes none."""
    a, resident = world.a, world.a.residents[0]["id"]
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " last_event_at, detail) VALUES (%s, 'vitals', 'urgent', %s, %s, %s, now(), now(),"
            " '{\"heart_rate\": 142}') RETURNING id",
            (a.id, a.device["id"], a.beds[0]["id"], resident),
        ).fetchone()
        assert row is not None
        alarm = row[0]
        start = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
    assert start is not None
    client = world.users[who]
    listed = client.ok("GET", "/api/v1/alarms", params={"limit": 1000})
    assert alarm in [x["id"] for x in listed]
    entries = _read_health_since(world, start[0], client.user_id)
    assert len(entries) == 1
    kind, _, _, detail = entries[0]
    assert kind == "alarm" and detail["as"] == "list"
    assert detail["alarms"] == sorted(x["id"] for x in listed)
    assert resident in detail["residents"]
    for path, shown_as in ((f"/api/v1/alarms/{alarm}", "alarm"), (f"/api/v1/alarms/{alarm}/history", "history")):
        with psycopg.connect(world.db.url) as conn:
            before = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
        assert before is not None
        client.ok("GET", path)
        entries = _read_health_since(world, before[0], client.user_id)
        assert [(e[0], e[1], e[2]) for e in entries] == [("alarm", alarm, a.id)]
        assert entries[0][3] == {
            "as": shown_as,
            "fields": ["alarms"],
            "alarms": [alarm],
            "residents": [resident],
            "kinds": ["vitals"],
        }
    with psycopg.connect(world.db.url) as conn:
        before = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
    assert before is not None
    outsider = world.users["head_b"]
    assert outsider.get(f"/api/v1/alarms/{alarm}").status_code == 404
    assert outsider.get(f"/api/v1/alarms/{alarm}/history").status_code == 404
    assert _read_health_since(world, before[0], outsider.user_id) == []
