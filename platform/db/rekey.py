"""``eldercare db rekey``: the end of a data key rotation, re-sealing with the current key everything the previous key
sealed, then forgetting the previous key (``platform/db/keycheck.py``).

Run with ``ELDERCARE_DATA_KEY`` the new key and ``ELDERCARE_DATA_KEY_PREVIOUS`` the old one, once every service runs
with both. Each table that holds sealed values (:func:`sealed_tables`: every ``*_enc`` column, bound to the same
column, and to the same row where a value is bound to its row) is walked in key or time order in short batches
(:func:`batches.in_batches`: a transaction each, locking only its rows, so the platform and ingest run on); a value
the current key opens is left, one the previous key opens is sealed again with the current key; the residents' ID
number hashes are computed again from the numbers. The subsidy registers keep only hashes of ID numbers (the numbers
are not stored): a hash of a registered resident's number is mapped to the new one, in the commit that changes the
resident's (so a subsidy check running meanwhile finds the resident in the registers as before); one of a person
who is nobody's resident cannot be, and is dropped only when asked (``drop_unmatched``), after the registers were
imported again.
When nothing sealed by the previous key is left, the rotation is finished. Run again after a kill: what was re-sealed
opens with the current key and is left as it is.

Beyond its reach, as for ``eldercare db migrate``'s sealing: the old row versions in the table files (until
``eldercare db scrub`` rewrites them), the write-ahead log and its archive, replicas and backups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

from eldercare.platform.crypto import DecryptionError, Vault
from eldercare.platform.db import keycheck
from eldercare.platform.db.batches import Row, in_batches
from eldercare.platform.db.migrate import MigrationError, is_applied, settings_key

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]

SINCE = 29  # the migration that records a rotation
BATCH_ROWS = 2000
READING_BATCH_ROWS = 5000  # bed readings: one AES block each, as vitals.READING_BATCH_ROWS
_START = datetime.min.replace(tzinfo=UTC)
_LOWEST = -(2**63)


class RekeyError(RuntimeError):
    """The rotation cannot go on: no previous key, a key the database refuses, a conflict it cannot resolve."""


@dataclass(frozen=True, slots=True)
class Column:
    """A sealed column: its name in the table, the vault's column it is bound to, and (for a value bound to its row,
    as the roll-ups' statistics) how the row is named from the batch's key."""

    name: str
    aad: str
    row: Callable[[Row], str] | None = None


@dataclass(frozen=True, slots=True)
class KeyedTable:
    """A table with a unique key (``key`` columns of ``types``, walked in that order through their index)."""

    table: str
    key: tuple[str, ...]
    types: tuple[str, ...]
    start: tuple[Any, ...]
    columns: tuple[Column, ...]
    batch_rows: int
    id_hash: bool = False  # residents: id_number_hash computed again from id_number_enc


@dataclass(frozen=True, slots=True)
class TimeTable:
    """A hypertable with no row key, walked by ``time``: its rows are updated by their place (chunk, ``ctid``), which
    the batch's lock keeps. ``vitals``: the bed readings' blocks, bound to their time and device."""

    table: str
    column: Column
    batch_rows: int
    vitals: bool = False


@dataclass(slots=True)
class Rekeyed:
    """What rekey did to one table: ``rows`` read, ``resealed`` sealed again, ``unreadable`` values neither key
    opens (damaged: left as they are), ``dropped`` (registers) hashes of nobody's ID number removed."""

    table: str
    rows: int = 0
    resealed: int = 0
    unreadable: int = 0
    dropped: int = 0
    unmatched: int = 0  # registers: hashes of nobody's number, left (the rotation is not finished)


@dataclass(slots=True)
class Rotation:
    """The outcome: per table, and whether the rotation is finished (the previous key forgotten)."""

    tables: list[Rekeyed] = field(default_factory=list)
    finished: bool = False
    was_under_way: bool = True


