"""One data key per database: the first process that uses a key records its check value; a platform, an ingest or
a migrate started on another key refuses to start, saying why, instead of sealing what nobody could open."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from tests.ingest.helpers import ingest_cli
from tests.platform_procs import migrate_command
from tests.registry.support import Database, create_database, data_key, drop_database

from eldercare.platform.api.app import create_app
from eldercare.platform.crypto import Vault
from eldercare.platform.db.keycheck import (
    DataKeyMismatchError,
    check_data_key,
    checked_vault,
    finish_rotation,
    key_tag,
)
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import seed_home


@pytest.fixture
def fresh(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "ec_key")
    yield db
    drop_database(stack, db)


def _recorded(db: Database) -> bytes | None:
    with psycopg.connect(db.url) as conn:
        row = conn.execute("SELECT check_value FROM data_key_check").fetchone()
    return None if row is None else bytes(row[0])


def test_the_first_key_is_recorded_and_another_is_refused(fresh: Database) -> None:
    mine, other = Vault(os.urandom(32)), Vault(os.urandom(32))
    assert _recorded(fresh) is None
    check_data_key(fresh.url, mine)
    assert _recorded(fresh) == mine.key_check() != other.key_check()
    check_data_key(fresh.url, mine)  # the same key again: fine
    with pytest.raises(DataKeyMismatchError, match="ELDERCARE_DATA_KEY is not the key"):
        check_data_key(fresh.url, other)
    assert mine.key_check() not in (mine.data_key, other.data_key)  # the check value is not the key


def test_a_first_key_that_does_not_open_the_names_already_sealed_is_refused(stack: StackInfo, fresh: Database) -> None:
    """A database sealed before the check existed (or whose check row was lost): the first key recorded must open
    what is there."""
    sealed_with = Vault(os.urandom(32))

    async def seed() -> None:
        async with await psycopg.AsyncConnection.connect(fresh.url, autocommit=True) as conn:
            await seed_home(
                conn,
                vault=sealed_with,
                broker=LocalBroker(stack.state_dir),
                rng=random.Random(7),
                staff_password="x" * 12,
            )

    asyncio.run(seed())
    with pytest.raises(DataKeyMismatchError, match="does not open"):
        check_data_key(fresh.url, Vault(os.urandom(32)))
    assert _recorded(fresh) is None  # nothing recorded for the wrong key
    check_data_key(fresh.url, sealed_with)
    assert _recorded(fresh) == sealed_with.key_check()


def test_a_platform_on_another_key_does_not_start(stack: StackInfo, fresh: Database) -> None:
    """``eldercare serve``'s app: its start-up (the lifespan, which uvicorn runs before it serves) fails."""
    check_data_key(fresh.url, Vault(data_key(stack)))

    async def start(key: bytes) -> None:
        app = create_app(database_url=fresh.url, data_key=key, run_background=False)
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(DataKeyMismatchError):
        asyncio.run(start(os.urandom(32)))
    asyncio.run(start(data_key(stack)))


def test_the_platforms_connections_carry_its_key_tag(stack: StackInfo, fresh: Database) -> None:
    """What ``eldercare db rekey`` finds a platform left on a retired key by (``tests/test_rekey.py``)."""
    key = data_key(stack)
    tag = key_tag(Vault(key).key_check())

    async def names_while_up() -> list[str]:
        app = create_app(database_url=fresh.url, data_key=key, run_background=False)
        async with app.router.lifespan_context(app), await psycopg.AsyncConnection.connect(fresh.url) as conn:
            cur = await conn.execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return [row[0] for row in await cur.fetchall()]

    names = asyncio.run(names_while_up())
    assert names and all(name == f"eldercare-platform {tag}" for name in names), names


