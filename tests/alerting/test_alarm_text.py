"""Alarm text (an alarm's detail, its outcome, the notes of its changes) is health data: encrypted at rest, in clear
for the home's staff (and, but for the staff's notes and names, for the resident's family), masked for regulators,
every read audited; what an older version stored in clear is encrypted by ``eldercare db migrate``. All through the
platform's HTTP API served by uvicorn, the real engine and ticker, and the real database."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.alerting.conftest import alarm_text, process, put_event, run, tick, with_conn
from tests.alerting.receivers import WebhookServer
from tests.alerting.test_delivery import _button, _channel, _deliver, _family
from tests.platform_procs import migrate_command
from tests.registry.support import (
    ADMIN_PASSWORD,
    Client,
    Database,
    Server,
    data_key,
    drop_database,
    login,
    make_admin,
    old_database,
)

from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.platform.db import migrate as mig
from eldercare.platform.notify import sender
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import SeededHome

PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


def _mark() -> str:
    """A word found nowhere else, not even by chance in the hex of a ciphertext."""
    return "MARK" + "".join(secrets.choice("ghijklmnopqrstuvwxyz") for _ in range(10))


@dataclass(frozen=True, slots=True)
class Fall:
    """A fall at a resident's bed, escalated once, acknowledged and resolved by the home's nurse."""

    alarm_id: int
    resident_id: int
    detail: dict[str, Any]
    outcome: str
    notes: tuple[str, str]  # the nurse's, on acknowledging and on resolving
    family: str  # the username of the resident's family member (password "password-123")


def _regulator(db: str, home: SeededHome) -> str:
    name = f"reg-{home.institution_code[-6:].lower()}"

    async def make(conn: AsyncConn) -> int:
        return await create_user(conn, username=name, password="password-123", role=Role.REGULATOR, region_code="4205")

    run(with_conn(db, make))
    return name


def _stream_snapshot(client: Client) -> list[dict[str, Any]]:
    """The first event of the caller's live alarm stream: the open alarms it is shown."""
    with client.http.stream("GET", f"{client.base}/api/v1/alarms/stream", params={"token": client.token}) as reply:
        assert reply.status_code == 200
        name = ""
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == "snapshot":
                found: list[dict[str, Any]] = json.loads(line.removeprefix("data: "))
                return found
    raise AssertionError("the stream ended before its snapshot")


def _handled_fall(
    db: str, vault: Vault, home: SeededHome, server: Server, webhooks: WebhookServer
) -> tuple[Fall, Client, list[dict[str, Any]]]:
    """The fall, the nurse's client, and the snapshot of the nurse's live stream while the fall was open."""
    mark = _mark()
    button, bed = _button(home)
    family_id = _family(db, home, bed)
    _channel(db, vault, family_id, "webhook_json", f"{webhooks.url}/json", 1)
    detail = {"source": "radar", "where": f"卫生间门口 {mark}", "confidence": 0.93}
    put_event(db, home, button, "fall", detail, datetime.now(UTC))
    assert process(db, vault) == 1
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id, resident_id FROM alarms WHERE institution_id = %s AND kind = 'fall'", (home.institution_id,)
        ).fetchone()
        assert row is not None
        # nobody acknowledged it within the escalation rule's minute: the ticker escalates it (a system note)
        conn.execute("UPDATE alarms SET raised_at = raised_at - interval '61 seconds' WHERE id = %s", (row[0],))
    tick(db, vault)

    nurse = login(server.base, home.staff_username, home.staff_password)
    snapshot = _stream_snapshot(nurse)
    notes = (f"家属已电话通知 {mark}", f"左膝擦伤已消毒，明早复查 {mark}")
    outcome = f"fell, bruised knee, doctor called {mark}"
    nurse.ok("POST", f"/api/v1/alarms/{row[0]}/acknowledge", json={"note": notes[0]})
    closed = nurse.ok("POST", f"/api/v1/alarms/{row[0]}/resolve", json={"outcome": outcome, "note": notes[1]})
    assert (closed["state"], closed["outcome"]) == ("resolved", outcome)  # the writer gets back what it wrote
    fall = Fall(row[0], row[1], detail, outcome, notes, f"family-{home.institution_code[-6:].lower()}")
    return fall, nurse, snapshot


def _health_reads(db: str, actor: str, alarm_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'read_health' AND actor = %s AND object_type = 'alarm'"
            " AND object_id = %s ORDER BY seq",
            (actor, alarm_id),
        ).fetchall()
    return [detail for (detail,) in rows]