def sealed_tables() -> tuple[KeyedTable | TimeTable, ...]:
    """Every column that holds a sealed value, with the vault's column it is bound to (the domains' own names)."""
    # The domains that own the columns sit above db: imported when a rekey runs, not when this module loads.
    from eldercare.platform.alarms import text as alarm_text
    from eldercare.platform.crypto import (
        BED_DAILY_VITALS,
        BED_HOURLY_VITALS,
        EVENT_POSITION,
        INBOX_POSITION,
        LOCATION_POSITION,
        PARKED_PAYLOAD,
    )
    from eldercare.platform.registry import health_text
    from eldercare.platform.sealed_vitals import summary_row

    def by_id(table: str, *columns: Column, id_hash: bool = False) -> KeyedTable:
        return KeyedTable(table, ("id",), ("bigint",), (_LOWEST,), columns, BATCH_ROWS, id_hash=id_hash)

    def rollup(table: str, period: str, sql_type: str, start: datetime | date, aad: str) -> KeyedTable:
        bound = Column("vitals_enc", aad, row=lambda r: summary_row(r[0], r[1]))
        return KeyedTable(table, ("device_id", period), ("bigint", sql_type), (_LOWEST, start), (bound,), BATCH_ROWS)

    return (
        by_id(
            "residents",
            Column("name_enc", "residents.name"),
            Column("id_number_enc", "residents.id_number"),
            id_hash=True,
        ),
        by_id(
            "resident_contacts",
            Column("name_enc", "resident_contacts.name"),
            Column("phone_enc", "resident_contacts.phone"),
        ),
        by_id(
            "notification_channels",
            Column("address_enc", "notification_channels.address"),
            Column("secret_enc", "notification_channels.secret"),
        ),
        by_id("alarms", Column("detail_enc", alarm_text.DETAIL), Column("outcome_enc", alarm_text.OUTCOME)),
        by_id("alarm_changes", Column("note_enc", alarm_text.NOTE)),
        by_id("alarm_inbox", Column("position_enc", INBOX_POSITION)),
        by_id("hospital_stays", Column("hospital_enc", health_text.HOSPITAL), Column("note_enc", health_text.NOTE)),
        KeyedTable(
            "deaths", ("resident_id",), ("bigint",), (_LOWEST,), (Column("place_enc", health_text.PLACE),), BATCH_ROWS
        ),
        by_id("bed_assignments", Column("end_note_enc", health_text.END_NOTE)),
        by_id("resident_visits", Column("note_enc", health_text.VISIT_NOTE)),
        by_id("parked_messages", Column("payload_enc", PARKED_PAYLOAD)),
        TimeTable("locations", Column("position_enc", LOCATION_POSITION), BATCH_ROWS),
        TimeTable("device_events", Column("position_enc", EVENT_POSITION), BATCH_ROWS),
        TimeTable(
            "bed_readings", Column("vitals_enc", "bed_readings.vitals_enc"), vitals=True, batch_rows=READING_BATCH_ROWS
        ),
        rollup("bed_hourly", "bucket", "timestamptz", _START, BED_HOURLY_VITALS),
        rollup("bed_daily", "day", "date", date.min, BED_DAILY_VITALS),
    )


REGISTERS = ("death_register", "hardship_register")  # hashes of ID numbers only


def rekey(
    conninfo: str,
    *,
    data_key: bytes | None = None,
    previous: bytes | None = None,
    drop_unmatched: bool = False,
) -> Rotation:
    """Re-seal with ``data_key`` what ``previous`` sealed (default: the settings' ``ELDERCARE_DATA_KEY`` and
    ``ELDERCARE_DATA_KEY_PREVIOUS``), and finish the rotation when nothing of the previous key is left."""
    if data_key is None:
        data_key, previous = _settings_keys()
    if previous is None:
        raise RekeyError(
            "ELDERCARE_DATA_KEY_PREVIOUS is not set: set it to the key being replaced (and ELDERCARE_DATA_KEY to the "
            "new one), on every service too, then run the rekey"
        )
    # Every connection of the rekey's named as its own (tagged with the new key): none is taken for a stranger's.
    conninfo = keycheck.tagged(conninfo, Vault(data_key), "eldercare-rekey")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not is_applied(conn, SINCE):
            raise RekeyError("run `eldercare db migrate` first: the database cannot record a rotation yet")
    try:
        vault = keycheck.checked_vault(conninfo, data_key, previous=previous)  # starts the rotation if need be
    except keycheck.DataKeyMismatchError as exc:
        raise RekeyError(str(exc)) from None
    if vault.previous is None:
        raise RekeyError("ELDERCARE_DATA_KEY_PREVIOUS is the same key as ELDERCARE_DATA_KEY: nothing to rotate")
    rotation = Rotation()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        found = keycheck.recorded(conn)
        if found is None or found.retiring is None:
            return Rotation(finished=True, was_under_way=False)
        _no_holders(conn, found.retiring)
        for table in sealed_tables():
            done = (
                _rekey_keyed(conn, vault, table) if isinstance(table, KeyedTable) else _rekey_time(conn, vault, table)
            )
            log.info("%s: %d rows read, %d sealed again", done.table, done.rows, done.resealed)
            rotation.tables.append(done)
        rotation.tables += _rehash_registers(conn, vault, drop_unmatched=drop_unmatched)
        changed = [t.table for t in rotation.tables if t.resealed or t.dropped]
        if changed:  # the old row versions' space for reuse; their bytes stay until `db scrub`
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(map(sql.Identifier, changed))))
        if not any(t.unmatched for t in rotation.tables):
            _no_holders(conn, found.retiring)  # one that connected meanwhile has sealed with it since
            rotation.finished = keycheck.finish_rotation(conn, vault)
    return rotation


