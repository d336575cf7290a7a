"""One data key per database: every process that seals or opens personal data checks its key first.

A platform, an ingest or a migrate started with another ``ELDERCARE_DATA_KEY`` than the one the database's data is
sealed with (a copy-paste slip, a secret rotated in one service only) would seal new names, positions and payloads
that the others cannot open, beside old data it cannot open itself, and say nothing until someone reads one. So
the key's check value (:meth:`Vault.key_check`) is recorded in ``data_key_check`` (migration 0027) by the first
process that uses a key, and compared by every one after, which refuses to start on a mismatch. The first record
is itself checked: if the database already holds sealed names, one must open with the key.

A rotation (migration 0029): a process started with a new key and the recorded one as its previous key
(``ELDERCARE_DATA_KEY_PREVIOUS``) records the new key as the current one and keeps the old one's check value as
*retiring*, until ``eldercare db rekey`` has re-sealed everything the old key sealed and forgets it
(:func:`finish_rotation`). Meanwhile a process on the old key (a service someone forgot to update) is refused, and
so is one on the new key without the old one as its previous key: it could not open what is not re-sealed yet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from eldercare.platform.crypto import DecryptionError, Vault

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]


class DataKeyMismatchError(RuntimeError):
    """The key is not the one this database's personal data is sealed with."""


