"""``eldercare db migrate`` encrypts the text an older version left in clear while the platform runs: in short
batches that lock only their own rows, and without rewriting a table, so the alarm engine goes on raising and changing
alarms. The rewrite that removes the old row versions is ``eldercare db scrub``, a maintenance step of its own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from tests.platform_procs import migrate_command, scrub_command
from tests.registry.support import Database, data_key, drop_database, old_database

from eldercare.platform.crypto import Vault
from eldercare.platform.db import keycheck
from eldercare.platform.db import migrate as mig
from eldercare.platform.stack.model import StackInfo

_ALARMS = 1000
_NOTES = 40


@dataclass(frozen=True, slots=True)
class ClearDb:
    db: Database
    institution: int
    last_clear: int  # the alarm in clear with the highest id: the last one sealed


@pytest.fixture
def clear_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClearDb]:
    """A database of the version before alarm text was encrypted, with many alarms (and some notes) in clear."""
    db, home = old_database(stack, monkeypatch, below=13, prefix="ec_seal")
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at, detail)"
            " SELECT %s, 'fall', 'urgent', now(), now(), jsonb_build_object('source', 'old-' || n)"
            " FROM generate_series(1, %s) AS n",
            (home, _ALARMS),
        )
        conn.execute(
            "INSERT INTO alarm_changes (alarm_id, actor, to_state, note)"
            " SELECT id, 'nurse-old', 'acknowledged', '已处理 ' || id FROM alarms ORDER BY id LIMIT %s",
            (_NOTES,),
        )
        last = conn.execute("SELECT max(id) FROM alarms").fetchone()
        assert last is not None
    yield ClearDb(db, home, last[0])
    drop_database(stack, db)


class _SlowVault(Vault):
    """Encrypting takes 2 ms a text: a batch of 100 rows lasts about 0.2 s, the whole seal several seconds."""

    def encrypt(self, plaintext: str, *, column: str) -> bytes:
        time.sleep(0.002)
        return super().encrypt(plaintext, column=column)


@dataclass
class _Migrate:
    """``migrate`` in a thread, as a second process would run it beside the platform."""

    url: str
    key: bytes
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="migrate", daemon=True)

    def _run(self) -> None:
        try:
            mig.migrate(self.url, data_key=self.key)
        except BaseException as exc:  # handed to the test
            self.error = exc


def _apply_sql(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL migrations alone (they take their own locks, as any schema change does): the state a migrate without
    the data key leaves, the text still in clear."""
    with monkeypatch.context() as patch:
        patch.setattr(mig, "_sealings", lambda: ())
        mig.migrate(url)