def _no_holders(conn: Conn, retiring: bytes) -> None:
    """:class:`RekeyError` while a process may still seal with the key being replaced: one that was running when the
    rotation began and was not restarted (no start-up check sees it), found by the key tag its connections carry
    (``keycheck.tagged``, ``PGAPPNAME`` in ``eldercare.cli``); or one whose connections, as the services' role, carry
    no tag (``keycheck.untagged``): a process of a version before the tags, whose key is not known, or a client that
    is not a service."""
    holders, untagged = keycheck.holders_of(conn, retiring), keycheck.untagged(conn)
    found: list[str] = []
    if holders:
        found.append(
            "a service still runs on the key being replaced and seals new data with it: "
            + "; ".join(holders)
            + ". Restart it with ELDERCARE_DATA_KEY the new key and ELDERCARE_DATA_KEY_PREVIOUS the old one"
        )
    if untagged:
        found.append(
            "a connection as the services' role does not say which data key its process holds (a service of a "
            "version before the key tags may still seal with the key being replaced): "
            + "; ".join(untagged)
            + ". Restart a service on the current version with ELDERCARE_DATA_KEY the new key and "
            "ELDERCARE_DATA_KEY_PREVIOUS the old one; close one that is not a service (a psql session, a script)"
        )
    if found:
        raise RekeyError(". ".join(found) + ". Then run the rekey again (what was sealed again so far stays done)")


def _settings_keys() -> tuple[bytes, bytes | None]:
    from eldercare.platform.config import SecuritySettings

    try:
        key = settings_key(SINCE, need="a rotation re-seals personal data", to="the new key")
    except MigrationError as exc:
        raise RekeyError(exc.reason) from None
    return key, SecuritySettings().previous_key_bytes()


def _reseal(vault: Vault, blob: bytes | None, column: Column, row: Row) -> bytes | DecryptionError | None:
    """The value sealed again with the current key; None if it needs nothing; the error if neither key opens it."""
    if blob is None:
        return None
    try:
        return vault.reseal(bytes(blob), column=column.aad, row=None if column.row is None else column.row(row))
    except DecryptionError as exc:
        return exc