def _dump(admin_url: str) -> bytes:
    return subprocess.run(
        [PG_DUMP, "--data-only", "--no-owner", admin_url], capture_output=True, check=True, timeout=300
    ).stdout


def _history(client: Client, alarm_id: int) -> tuple[list[tuple[str, str | None, str, str]], str]:
    """The alarm's history as ``client`` is shown it: (actor, from, to, note) per change; and the raw answer."""
    reply = client.get(f"/api/v1/alarms/{alarm_id}/history")
    assert reply.status_code == 200, reply.text
    return [(c["actor"], c["from_state"], c["to_state"], c["note"]) for c in reply.json()], reply.text


def test_alarm_text_is_stored_encrypted_and_the_staff_read_it_in_clear_audited(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    with Server(database_url=db, key=vault.data_key, state_dir=stack.state_dir) as server:
        fall, nurse, snapshot = _handled_fall(db, vault, home, server, webhooks)
        texts = (fall.detail["where"], fall.outcome, *fall.notes)

        # At rest: neither the alarm's row nor its changes hold any of the texts, nor does any other row of the
        # database; the key opens them.
        with psycopg.connect(db) as conn:
            stored = conn.execute("SELECT row_to_json(a)::text FROM alarms a WHERE id = %s", (fall.alarm_id,))
            alarm_row = (stored.fetchone() or ("",))[0]
            changed = conn.execute(
                "SELECT string_agg(row_to_json(c)::text, ' ') FROM alarm_changes c WHERE alarm_id = %s",
                (fall.alarm_id,),
            )
            change_rows = (changed.fetchone() or ("",))[0]
        for text in texts:
            for where in (alarm_row, change_rows):
                assert text not in where and text.encode().hex() not in where, text
        assert '"detail":{}' in alarm_row and '"outcome":null' in alarm_row  # the old columns stay empty
        sealed = alarm_text(db, vault, fall.alarm_id)
        assert (sealed.detail, sealed.outcome) == (fall.detail, fall.outcome)
        assert sealed.notes == [
            "fall from device",
            "not acknowledged: escalated to level 1",
            fall.notes[0],
            fall.notes[1],
        ]
        dump = _dump(stack.admin_database_url)
        for text in texts:
            assert text.encode() not in dump, text

        # The home's staff read it all in clear: the alarm, its history with who did what, the resident's alarms,
        # the live stream; each read is audited as a read of health data naming the alarm.
        assert [(a["id"], a["detail"]) for a in snapshot if a["id"] == fall.alarm_id] == [(fall.alarm_id, fall.detail)]
        before = len(_health_reads(db, nurse.username, fall.alarm_id))
        shown = nurse.ok("GET", f"/api/v1/alarms/{fall.alarm_id}")
        assert (shown["detail"], shown["outcome"]) == (fall.detail, fall.outcome)
        assert _history(nurse, fall.alarm_id)[0] == [
            ("system", None, "raised", "fall from device"),
            ("system", "raised", "raised", "not acknowledged: escalated to level 1"),
            (nurse.username, "raised", "acknowledged", fall.notes[0]),
            (nurse.username, "acknowledged", "resolved", fall.notes[1]),
        ]
        reads = _health_reads(db, nurse.username, fall.alarm_id)
        assert [r["as"] for r in reads[before:]] == ["alarm", "history"]
        assert all(r["alarms"] == [fall.alarm_id] and r["residents"] == [fall.resident_id] for r in reads[before:])
        listed = nurse.ok("GET", f"/api/v1/residents/{fall.resident_id}/alarms")
        assert [(a["detail"], a["outcome"]) for a in listed if a["id"] == fall.alarm_id] == [
            (fall.detail, fall.outcome)
        ]

    # The family is told how it ended: the sender opens the outcome for the message.
    assert _deliver(db, vault, None, sender.SenderPolicy(min_interval_s=0)) >= 1
    told = [json.loads(h.body) for h in webhooks.hits if h.path == "/json"]
    resolved = [a for m in told for a in m["alarms"] if a["alarm_id"] == fall.alarm_id and a["event"] == "resolved"]
    assert [a["outcome"] for a in resolved] == [fall.outcome]
    assert any(fall.outcome in m["text"] for m in told)


def test_a_family_sees_the_story_without_the_staffs_names_or_notes_and_a_regulator_sees_the_text_masked(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    regulator_name = _regulator(db, home)
    with Server(database_url=db, key=vault.data_key, state_dir=stack.state_dir) as server:
        fall, nurse, _ = _handled_fall(db, vault, home, server, webhooks)

        # The family: the alarm of their elder in clear (what happened, how it ended); its history is each change
        # of state and when, made by "system" or "staff", with no note and no escalation; the read is audited.
        family = login(server.base, fall.family, "password-123")
        shown = family.ok("GET", f"/api/v1/alarms/{fall.alarm_id}")
        assert (shown["detail"], shown["outcome"]) == (fall.detail, fall.outcome)
        story, answer = _history(family, fall.alarm_id)
        assert story == [
            ("system", None, "raised", ""),
            ("staff", "raised", "acknowledged", ""),
            ("staff", "acknowledged", "resolved", ""),
        ]
        for secret in (nurse.username, *fall.notes, "escalated", "fall from device"):
            assert secret not in answer, secret
        assert [r["as"] for r in _health_reads(db, family.username, fall.alarm_id)] == ["alarm", "history"]

        # The region's regulator: the alarm and its history, the texts masked (there is a detail, an outcome and
        # notes, not what they say); audited as well.
        regulator = login(server.base, regulator_name, "password-123")
        masked = regulator.ok("GET", f"/api/v1/alarms/{fall.alarm_id}")
        assert masked["detail"] == {"source": "***", "where": "***", "confidence": "***"}
        assert masked["outcome"] == "***"
        assert [(actor, note) for actor, _, _, note in _history(regulator, fall.alarm_id)[0]] == [
            ("system", "***"),
            ("system", "***"),
            (nurse.username, "***"),
            (nurse.username, "***"),
        ]
        assert [r["as"] for r in _health_reads(db, regulator.username, fall.alarm_id)] == ["alarm", "history"]
        listed = regulator.ok("GET", f"/api/v1/residents/{fall.resident_id}/alarms")
        assert [(a["detail"]["where"], a["outcome"]) for a in listed if a["id"] == fall.alarm_id] == [("***", "***")]
        reply = regulator.get("/api/v1/alarms", params={"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()})
        assert reply.status_code == 200 and fall.alarm_id in [a["id"] for a in reply.json()]
        assert fall.outcome not in reply.text and fall.detail["where"] not in reply.text


# --- what an older version stored in clear --------------------------------------------------------------------

_DETAIL = {"out_of_range": ["heart_rate"], "heart_rate": 138, "note": "心率过速 旧版本"}
_OUTCOME = "送医院急诊，家属陪同 旧版本"
_NOTES = ("vital signs out of the resident's range", "已通知值班医生 旧版本", "")


@pytest.fixture
def old_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A database migrated up to the version before alarm text was encrypted, with such text in clear: a closed
    alarm with a detail, an outcome and notes (one of them empty), and an open one without any."""
    db, home = old_database(stack, monkeypatch, below=13, prefix="ec_alarm_clear")
    with psycopg.connect(db.url, autocommit=True) as conn:
        closed = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, last_event_at, closed_at,"
            " outcome, detail) VALUES (%s, 'vitals', 'urgent', 'resolved', now() - interval '1 hour',"
            " now() - interval '1 hour', now(), %s, %s) RETURNING id",
            (home, _OUTCOME, json.dumps(_DETAIL, ensure_ascii=False)),
        ).fetchone()
        assert closed is not None
        conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at)"
            " VALUES (%s, 'gateway_offline', 'technical', now(), now())",
            (home,),
        )
        changes = [
            ("system", None, "raised", _NOTES[0]),
            ("nurse-old", "raised", "acknowledged", _NOTES[1]),
            ("nurse-old", "acknowledged", "resolved", _NOTES[2]),
        ]
        for minutes, (actor, old, new, note) in zip((30, 20, 10), changes, strict=True):
            conn.execute(
                "INSERT INTO alarm_changes (alarm_id, at, actor, from_state, to_state, note)"
                " VALUES (%s, now() - make_interval(mins => %s), %s, %s, %s, %s)",
                (closed[0], minutes, actor, old, new, note),
            )
    yield db
    drop_database(stack, db)


def test_migrate_encrypts_the_alarm_text_an_older_version_stored_in_clear(stack: StackInfo, old_db: Database) -> None:
    key = data_key(stack)
    refused = migrate_command(old_db.url, None)
    assert refused.returncode != 0 and "ELDERCARE_DATA_KEY" in refused.stderr, refused.stderr
    done = migrate_command(old_db.url, key)
    assert done.returncode == 0, done.stderr

    vault = Vault(key)
    with psycopg.connect(old_db.url) as conn:
        alarms = conn.execute("SELECT id, detail, outcome, detail_enc, outcome_enc FROM alarms ORDER BY id").fetchall()
        notes = conn.execute("SELECT note, note_enc FROM alarm_changes ORDER BY id").fetchall()
    # nothing left in clear; the key opens what was there, and nothing was made up where there was nothing
    assert [(detail, outcome) for _, detail, outcome, _, _ in alarms] == [({}, None), ({}, None)]
    (closed, _, _, detail_enc, outcome_enc), (_, _, _, none_enc, no_outcome) = alarms
    assert json.loads(vault.decrypt(detail_enc, column="alarms.detail")) == _DETAIL
    assert vault.decrypt(outcome_enc, column="alarms.outcome") == _OUTCOME
    assert (none_enc, no_outcome) == (None, None)
    assert [note for note, _ in notes] == ["", "", ""]
    assert [None if e is None else vault.decrypt(e, column="alarm_changes.note") for _, e in notes] == [
        _NOTES[0],
        _NOTES[1],
        None,
    ]
    dump = _dump(old_db.admin_url)
    for secret in (_DETAIL["note"], _OUTCOME, _NOTES[1]):
        assert str(secret).encode() not in dump, secret

    # Nothing is in clear any more: the next migrate needs no key.
    again = migrate_command(old_db.url, None)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr

    # The API reads the converted rows back.
    make_admin(old_db, "admin-alarm-clear")
    with Server(database_url=old_db.url, key=key, state_dir=stack.state_dir) as server:
        admin = login(server.base, "admin-alarm-clear", ADMIN_PASSWORD)
        shown = admin.ok("GET", f"/api/v1/alarms/{closed}")
        history = admin.ok("GET", f"/api/v1/alarms/{closed}/history")
    assert (shown["detail"], shown["outcome"]) == (_DETAIL, _OUTCOME)
    assert [h["note"] for h in history] == list(_NOTES)


def test_text_written_in_clear_by_an_older_platform_after_the_migrate_is_shown_until_the_next_migrate_seals_it(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome
) -> None:
    """Between a migrate and the restart of every platform process, a process of the older version still writes
    the old columns: its alarms are shown with their text, and the next migrate seals it."""
    mark = _mark()
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at, detail)"
            " VALUES (%s, 'fall', 'emergency', now(), now(), %s) RETURNING id",
            (home.institution_id, json.dumps({"source": mark})),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO alarm_changes (alarm_id, actor, to_state, note) VALUES (%s, 'system', 'raised', %s)",
            (row[0], f"fall from device {mark}"),
        )
    with Server(database_url=db, key=vault.data_key, state_dir=stack.state_dir) as server:
        nurse = login(server.base, home.staff_username, home.staff_password)
        assert nurse.ok("GET", f"/api/v1/alarms/{row[0]}")["detail"] == {"source": mark}
        assert _history(nurse, row[0])[0][0][3] == f"fall from device {mark}"

    mig.migrate(db, data_key=vault.data_key)
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT row_to_json(a)::text FROM alarms a WHERE id = %s", (row[0],)).fetchone()
        note = conn.execute("SELECT note FROM alarm_changes WHERE alarm_id = %s", (row[0],)).fetchone()
    assert stored is not None and mark not in stored[0] and note == ("",)
    sealed = alarm_text(db, vault, row[0])
    assert (sealed.detail, sealed.notes) == ({"source": mark}, [f"fall from device {mark}"])


def test_a_text_that_does_not_decrypt_leaves_the_alarm_on_the_board(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome
) -> None:
    """A damaged value (or a wrong key) must not take the alarm list down with it: in an emergency the alarm is
    what matters. The alarm is shown, its text marked unreadable."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, occurred_at, last_event_at, detail_enc, outcome_enc)"
            " VALUES (%s, 'fall', 'emergency', now(), now(), %s, %s) RETURNING id",
            (
                home.institution_id,
                vault.encrypt('{"source": "radar"}', column="alarms.outcome"),  # bound to another column
                Vault(os.urandom(32)).encrypt("another key", column="alarms.outcome"),
            ),
        ).fetchone()
        assert row is not None
    with Server(database_url=db, key=vault.data_key, state_dir=stack.state_dir) as server:
        nurse = login(server.base, home.staff_username, home.staff_password)
        listed = nurse.ok("GET", "/api/v1/alarms", params={"open": "true"})
        assert [(a["detail"], a["outcome"]) for a in listed if a["id"] == row[0]] == [
            ({"unreadable": True}, "[unreadable]")
        ]
        assert [a["id"] for a in _stream_snapshot(nurse) if a["id"] == row[0]] == [row[0]]
