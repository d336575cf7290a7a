"""``eldercare db migrate`` gives the alarms closed before outcome codes (migration 0015) the code their outcome text
tells, where the platform itself wrote that text from a fixed list: the staff board's codes, the engine's and the
ticker's closing texts when the closing change shows that they made it. Free text stays not known. It goes in short
batches beside the running alarm engine, the figures' daily counts follow, and a second run has nothing to do."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from tests.platform_procs import migrate_command
from tests.registry.support import Database, data_key, drop_database, old_database

from eldercare.platform.crypto import Vault
from eldercare.platform.db import keycheck, outcomes
from eldercare.platform.db import migrate as mig
from eldercare.platform.stack.model import StackInfo

Conn = psycopg.Connection[tuple[Any, ...]]

STAFF, DEVICE, SYSTEM = "staff", "device", "system"  # who closed an alarm: a nurse through the API or the board, ...

# kind, priority, state closed to, the outcome text it was closed with, who closed it: the code it should get.
CASES: list[tuple[str, str, str, str, str, str | None]] = [
    ("fall", "emergency", "resolved", "false_alarm", STAFF, "false_alarm"),  # the board's radio buttons
    ("button", "emergency", "resolved", "accidental_press", STAFF, "accidental_press"),
    ("fall", "emergency", "resolved", "real_event", STAFF, "real_event"),
    ("sos", "emergency", "cancelled", " device_issue ", STAFF, "device_issue"),  # as the API reads a code since 0015
    ("fall", "emergency", "resolved", "other", STAFF, "other"),
    ("fall", "emergency", "resolved", "误报，老人未跌倒", STAFF, None),  # typed by staff: free text
    ("fall", "emergency", "resolved", "False alarm", STAFF, None),  # the board's label, not its code
    ("bed_exit", "urgent", "resolved", "back in bed", STAFF, None),  # the engine's words, typed by a nurse
    ("bed_exit", "urgent", "resolved", "back in bed", DEVICE, "real_event"),  # the engine's closing
    ("bed_exit", "urgent", "cancelled", "back in bed", DEVICE, None),  # not a closing the engine made
    ("button", "emergency", "cancelled", "cancelled at the bedside", DEVICE, "other"),
    ("smoke", "emergency", "resolved", "cleared by the sensor", DEVICE, "other"),
    ("device_low_battery", "technical", "resolved", "cleared by the device", DEVICE, "device_issue"),
    ("gateway_offline", "technical", "resolved", "gateway back online", SYSTEM, "device_issue"),
    ("fall", "emergency", "resolved", "back in bed", SYSTEM, None),  # a text of the engine's, not of the ticker's
]


@dataclass
class OldDb:
    """A database of the version before outcome codes (0014), alarms written as that version wrote them."""

    db: Database
    vault: Vault
    institution: int
    nurse: int  # a staff user's id
    expected: dict[int, str | None] = field(default_factory=dict)  # alarm id: the code it should get

    def closed(
        self,
        conn: Conn,
        *,
        kind: str,
        priority: str,
        state: str,
        outcome: str,
        by: str | None,
        sealed: bool = True,
        held_by: int | None = None,
        vault: Vault | None = None,
    ) -> int:
        """An alarm raised and closed as a version before 0015 did: the outcome text sealed (or in clear, before
        0013), its changes with their actors; ``by`` None: closed with no change recorded (the old ticker's
        held alarms)."""
        blob = (vault or self.vault).encrypt(outcome, column="alarms.outcome") if sealed else None
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at, last_event_at,"
            " acknowledged_at, closed_at, outcome, outcome_enc, held_by)"
            " VALUES (%s, %s, %s, %s, now(), now(), now(), now(), now(), %s, %s, %s) RETURNING id",
            (self.institution, kind, priority, state, None if sealed else outcome, blob, held_by),
        ).fetchone()
        assert row is not None
        alarm = int(row[0])
        conn.execute(
            "INSERT INTO alarm_changes (alarm_id, actor, to_state, note_enc) VALUES (%s, 'system', 'raised', %s)",
            (alarm, self.vault.encrypt("raised", column="alarm_changes.note")),
        )
        if by is not None:
            note = "" if by == STAFF else outcome  # the engine's and the ticker's note is the outcome
            conn.execute(
                "INSERT INTO alarm_changes (alarm_id, user_id, actor, from_state, to_state, note_enc)"
                " VALUES (%s, %s, %s, 'raised', %s, %s)",
                (
                    alarm,
                    self.nurse if by == STAFF else None,
                    "nurse-wang" if by == STAFF else by,
                    state,
                    self.vault.encrypt_text(note, column="alarm_changes.note"),
                ),
            )
        return alarm

    def opened(self, conn: Conn, *, kind: str = "bed_exit", priority: str = "urgent") -> int:
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at)"
            " VALUES (%s, %s, %s, now(), now()) RETURNING id",
            (self.institution, kind, priority),
        ).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def old_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[OldDb]:
    db, home = old_database(stack, monkeypatch, below=15, prefix="ec_outcome")
    with psycopg.connect(db.url, autocommit=True) as conn:
        nurse = conn.execute(
            "INSERT INTO users (username, password_hash, role, institution_id) VALUES"
            " ('nurse-wang', 'x', 'staff', %s) RETURNING id",
            (home,),
        ).fetchone()
        assert nurse is not None
    yield OldDb(db, Vault(data_key(stack)), home, int(nurse[0]))
    drop_database(stack, db)


def _codes(conn: Conn) -> dict[int, str | None]:
    return {int(i): c for i, c in conn.execute("SELECT id, outcome_code::text FROM alarms ORDER BY id")}


def _daily_matches_the_alarms(conn: Conn) -> None:
    """The triggers kept the daily tables (the figures, the regulators' pages, Grafana) equal to a recount of the
    alarms themselves (as tests/supervision/test_alarm_daily.py checks them)."""
    kept = conn.execute("SELECT * FROM supervision_alarm_daily WHERE alarms <> 0 ORDER BY 1, 2, 3, 4").fetchall()
    recount = conn.execute("SELECT * FROM supervision_alarm_daily_recomputed ORDER BY 1, 2, 3, 4").fetchall()
    assert kept == recount
    assert kept  # the comparison is about something
    times = (
        "SELECT institution_id, day, answered_late, ARRAY(SELECT unnest(ack_ms) ORDER BY 1),"
        " ARRAY(SELECT unnest(attend_ms) ORDER BY 1) FROM {}"
        " WHERE answered_late > 0 OR cardinality(ack_ms) > 0 OR cardinality(attend_ms) > 0 ORDER BY 1, 2"
    )
    kept = conn.execute(times.format("supervision_response_daily")).fetchall()
    assert kept == conn.execute(times.format("supervision_response_daily_recomputed")).fetchall()


def test_migrate_gives_old_alarms_the_code_their_outcome_text_tells(stack: StackInfo, old_db: OldDb) -> None:
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        gateway = 0
        for kind, priority, state, text, by, code in CASES:
            alarm = old_db.closed(conn, kind=kind, priority=priority, state=state, outcome=text, by=by)
            old_db.expected[alarm] = code
            gateway = alarm if kind == "gateway_offline" else gateway
        # written before 0013, still in clear: sealed first, then read
        clear = old_db.closed(
            conn, kind="fall", priority="emergency", state="resolved", outcome="false_alarm", by=STAFF, sealed=False
        )
        old_db.expected[clear] = "false_alarm"
        # the old ticker closed the alarms held under a gateway's outage unseen, with no change: says nothing
        held = old_db.closed(
            conn,
            kind="fall",
            priority="emergency",
            state="resolved",
            outcome="held back during a gateway outage",
            by=None,
            held_by=gateway,
        )
        old_db.expected[held] = None
        still_open = old_db.opened(conn)
        old_db.expected[still_open] = None

    mig.migrate(old_db.db.url, data_key=data_key(stack))

    with psycopg.connect(old_db.db.url) as conn:
        assert _codes(conn) == old_db.expected
        _daily_matches_the_alarms(conn)
        # the regulators' false alarms: alarms for people (not technical, not held), coded, and the false among them
        figures = conn.execute(
            "SELECT coded, false_alarms FROM supervision_false_alarms(%s, current_date - 2, current_date + 2)"
            " WHERE institution_id = %s",
            ([old_db.institution], old_db.institution),
        ).fetchone()
        clear_left = conn.execute("SELECT count(*) FROM alarms WHERE outcome IS NOT NULL").fetchone()
    people = [code for _, priority, _, _, _, code in CASES if priority != "technical"] + ["false_alarm"]  # + clear
    coded = [code for code in people if code is not None]
    false = [c for c in coded if c in ("false_alarm", "accidental_press", "device_issue")]
    assert figures == (len(coded), len(false)) == (9, 4)
    assert clear_left == (0,)

    # Nothing left to look at: the second run reads no alarm.
    assert outcomes.backfill_outcome_codes(old_db.db.url, data_key=data_key(stack)) == outcomes.Backfilled()


def test_an_alarm_open_during_the_migrate_is_looked_at_by_the_next(stack: StackInfo, old_db: OldDb) -> None:
    """A platform of a version before 0015 still runs between the migrate and its restart: an alarm open while the
    migrate ran, closed by that platform without a code, is looked at by the next migrate."""
    key = data_key(stack)
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        waiting = old_db.opened(conn)
        after = old_db.closed(
            conn, kind="fall", priority="emergency", state="resolved", outcome="false_alarm", by=STAFF
        )
    mig.migrate(old_db.db.url, data_key=key)
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        assert _codes(conn) == {waiting: None, after: "false_alarm"}
        # the old engine closes it: its text, no code
        conn.execute(
            "UPDATE alarms SET state = 'resolved', closed_at = now(), outcome_enc = %s WHERE id = %s",
            (old_db.vault.encrypt("back in bed", column="alarms.outcome"), waiting),
        )
        conn.execute(
            "INSERT INTO alarm_changes (alarm_id, actor, from_state, to_state) VALUES (%s, 'device', 'raised',"
            " 'resolved')",
            (waiting,),
        )
    again = outcomes.backfill_outcome_codes(old_db.db.url, data_key=key)
    assert (again.examined, again.filled) == (1, 1)
    with psycopg.connect(old_db.db.url) as conn:
        assert _codes(conn) == {waiting: "real_event", after: "false_alarm"}
        _daily_matches_the_alarms(conn)


def test_a_text_that_does_not_decrypt_stays_not_known_and_is_read_again(stack: StackInfo, old_db: OldDb) -> None:
    key = data_key(stack)
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        damaged = old_db.closed(
            conn,
            kind="fall",
            priority="emergency",
            state="resolved",
            outcome="false_alarm",
            by=STAFF,
            vault=Vault(os.urandom(32)),  # another key: it does not open
        )
        fine = old_db.closed(conn, kind="fall", priority="emergency", state="resolved", outcome="false_alarm", by=STAFF)
    mig.apply_migrations(old_db.db.url)
    first = outcomes.backfill_outcome_codes(old_db.db.url, data_key=key)
    assert (first.examined, first.filled, first.unreadable, first.left) == (2, 1, 1, 1)
    second = outcomes.backfill_outcome_codes(old_db.db.url, data_key=key)
    assert (second.examined, second.filled, second.unreadable) == (1, 0, 1)
    told = migrate_command(old_db.db.url, key)
    assert told.returncode == 0, told.stderr
    assert "1 alarm outcome text(s) did not decrypt" in told.stderr
    with psycopg.connect(old_db.db.url) as conn:
        assert _codes(conn) == {damaged: None, fine: "false_alarm"}


def test_migrate_says_how_many_it_filled_and_needs_the_key_to_read(stack: StackInfo, old_db: OldDb) -> None:
    key = data_key(stack)
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        for text, by in (("false_alarm", STAFF), ("其他情况", STAFF), ("back in bed", DEVICE), ("real_event", STAFF)):
            old_db.closed(conn, kind="bed_exit", priority="urgent", state="resolved", outcome=text, by=by)

    refused = migrate_command(old_db.db.url, None)
    assert refused.returncode == 1, refused
    assert "applied 0015_alarm_outcome_code" in refused.stdout
    assert "ELDERCARE_DATA_KEY" in refused.stderr and "outcome" in refused.stderr
    assert "Traceback" not in refused.stderr

    done = migrate_command(old_db.db.url, key)
    assert done.returncode == 0, done.stderr
    assert "gave 3 of 4 closed alarm(s) without an outcome code" in done.stdout, done.stdout
    assert "1 left not known" in done.stdout
    assert "up to date" not in done.stdout

    again = migrate_command(old_db.db.url, None)  # nothing to read: no key needed
    assert again.returncode == 0 and again.stdout.strip() == "up to date", again


def test_alarms_raised_since_the_codes_are_not_read_and_need_no_key(stack: StackInfo, old_db: OldDb) -> None:
    """An alarm raised after 0015 got its code when it was closed, or has none because staff gave none (the API read
    the text then): a migrate of a live database reads none of them again, and needs no key for them. (Before, every
    migrate of a database with such an alarm stopped for the key: the test suite's own, among others.)"""
    first = migrate_command(old_db.db.url, data_key(stack))
    assert first.returncode == 0, first.stderr
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        old_db.closed(conn, kind="bed_exit", priority="urgent", state="resolved", outcome="老人自己回床", by=STAFF)
        old_db.closed(conn, kind="bed_exit", priority="urgent", state="resolved", outcome="back in bed", by=DEVICE)
    again = migrate_command(old_db.db.url, None)
    assert again.returncode == 0 and again.stdout.strip() == "up to date", again


class _SlowVault(Vault):
    """Decrypting takes 2 ms a text: a batch of 100 alarms lasts about 0.2 s, the whole run a few seconds."""

    def decrypt(self, blob: bytes, *, column: str) -> str:
        time.sleep(0.002)
        return super().decrypt(blob, column=column)


_ALARMS = 1000


def test_the_codes_are_filled_in_batches_while_the_alarm_engine_writes(
    stack: StackInfo, old_db: OldDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine raises alarms of the same home, day, kind and priority as those being filled, so it writes the
    same daily count rows as the back-fill's triggers: it waits at most one short batch, and no count is lost."""
    key = data_key(stack)
    with psycopg.connect(old_db.db.url, autocommit=True) as conn:
        sealed = old_db.vault.encrypt("false_alarm", column="alarms.outcome")
        conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, last_event_at, closed_at,"
            " outcome_enc) SELECT %s, 'fall', 'emergency', 'resolved', now(), now(), now(), %s"
            " FROM generate_series(1, %s)",
            (old_db.institution, sealed, _ALARMS),
        )
    mig.apply_migrations(old_db.db.url)
    monkeypatch.setattr(outcomes, "OUTCOME_BATCH_ROWS", 100)
    monkeypatch.setattr(keycheck, "Vault", _SlowVault)  # where the back-fill's vault is made
    error: list[BaseException] = []

    def run() -> None:
        try:
            outcomes.backfill_outcome_codes(old_db.db.url, data_key=key)
        except BaseException as exc:  # handed to the test
            error.append(exc)

    thread = threading.Thread(target=run, name="backfill", daemon=True)
    seen: set[int] = set()
    writes = 0
    refused: list[str] = []
    with psycopg.connect(old_db.db.url, autocommit=True) as engine:
        engine.execute("SET lock_timeout = '1s'")  # far longer than a batch, far shorter than the whole run
        thread.start()
        while thread.is_alive():
            try:
                old_db.opened(engine, kind="fall", priority="emergency")
            except psycopg.errors.LockNotAvailable as exc:
                refused.append(str(exc))
            writes += 1
            count = engine.execute("SELECT count(*) FROM alarms WHERE outcome_code IS NOT NULL").fetchone()
            assert count is not None
            seen.add(int(count[0]))
            time.sleep(0.05)
        thread.join()
    assert error == [], error
    assert refused == [], f"the engine waited for a lock past its lock_timeout: {refused}"
    assert writes >= 5, "the run ended before the engine could write: slow it down"
    assert len([n for n in seen if 0 < n < _ALARMS]) >= 3, f"no batches were committed on the way: saw {sorted(seen)}"
    with psycopg.connect(old_db.db.url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE outcome_code = 'false_alarm'), count(*) FILTER (WHERE state = 'raised')"
            " FROM alarms"
        ).fetchone()
        _daily_matches_the_alarms(conn)
    assert row == (_ALARMS, writes)