def _new_alarm(conn: psycopg.Connection[tuple[Any, ...]], institution: int) -> int:
    row = conn.execute(
        "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at)"
        " VALUES (%s, 'emergency_button', 'emergency', now(), now()) RETURNING id",
        (institution,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_sealing_goes_in_batches_while_the_alarm_engine_inserts_and_updates_alarms(
    stack: StackInfo, clear_db: ClearDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    _apply_sql(clear_db.db.url, monkeypatch)
    monkeypatch.setattr(mig, "SEAL_BATCH_ROWS", 100)
    monkeypatch.setattr(keycheck, "Vault", _SlowVault)  # where the sealing's vault is made
    run = _Migrate(clear_db.db.url, data_key(stack))
    seen: set[int] = set()  # how many alarms another connection saw sealed while the migrate ran
    writes: list[float] = []  # how long each round of the engine's writes took
    refused: list[str] = []
    with psycopg.connect(clear_db.db.url, autocommit=True) as engine:
        engine.execute("SET lock_timeout = '1s'")  # far longer than a batch, far shorter than the whole seal
        run.thread.start()
        while run.thread.is_alive():
            started = time.monotonic()
            try:
                raised = _new_alarm(engine, clear_db.institution)
                # the last alarm in clear: under one long transaction it would be locked from the start
                engine.execute(
                    "UPDATE alarms SET repeat_count = repeat_count + 1 WHERE id = %s", (clear_db.last_clear,)
                )
                engine.execute(
                    "INSERT INTO alarm_changes (alarm_id, actor, to_state) VALUES (%s, 'system', 'raised'),"
                    " (%s, 'system', 'raised')",
                    (raised, clear_db.last_clear),
                )
            except psycopg.errors.LockNotAvailable as exc:
                refused.append(str(exc))
            writes.append(time.monotonic() - started)
            count = engine.execute("SELECT count(*) FROM alarms WHERE detail_enc IS NOT NULL").fetchone()
            assert count is not None
            seen.add(int(count[0]))
            time.sleep(0.05)
        run.thread.join()
        assert run.error is None, run.error
        assert refused == [], f"the engine waited for the lock past its lock_timeout: {refused}"
        assert len(writes) >= 5, "the seal ended before the engine could write: slow it down"
        in_between = sorted(n for n in seen if 0 < n < _ALARMS)
        assert len(in_between) >= 3, f"no batches were committed on the way: saw {sorted(seen)}"

        rows = engine.execute(
            "SELECT count(*) FILTER (WHERE detail <> '{}' OR outcome IS NOT NULL),"
            " count(*) FILTER (WHERE detail_enc IS NOT NULL), max(repeat_count) FROM alarms"
        ).fetchone()
        notes = engine.execute(
            "SELECT count(*) FILTER (WHERE note <> ''), count(*) FILTER (WHERE note_enc IS NOT NULL) FROM alarm_changes"
        ).fetchone()
        last = engine.execute("SELECT detail_enc FROM alarms WHERE id = %s", (clear_db.last_clear,)).fetchone()
    assert rows is not None and notes is not None and last is not None
    assert rows[:2] == (0, _ALARMS)  # all sealed; the engine's own alarms had no text to seal
    assert rows[2] == 1 + len(writes)  # no update of the engine was lost
    assert notes == (0, _NOTES)
    opened = Vault(data_key(stack)).decrypt(bytes(last[0]), column="alarms.detail")
    assert json.loads(opened) == {"source": f"old-{_ALARMS}"}


def test_migrate_ends_while_a_writer_holds_a_transaction_open_on_the_alarm_tables(
    stack: StackInfo, clear_db: ClearDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite of the table (VACUUM FULL) would wait for the writer's transaction, and every writer after it would
    wait behind the rewrite: the migrate must take no lock that conflicts with a writer's."""
    _apply_sql(clear_db.db.url, monkeypatch)
    run = _Migrate(clear_db.db.url, data_key(stack))
    with psycopg.connect(clear_db.db.url) as writer:
        raised = _new_alarm(writer, clear_db.institution)
        writer.execute(
            "INSERT INTO alarm_changes (alarm_id, actor, to_state) VALUES (%s, 'system', 'raised')", (raised,)
        )
        try:
            run.thread.start()
            run.thread.join(timeout=30)
            assert not run.thread.is_alive(), "the migrate waited for the writer's transaction"
            assert run.error is None, run.error
            writer.commit()
        finally:
            writer.rollback()
            run.thread.join(timeout=30)
    with psycopg.connect(clear_db.db.url) as conn:
        left = conn.execute("SELECT count(*) FROM alarms WHERE detail <> '{}'").fetchone()
    assert left == (0,)


def test_migrate_says_what_it_sealed_and_scrub_is_the_separate_rewrite(stack: StackInfo, clear_db: ClearDb) -> None:
    key = data_key(stack)
    url = clear_db.db.url
    # Without the key: the SQL is applied and said so, then it stops, saying what it needs.
    refused = migrate_command(url, None)
    assert refused.returncode == 1, refused
    assert "applied 0013_alarm_text" in refused.stdout
    assert "ELDERCARE_DATA_KEY" in refused.stderr and "Traceback" not in refused.stderr
    # While text is in clear, the rewrite is refused: it would keep the text in the table.
    early = scrub_command(url)
    assert early.returncode == 1 and "eldercare db migrate" in early.stderr, early

    done = migrate_command(url, key)
    assert done.returncode == 0, done.stderr
    assert f"sealed {_ALARMS + _NOTES} row(s) of 2 table(s)" in done.stdout, done.stdout
    assert f"alarms {_ALARMS}" in done.stdout and f"alarm_changes {_NOTES}" in done.stdout
    assert "eldercare db scrub" in done.stdout
    assert "up to date" not in done.stdout

    again = migrate_command(url, None)
    assert again.returncode == 0 and again.stdout.strip() == "up to date", again

    # The rewrite waits for no open transaction longer than its lock timeout: it gives up, naming the table.
    with psycopg.connect(url) as writer:
        _new_alarm(writer, clear_db.institution)
        blocked = scrub_command(url, "--lock-timeout", "200ms")
        writer.rollback()
    assert blocked.returncode == 1 and "alarms" in blocked.stderr and "200ms" in blocked.stderr, blocked

    with psycopg.connect(url) as conn:
        before = _files(conn)
    scrubbed = scrub_command(url)
    assert scrubbed.returncode == 0, scrubbed.stderr
    # and those that held positions (0024), payloads (0026), heart and breathing rates (0028)
    assert "rewrote 10 table(s)" in scrubbed.stdout
    with psycopg.connect(url) as conn:
        after = _files(conn)
    assert set(before) == set(after) and all(before[t] != after[t] for t in before)  # new files: the old are gone


_TABLES = ("alarms", "alarm_changes", "hospital_stays", "deaths")


def _files(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT relname, relfilenode FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'", (list(_TABLES),)
    ).fetchall()
    return {str(name): int(str(node)) for name, node in rows}