def _rekey_keyed(conn: Conn, vault: Vault, table: KeyedTable) -> Rekeyed:
    keys = sql.SQL(", ").join(map(sql.Identifier, table.key))
    after = sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in table.types)
    cols = [sql.Identifier(c.name) for c in table.columns]
    extra = [sql.Identifier("id_number_hash")] if table.id_hash else []
    select = sql.SQL(
        "SELECT {keys}, {cols} FROM {table} WHERE ({keys}) > ({after}) ORDER BY {keys} LIMIT {limit} FOR NO KEY UPDATE"
    ).format(
        keys=keys,
        cols=sql.SQL(", ").join(cols + extra),
        table=sql.Identifier(table.table),
        after=after,
        limit=sql.Literal(table.batch_rows),
    )
    names = [sql.Identifier(f"k{i}") for i in range(len(table.key))] + [
        sql.Identifier(f"v{i}") for i in range(len(cols) + len(extra))
    ]
    update = sql.SQL(
        "UPDATE {table} t SET {sets} FROM unnest({arrays}) AS s({names}) WHERE ({tkeys}) = ({skeys})"
    ).format(
        table=sql.Identifier(table.table),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = coalesce(s.{v}, t.{c})").format(c=c, v=sql.Identifier(f"v{i}"))
            for i, c in enumerate(cols + extra)
        ),
        arrays=sql.SQL(", ").join(
            [sql.SQL("%s::{}[]").format(sql.SQL(t)) for t in table.types]
            + [sql.SQL("%s::bytea[]") for _ in cols + extra]
        ),
        names=sql.SQL(", ").join(names),
        tkeys=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in table.key),
        skeys=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(f"k{i}")) for i in range(len(table.key))),
    )
    done = Rekeyed(table.table)
    width = len(table.key)

    def rewrite(batch: list[Row]) -> int:
        changed: list[list[Any]] = []
        rehashed: dict[bytes, bytes] = {}  # residents' ID number hashes: the previous key's -> the current key's
        for row in batch:
            new: list[bytes | None] = []
            for column, blob in zip(table.columns, row[width : width + len(cols)], strict=True):
                sealed = _reseal(vault, blob, column, row)
                if isinstance(sealed, DecryptionError):
                    log.error(
                        "%s.%s of %s opens with neither key: left as it is", table.table, column.name, row[:width]
                    )
                    done.unreadable += 1
                    sealed = None
                new.append(sealed)
            if table.id_hash:
                hashed = _id_hash(vault, row[width + 1], row[-1])
                new.append(hashed)
                if hashed is not None:
                    rehashed[bytes(row[-1])] = hashed
            if any(v is not None for v in new):
                changed.append([*row[:width], *new])
        if changed:
            try:
                conn.execute(update, [list(column) for column in zip(*changed, strict=True)])
            except psycopg.errors.UniqueViolation as exc:
                raise RekeyError(
                    f"{table.table}: {exc.diag.message_primary} ({exc.diag.constraint_name}): two rows of one value "
                    "under the two keys; resolve the duplicate and run the rekey again"
                ) from None
        if rehashed:  # the registers' entries of these residents, in the same commit: a check never sees them apart
            _map_registers(conn, list(rehashed), list(rehashed.values()))
        return len(changed)

    walked = in_batches(
        conn,
        start=table.start,
        select=lambda position: conn.execute(select, position).fetchall(),
        rewrite=rewrite,
        after=lambda b: tuple(b[-1][:width]),
        what=f"rekey {table.table}",
    )
    done.rows, done.resealed = walked.rows, walked.changed
    return done


def _id_hash(vault: Vault, id_number_enc: bytes, stored: bytes) -> bytes | None:
    """A resident's ID number hash under the current key, if the stored one is not (None: it is, or no number)."""
    try:
        number = vault.decrypt(bytes(id_number_enc), column="residents.id_number")
    except DecryptionError:
        return None  # counted as unreadable with its column
    wanted = vault.lookup_hash(number)
    return None if bytes(stored) == wanted else wanted


def _rekey_time(conn: Conn, vault: Vault, table: TimeTable) -> Rekeyed:
    name, col = sql.Identifier(table.table), sql.Identifier(table.column.name)
    # A batch: every row from the one after ``after`` up to the time of the batch_rows-th one, ties included, so the
    # next batch starts strictly after it (a time shared by many rows is not read twice, nor skipped).
    select = sql.SQL("""
SELECT tableoid, ctid, time, device_id, {col} FROM {name}
WHERE {col} IS NOT NULL AND time > %(after)s AND time <= coalesce(
    (SELECT time FROM {name} WHERE {col} IS NOT NULL AND time > %(after)s ORDER BY time OFFSET %(skip)s LIMIT 1),
    'infinity')
ORDER BY time FOR NO KEY UPDATE
""").format(col=col, name=name)
    update = sql.SQL("""
UPDATE {name} t SET {col} = s.enc
FROM unnest(%(chunks)s::oid[], %(rows)s::tid[], %(enc)s::bytea[]) AS s(chunk, row, enc)
WHERE t.tableoid = s.chunk AND t.ctid = s.row AND t.time >= %(start)s AND t.time <= %(end)s
""").format(col=col, name=name)
    done = Rekeyed(table.table)

    def resealed(batch: list[Row]) -> Sequence[bytes | DecryptionError | None]:
        if table.vitals:
            from eldercare.platform.sealed_vitals import micros_of

            return vault.reseal_vitals([micros_of(r[2]) for r in batch], [r[3] for r in batch], [r[4] for r in batch])
        return [_reseal(vault, r[4], table.column, r) for r in batch]

    def rewrite(batch: list[Row]) -> int:
        chunks, rows, enc = [], [], []
        for row, sealed in zip(batch, resealed(batch), strict=True):
            if isinstance(sealed, DecryptionError):
                log.error("%s.%s of %s opens with neither key: left", table.table, table.column.name, row[2:4])
                done.unreadable += 1
            elif sealed is not None:
                chunks.append(row[0])
                rows.append(row[1])
                enc.append(sealed)
        if enc:
            params = {"chunks": chunks, "rows": rows, "enc": enc, "start": batch[0][2], "end": batch[-1][2]}
            conn.execute(update, params)
        return len(enc)

    walked = in_batches(
        conn,
        start=_START,
        select=lambda after: conn.execute(select, {"after": after, "skip": table.batch_rows}).fetchall(),
        rewrite=rewrite,
        after=lambda b: b[-1][2],
        what=f"rekey {table.table}",
    )
    done.rows, done.resealed = walked.rows, walked.changed
    return done