_WRONG = (
    "ELDERCARE_DATA_KEY is not the key this database's personal data is sealed with ({why}); refusing to seal or "
    "open anything with it. Use the key the other services use."
)
_RETIRING = (
    "ELDERCARE_DATA_KEY is the key being rotated away from: the database's data is now sealed with a new key. Set "
    "this service's ELDERCARE_DATA_KEY to the new key and ELDERCARE_DATA_KEY_PREVIOUS to this one, as on the other "
    "services, and start it again."
)
_UNFINISHED = (
    "a rotation of the data key is not finished: personal data sealed with the previous key remains, which "
    "ELDERCARE_DATA_KEY alone does not open. Set ELDERCARE_DATA_KEY_PREVIOUS to the previous key ({why}) and run "
    "`eldercare db rekey` to finish the rotation."
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``data_key_check`` says: the current key's check value, and the retiring key's during a rotation."""

    current: bytes
    retiring: bytes | None


def check_data_key(conninfo: str, vault: Vault) -> None:
    """Record the key's check value if none is, or compare it: :class:`DataKeyMismatchError` if it differs. Before
    migration 0027 (an older schema, a migrate about to apply it) there is nothing to compare with, and nothing
    is recorded. A vault whose previous key is the one recorded starts a rotation (before migration 0029 it is
    refused: there is nowhere to record one)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not _has_table(conn):
            return
        mine, theirs = vault.key_check(), vault.previous_key_check()
        found = recorded(conn)
        if found is None:
            first = mine if _opens_what_is_sealed(conn, vault) else theirs  # the previous key's: rotated below
            conn.execute("INSERT INTO data_key_check (check_value) VALUES (%s) ON CONFLICT DO NOTHING", (first,))
            found = recorded(conn)
            assert found is not None
        if found.current == theirs and found.current != mine and found.retiring is None:  # not one in another
            if not _can_rotate(conn):
                raise DataKeyMismatchError(_WRONG.format(why="run `eldercare db migrate` before rotating it"))
            # The first process on the new key starts the rotation; the others find it started.
            conn.execute(
                "UPDATE data_key_check SET check_value = %s, retiring_check = check_value, rotation_started_at = now()"
                " WHERE check_value = %s",
                (mine, theirs),
            )
            log.warning("data key rotation started: the new key is recorded; run `eldercare db rekey` to finish it")
            found = recorded(conn)
            assert found is not None
        if found.current != mine:
            if found.retiring is not None and found.retiring == mine:
                raise DataKeyMismatchError(_RETIRING)
            raise DataKeyMismatchError(_WRONG.format(why="its check value differs from the one recorded"))
        if found.retiring is not None and found.retiring != theirs:
            why = "it is not set" if theirs is None else "it is set to another key"
            raise DataKeyMismatchError(_UNFINISHED.format(why=why))


KEY_TAG = "key="  # in a connection's application_name: which data key the process holds


def key_tag(check_value: bytes) -> str:
    """What a process's connections carry in ``application_name`` to say which data key it seals with: the first four
    bytes of the key's check value (which reveal nothing of the key, see :meth:`Vault.key_check`)."""
    return KEY_TAG + check_value[:4].hex()


def tagged(conninfo: str, vault: Vault, name: str) -> str:
    """``conninfo`` whose connections are named ``name key=<tag>`` (``pg_stat_activity.application_name``), so that
    ``eldercare db rekey`` can find a service still running on the key being rotated away from, which no start-up
    check sees (it started before the rotation, and was not restarted)."""
    return make_conninfo(conninfo, application_name=f"{name} {key_tag(vault.key_check())}")


def holders_of(conn: Conn, check_value: bytes) -> list[str]:
    """The connections, other than this one, of processes that hold the key of ``check_value`` (by their tag): each
    as its name, client address and start, for an operator to find."""
    return _described(conn, "application_name LIKE %s", ("% " + key_tag(check_value),))


def untagged(conn: Conn) -> list[str]:
    """The connections, other than this one, to this database as this one's role whose name carries no key tag where
    a process of this version would: none at all (a platform of the version before the tags, or a client that names
    itself nothing: a psql session, a script) or an ingest part's without one (an ingest of that version). Which key
    they hold is not known. Other roles' connections (a dashboard's reader, the superuser, backup tools) are not
    looked at: they are not the services'. Described as :func:`holders_of`'s."""
    return _described(
        conn,
        "datname = current_database() AND usename = session_user AND backend_type = 'client backend'"
        " AND (application_name = '' OR (application_name LIKE 'ingest-%%' AND strpos(application_name, %s) = 0))",
        (" " + KEY_TAG,),
    )


def _described(conn: Conn, where: str, params: tuple[str, ...]) -> list[str]:
    rows = conn.execute(
        "SELECT application_name, coalesce(host(client_addr), 'local socket'), backend_start, pid"  # noqa: S608
        f" FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND {where} ORDER BY backend_start",
        params,
    ).fetchall()
    return [_describe(*row) for row in rows]


def _describe(name: str, addr: str, start: datetime | None, pid: int) -> str:
    if start is None:  # another role's connection, whose address and start this role is not shown
        return f"{name or '(no name)'} (of another database role, pid {pid})"
    return f"{name or '(no name)'} (from {addr}, since {start:%Y-%m-%d %H:%M:%S %Z}, pid {pid})"


def recorded(conn: Conn) -> Recorded | None:
    """The check values recorded (None: none yet)."""
    retiring = "retiring_check" if _can_rotate(conn) else "NULL::bytea"
    row = conn.execute(f"SELECT check_value, {retiring} FROM data_key_check").fetchone()  # noqa: S608 - one of two
    if row is None:
        return None
    return Recorded(bytes(row[0]), None if row[1] is None else bytes(row[1]))


def finish_rotation(conn: Conn, vault: Vault) -> bool:
    """Forget the retiring key, once nothing it sealed remains (the caller's word: ``rekey.py``); whether a rotation
    of ``vault``'s keys was under way."""
    done = conn.execute(
        "UPDATE data_key_check SET retiring_check = NULL, rotation_started_at = NULL"
        " WHERE check_value = %s AND retiring_check = %s",
        (vault.key_check(), vault.previous_key_check()),
    )
    return done.rowcount > 0


def _has_table(conn: Conn) -> bool:
    row = conn.execute("SELECT to_regclass('data_key_check') IS NOT NULL").fetchone()
    return row is not None and bool(row[0])


def _can_rotate(conn: Conn) -> bool:
    """Whether migration 0029 has added the rotation's columns."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'data_key_check' AND column_name = 'retiring_check'"
        " AND table_schema = current_schema())"
    ).fetchone()
    return row is not None and bool(row[0])


def _opens_what_is_sealed(conn: Conn, vault: Vault) -> bool:
    """Before the first record: a resident's sealed name, if there is one, must open with the key (True) or with the
    previous key (False: the data is sealed with the previous key, and a rotation starts)."""
    row = conn.execute("SELECT name_enc FROM residents WHERE name_enc IS NOT NULL LIMIT 1").fetchone()
    if row is None:
        return True
    try:
        Vault(vault.data_key).decrypt(bytes(row[0]), column="residents.name")
    except DecryptionError:
        pass
    else:
        return True
    try:
        vault.decrypt(bytes(row[0]), column="residents.name")  # the previous key, if there is one
    except DecryptionError:
        raise DataKeyMismatchError(_WRONG.format(why="a resident's name sealed here does not open with it")) from None
    return False


def checked_vault(conninfo: str, data_key: bytes, *, previous: bytes | None = None, wait_s: float = 0.0) -> Vault:
    """The vault of ``data_key`` (and ``previous``, during a rotation), once the key is checked against the
    database's (:func:`check_data_key`).

    ``wait_s``: a database that cannot be reached is tried again, every second or two, for up to that long (a
    service started before its database, or while it restarts), and then the error is raised; a wrong key is
    raised at once."""
    vault = Vault(data_key, previous=previous)
    deadline = time.monotonic() + wait_s
    tries = 0
    while True:
        try:
            check_data_key(conninfo, vault)
        except psycopg.OperationalError as exc:
            tries += 1
            if time.monotonic() >= deadline:
                raise
            log.warning("data key check: the database cannot be reached (%s); trying again", exc)
            time.sleep(min(2.0, 0.25 * tries))
            continue
        return vault
