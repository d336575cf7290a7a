"""One data key per database: every process that seals or opens personal data checks its key first.

A platform, an ingest or a migrate started with another ``ELDERCARE_DATA_KEY`` than the one the database's data is
sealed with (a copy-paste slip, a secret rotated in one service only) would seal new names, positions and payloads
that the others cannot open, beside old data it cannot open itself, and say nothing until someone reads one. So
the key's check value (:meth:`Vault.key_check`) is recorded in ``data_key_check`` (migration 0027) by the first
process that uses a key, and compared by every one after, which refuses to start on a mismatch. The first record
is itself checked: if the database already holds sealed names, one must open with the key.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from eldercare.platform.crypto import DecryptionError, Vault

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]


class DataKeyMismatchError(RuntimeError):
    """The key is not the one this database's personal data is sealed with."""


_WRONG = (
    "ELDERCARE_DATA_KEY is not the key this database's personal data is sealed with ({why}); refusing to seal or "
    "open anything with it. Use the key the other services use."
)


def check_data_key(conninfo: str, vault: Vault) -> None:
    """Record the key's check value if none is, or compare it: :class:`DataKeyMismatchError` if it differs. Before
    migration 0027 (an older schema, a migrate about to apply it) there is nothing to compare with, and nothing
    is recorded."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not _has_table(conn):
            return
        mine = vault.key_check()
        row = conn.execute("SELECT check_value FROM data_key_check").fetchone()
        if row is None:
            _opens_what_is_sealed(conn, vault)
            conn.execute("INSERT INTO data_key_check (check_value) VALUES (%s) ON CONFLICT DO NOTHING", (mine,))
            row = conn.execute("SELECT check_value FROM data_key_check").fetchone()
            assert row is not None
        if bytes(row[0]) != mine:
            raise DataKeyMismatchError(_WRONG.format(why="its check value differs from the one recorded"))


def _has_table(conn: Conn) -> bool:
    row = conn.execute("SELECT to_regclass('data_key_check') IS NOT NULL").fetchone()
    return row is not None and bool(row[0])


def _opens_what_is_sealed(conn: Conn, vault: Vault) -> None:
    """Before the first record: a resident's sealed name, if there is one, must open with the key."""
    row = conn.execute("SELECT name_enc FROM residents WHERE name_enc IS NOT NULL LIMIT 1").fetchone()
    if row is None:
        return
    try:
        vault.decrypt(bytes(row[0]), column="residents.name")
    except DecryptionError:
        raise DataKeyMismatchError(_WRONG.format(why="a resident's name sealed here does not open with it")) from None


def checked_vault(conninfo: str, data_key: bytes, *, wait_s: float = 0.0) -> Vault:
    """The vault of ``data_key``, once the key is checked against the database's (:func:`check_data_key`).

    ``wait_s``: a database that cannot be reached is tried again, every second or two, for up to that long (a
    service started before its database, or while it restarts), and then the error is raised; a wrong key is
    raised at once."""
    vault = Vault(data_key)
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