def _rehash_registers(conn: Conn, vault: Vault, *, drop_unmatched: bool) -> list[Rekeyed]:
    """The registers' hashes of the residents' ID numbers, mapped from the previous key's to the current key's. A
    register row of the previous key's hash that a row of the current key's already stands for (imported again
    during the rotation) is removed instead. Rows imported before the rotation that name nobody's number are counted
    (``unmatched``), or removed with ``drop_unmatched``."""
    assert vault.previous is not None
    old = Vault(vault.previous)
    pairs: dict[bytes, bytes] = {}
    for (blob,) in conn.execute("SELECT id_number_enc FROM residents"):
        try:
            number = vault.decrypt(bytes(blob), column="residents.id_number")
        except DecryptionError:
            continue  # counted with the residents
        pairs[old.lookup_hash(number)] = vault.lookup_hash(number)
    olds, news = list(pairs), list(pairs.values())
    found: list[Rekeyed] = []
    done_by = {table: Rekeyed(table) for table, _ in _REGISTER_MATCH}
    for i in range(0, len(olds), BATCH_ROWS):
        with conn.transaction():
            for table, (moved, gone) in _map_registers(
                conn, olds[i : i + BATCH_ROWS], news[i : i + BATCH_ROWS]
            ).items():
                done_by[table].resealed += moved
                done_by[table].dropped += gone
    for table, done in done_by.items():
        left, known = _UNMATCHED.format(table=table), {"new": news}
        if drop_unmatched:
            done.dropped += max(conn.execute(f"DELETE FROM {table} r WHERE {left}", known).rowcount, 0)  # noqa: S608
        else:
            row = conn.execute(f"SELECT count(*) FROM {table} r WHERE {left}", known).fetchone()  # noqa: S608
            done.unmatched = int(row[0]) if row else 0
        found.append(done)
    return found


def _map_registers(conn: Conn, olds: list[bytes], news: list[bytes]) -> dict[str, tuple[int, int]]:
    """The registers' entries of the previous key's hashes ``olds`` given the current key's ``news`` (in the caller's
    transaction): per register, how many were mapped, and how many removed as twins of an entry imported again."""
    params = {"old": olds, "new": news}
    out: dict[str, tuple[int, int]] = {}
    for table, same in _REGISTER_MATCH:
        moved = conn.execute(_REHASH.format(table=table, same=same), params).rowcount
        gone = conn.execute(_DROP_TWIN.format(table=table), params).rowcount
        out[table] = (max(moved, 0), max(gone, 0))
    return out


_SAME_HARDSHIP = "x.category = r.category AND x.valid && r.valid"
_REGISTER_MATCH = (("death_register", "x.source = r.source"), ("hardship_register", _SAME_HARDSHIP))
_REHASH = """
UPDATE {table} r SET id_number_hash = m.new FROM unnest(%(old)s::bytea[], %(new)s::bytea[]) AS m(old, new)
WHERE r.id_number_hash = m.old
  AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id_number_hash = m.new AND {same})
"""
_DROP_TWIN = "DELETE FROM {table} r USING unnest(%(old)s::bytea[]) AS m(old) WHERE r.id_number_hash = m.old"
# What is left of the previous key's hashes: imported before the rotation started (whatever the current key hashed
# was imported since), and not the hash of a registered resident's number (those were mapped above).
_UNMATCHED = """
r.import_id IN (SELECT id FROM subsidy_register_imports
                WHERE imported_at < (SELECT rotation_started_at FROM data_key_check))
AND NOT r.id_number_hash = ANY(%(new)s::bytea[])
"""