def test_ingest_and_migrate_on_another_key_stop_at_once_and_say_why(stack: StackInfo, fresh: Database) -> None:
    check_data_key(fresh.url, Vault(data_key(stack)))
    other = base64.b64encode(os.urandom(32)).decode()
    ingest = ingest_cli(stack, "--name", "wrongkey", ELDERCARE_DATABASE_URL=fresh.url, ELDERCARE_DATA_KEY=other)
    assert ingest.returncode != 0 and "ELDERCARE_DATA_KEY is not the key" in ingest.stderr, ingest
    assert "Traceback" not in ingest.stderr

    with psycopg.connect(fresh.url, autocommit=True) as conn:  # something for the migrate to seal with its key
        conn.execute(
            "INSERT INTO parked_messages (kind, topic, payload, reason) VALUES ('dead_letter', 't', 'x', 'bad')"
        )
    migrate = migrate_command(fresh.url, os.urandom(32))
    assert migrate.returncode == 1 and "ELDERCARE_DATA_KEY is not the key" in migrate.stderr, migrate
    with psycopg.connect(fresh.url) as conn:
        assert conn.execute("SELECT count(*) FROM parked_messages WHERE payload_enc IS NULL").fetchone() == (1,)
    assert migrate_command(fresh.url, data_key(stack)).returncode == 0  # the right key seals it


def test_a_database_not_up_yet_is_waited_for_and_a_wrong_key_is_not(
    stack: StackInfo, fresh: Database, free_port: Callable[[], int]
) -> None:
    """Ingest started before its database (or while it restarts) waits to check its key, as it waits for the
    database after; it does not stop on it. A wrong key is said at once."""
    nowhere = f"postgresql://eldercare:x@127.0.0.1:{free_port()}/eldercare?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        checked_vault(nowhere, data_key(stack), wait_s=1.5)
    assert time.monotonic() - started >= 1.5  # tried again until the wait was over
    check_data_key(fresh.url, Vault(data_key(stack)))
    started = time.monotonic()
    with pytest.raises(DataKeyMismatchError):
        checked_vault(fresh.url, os.urandom(32), wait_s=60)
    assert time.monotonic() - started < 5


def test_a_rotation_records_the_new_key_and_refuses_the_old_one_and_an_unfinished_one(
    stack: StackInfo, fresh: Database
) -> None:
    """Point by point: NEW with PREVIOUS=OLD starts the rotation (OLD kept as retiring); then OLD is refused, saying
    it is the key rotated away from; a third key is refused; NEW alone is refused until the rekey finishes."""
    old, new = os.urandom(32), os.urandom(32)
    check_data_key(fresh.url, Vault(old))
    checked_vault(fresh.url, new, previous=old)
    with psycopg.connect(fresh.url) as conn:
        row = conn.execute("SELECT check_value, retiring_check, rotation_started_at FROM data_key_check").fetchone()
    assert row is not None and (bytes(row[0]), bytes(row[1])) == (Vault(new).key_check(), Vault(old).key_check())
    assert row[2] is not None
    checked_vault(fresh.url, new, previous=old)  # the other services, restarted with both keys: fine
    with pytest.raises(DataKeyMismatchError, match="the key being rotated away from"):
        checked_vault(fresh.url, old)
    with pytest.raises(DataKeyMismatchError, match="the key being rotated away from"):
        checked_vault(fresh.url, old, previous=new)  # the two swapped
    with pytest.raises(DataKeyMismatchError, match="is not the key"):
        checked_vault(fresh.url, os.urandom(32), previous=old)
    with pytest.raises(DataKeyMismatchError, match=r"Set ELDERCARE_DATA_KEY_PREVIOUS .* run `eldercare db rekey`"):
        checked_vault(fresh.url, new)
    with pytest.raises(DataKeyMismatchError, match="it is set to another key"):
        checked_vault(fresh.url, new, previous=os.urandom(32))
    # a service someone forgot to update, started as a process: it stops and says why
    stale = ingest_cli(
        stack, "--name", "stale", ELDERCARE_DATABASE_URL=fresh.url, ELDERCARE_DATA_KEY=base64.b64encode(old).decode()
    )
    assert stale.returncode != 0 and "rotated away from" in stale.stderr, stale
    unfinished = ingest_cli(
        stack, "--name", "nopre", ELDERCARE_DATABASE_URL=fresh.url, ELDERCARE_DATA_KEY=base64.b64encode(new).decode()
    )
    assert unfinished.returncode != 0 and "ELDERCARE_DATA_KEY_PREVIOUS" in unfinished.stderr, unfinished
    # finished (the rekey's last step): NEW alone is fine, and OLD is just another key
    with psycopg.connect(fresh.url, autocommit=True) as conn:
        assert finish_rotation(conn, Vault(new, previous=old))
    checked_vault(fresh.url, new)
    with pytest.raises(DataKeyMismatchError, match="is not the key"):
        checked_vault(fresh.url, old)
