"""What a store in memory holds unsent when the gateway stops, kept in a file beside the store's, and sent after.

A store that stops in memory (its file found corrupt and left in place, or its disk failing: see
:mod:`eldercare.gateway.store`) would lose every message it holds. Instead :func:`write` copies its database
(SQLite's backup: queued messages of both lanes, frames not acknowledged, repeat keys, faults, devices, fall
detectors, epoch and sequence number) into ``<store>.unsent-<epoch>-<ms>.db`` beside the store's file: written
under a temporary name with ``synchronous=FULL`` and no write-ahead log, fsynced, renamed into place, the folder
fsynced, so a file under that name is always whole (a half-written one keeps its ``.tmp`` name: it is ignored, and
left). When that cannot be written either (the disk really fails), the messages are lost, as the store says.

At start the store takes every such file in (:func:`take_in`): its frames are sent again as they are, and its queued
messages are cut into frames under the file's own epoch, the sequence numbers after its own, always the same way
(:func:`read`: in order, :data:`FRAME_MSGS` and :data:`FRAME_BYTES` at most, ``sent`` the time it was written). So
whatever the file holds is sent only in frames whose ``(epoch, seq)`` and bytes are fixed by the file, however often
it is taken in: the platform keeps one copy per ``(gateway, epoch, seq)`` (it has no key of its own for a message),
so a file taken in twice (a crash before it was deleted) stores nothing twice. The frames go into the store's
``frames`` under negative keys (the key only names a frame for its acknowledgement; the bytes carry its epoch and
seq). A file's epoch is never the epoch of the store taking it in: a store in memory, a copy of its disk's database
too, cuts its frames under an epoch of its own, so no frame the disk cuts after takes a number the file's have (a
file written before that, of the disk's own epoch, still moves the disk's next ``seq`` past its frames).

A store on disk takes a file in one transaction that also records it as taken (``taken:<id>`` in ``meta``), then
deletes it: a crash in between takes nothing twice. A file copied from this very disk, which has not moved on since
(the same epoch, next ``seq``, last queued rows and count of files taken in: :class:`Mark`), replaces the disk's
queues and frames, which it holds or were sent from memory; so does the file of a store in memory that took such a
file in (it holds what that file held), and a store in memory that took it in and has sent all it held, going back
to the disk, deletes them (:func:`settle`). A file taken in moves the disk on: an older file copied from it, taken in
after a newer (both left by a crash), adds its frames (the same bytes, kept once) but replaces nothing. A store in
memory keeps the files it took in until the next stop writes a new one holding everything (or it has sent all it
held): then they are deleted. A crash meanwhile leaves them, taken in again next.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

FRAME_MSGS: Final = 50  # messages a frame cut from a file's queue holds at most (an alarm frame's default)
FRAME_BYTES: Final = 32 * 1024  # and bytes (below any uplink's telemetry_frame_bytes bound but its least, 4 KiB)
_QUEUES: Final = ((0, "alarm_q"), (1, "telemetry_q"))  # (lane, table), alarms first
_MARK: Final = ("epoch", "seq", "alarm", "telemetry", "intake")  # a Mark's fields, in a file's meta (copied_<name>)


@dataclass(frozen=True, slots=True)
class Mark:
    """A disk's database as a store in memory copied it: its epoch, next ``seq``, the last row of each queue and how
    many files it has taken in (``intake`` in ``meta``: a file taken in after the copy, the disk has moved on)."""

    epoch: int
    next_seq: int
    alarm_id: int
    telemetry_id: int
    intake: int


@dataclass(frozen=True, slots=True)
class Spill:
    path: Path
    ident: int
    epoch: int
    end_seq: int  # its epoch's next seq after all its frames
    frames: list[tuple[int, int, bytes]]  # (lane, n_msgs, body): its frames, then its queues cut into frames
    keys: list[bytes]  # its repeat-detection keys
    state: dict[str, list[tuple[Any, ...]]]  # the rows of each table that is not a queue
    seeded: tuple[str, ...]  # the tables of those its store held as the disk's own (see Store._seeded)
    copied: Mark | None  # its store was a copy of its disk's database, as it was then
    dropped: int

    def messages(self, lane: int) -> int:
        """Its messages of ``lane`` (0 alarms, 1 telemetry)."""
        return sum(n for k, n, _ in self.frames if k == lane)


def mark_of(db: sqlite3.Connection) -> Mark:
    row = db.execute(
        "SELECT (SELECT value FROM meta WHERE key = 'epoch'), (SELECT value FROM meta WHERE key = 'next_seq'),"
        " (SELECT coalesce(max(id), 0) FROM alarm_q), (SELECT coalesce(max(id), 0) FROM telemetry_q),"
        " coalesce((SELECT value FROM meta WHERE key = 'intake'), 0)"
    ).fetchone()
    return Mark(*(int(v) for v in row))


def paths(store: Path) -> list[Path]:
    """The files beside the store at ``store`` (whole ones: not a ``.tmp``), oldest first."""
    found = store.parent.glob(f"{store.name}.unsent-*.db") if store.parent.is_dir() else []
    return sorted(found, key=lambda p: (len(p.name), p.name))


def write(db: sqlite3.Connection, store: Path, *, seeded: Sequence[str], copied: Mark | None) -> Path:
    """The store's database ``db`` copied into a new file beside ``store``, durably (see the module's text); its path.
    Raises :class:`sqlite3.Error` or :class:`OSError`, with no file left under the final name."""
    written = time.time_ns() // 1_000_000
    epoch = int(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
    final = store.with_name(f"{store.name}.unsent-{epoch}-{written}.db")
    tmp = final.with_name(final.name + ".tmp")
    try:
        target = sqlite3.connect(tmp, isolation_level=None)
        try:
            target.execute("PRAGMA journal_mode = DELETE")
            target.execute("PRAGMA synchronous = FULL")
            db.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")  # (a copy of a store's file comes in WAL mode)
            rows = [("spill", time.time_ns()), ("written", written)]
            rows += [(f"seeded:{table}", 1) for table in seeded]
            if copied is not None:
                rows += [(f"copied_{k}", v) for k, v in zip(_MARK, astuple(copied), strict=True)]
            target.execute("BEGIN IMMEDIATE")
            target.execute("DELETE FROM meta WHERE key LIKE 'taken:%'")
            target.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)
            target.execute("COMMIT")
        finally:
            target.close()
        _fsync(tmp)
        tmp.replace(final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync(final.parent)
    return final


def read(path: Path, *, state_tables: Sequence[str]) -> Spill:
    """The file at ``path``, its queued messages cut into frames (see the module's text). Raises
    :class:`sqlite3.Error` (not a database, damaged) or :class:`ValueError` (not a file :func:`write` finished)."""
    from eldercare.gateway.store import frame_bytes  # (the store imports this module)

    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        meta = {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
        if "spill" not in meta or "written" not in meta:
            raise ValueError(f"{path}: not a file of unsent messages the gateway finished writing")
        epoch, seq = meta["epoch"], meta["next_seq"]
        frames = [
            (int(lane), int(n), bytes(body))
            for lane, n, body in db.execute("SELECT lane, n_msgs, body FROM frames ORDER BY lane, seq")
        ]
        for lane, table in _QUEUES:
            bodies: list[bytes] = []
            size = 100
            cursor = db.execute(f"SELECT body FROM {table} ORDER BY id")  # noqa: S608 - a name of this module's
            for (body,) in [*cursor.fetchall(), (None,)]:
                if bodies and (body is None or len(bodies) == FRAME_MSGS or size + len(body) + 1 > FRAME_BYTES):
                    frame = frame_bytes(epoch=epoch, seq=seq, sent=meta["written"], bodies=bodies)
                    frames.append((lane, len(bodies), frame))
                    seq, bodies, size = seq + 1, [], 100
                if body is not None:
                    bodies.append(bytes(body))
                    size += len(body) + 1
        keys = [bytes(k) for (k,) in db.execute("SELECT key FROM recent ORDER BY id")]
        state = {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in state_tables}  # noqa: S608
    finally:
        db.close()
    copied = None
    if "copied_seq" in meta:  # (without copied_epoch and copied_intake: its store, a copy, went on under the disk's)
        fields = {"epoch": epoch, "intake": 0} | {k: meta[f"copied_{k}"] for k in _MARK if f"copied_{k}" in meta}
        copied = Mark(*(fields[k] for k in _MARK))
    seeded = tuple(t for t in state_tables if f"seeded:{t}" in meta)
    return Spill(path, meta["spill"], epoch, seq, frames, keys, state, seeded, copied, meta.get("dropped", 0))


def take_all(
    db: sqlite3.Connection,
    store: Path,
    state_tables: Sequence[str],
    *,
    keep: bool,
    say: Callable[[str], None],
    raising: bool,
) -> list[Spill]:
    """Every file beside the store at ``store`` taken into its database ``db``; those taken in now. They are kept if
    ``keep`` (a store in memory), else deleted once committed. One that cannot be read is left as it is, and said;
    one that cannot be taken in too, unless ``raising`` (:class:`sqlite3.Error`)."""
    taken: list[Spill] = []
    for path in reversed(paths(store)):  # the newest first: the oldest get the lowest keys, and are sent first
        try:
            spill = read(path, state_tables=state_tables)
        except (sqlite3.Error, ValueError, OSError) as exc:
            say(f"store: {path} cannot be read ({exc}): left as it is, its messages not sent")
            continue
        try:
            new = take_in(db, spill)
        except sqlite3.Error as exc:
            if raising:
                raise
            say(f"store: cannot take in {path} ({exc}): left as it is, its messages not sent")
            continue
        if new:
            taken.append(spill)
            alarms, telemetry = spill.messages(0), spill.messages(1)
            log.warning(
                "store: %d alarm(s) and %d telemetry message(s) not sent at the last stop, taken in from %s: "
                "sending them",
                alarms,
                telemetry,
                path,
            )
        if keep:
            continue
        try:
            remove(path)
            db.execute("DELETE FROM meta WHERE key = ?", (f"taken:{spill.ident}",))
        except (OSError, sqlite3.Error) as exc:  # taken in: its key stays, so it is not taken in again
            say(f"store: {path} is taken in but cannot be deleted ({exc})")
    return taken


def take_in(db: sqlite3.Connection, spill: Spill) -> bool:
    """``spill`` into the store's database ``db`` in one transaction (see the module's text); False if it was taken
    in before (and is only left to delete)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM meta WHERE key = ?", (f"taken:{spill.ident}",)).fetchone():
            db.execute("ROLLBACK")
            return False
        epoch = int(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
        supersedes = spill.copied is not None and mark_of(db) == spill.copied
        if supersedes:  # what the disk's queues and frames hold, the file holds, or was sent from memory
            _drop_backlog(db)
            db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (spill.dropped,))
        low = min(0, int(db.execute("SELECT coalesce(min(seq), 0) FROM frames").fetchone()[0])) - len(spill.frames)
        db.executemany(  # below every key there, in the file's order
            "INSERT INTO frames VALUES (?, ?, ?, ?)",
            [(low + i, lane, n, body) for i, (lane, n, body) in enumerate(spill.frames)],
        )
        if spill.epoch == epoch:  # (only a file written before stores in memory took epochs of their own)
            db.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'next_seq'", (spill.end_seq,))
        db.executemany("INSERT OR IGNORE INTO recent (key) VALUES (?)", [(k,) for k in spill.keys])
        # Its faults, devices and detectors are newer than the disk's: over them, instead of them where its store
        # held the disk's own (all of them, a copy that supersedes the disk).
        replace = tuple(spill.state) if supersedes else (spill.seeded if spill.copied is None else ())
        for table, rows in spill.state.items():
            if table in replace:
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - a name of the store's
            if rows:
                marks = ",".join("?" * len(rows[0]))
                db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)  # noqa: S608
        db.execute("INSERT INTO meta VALUES (?, ?)", (f"taken:{spill.ident}", time.time_ns() // 1_000_000))
        _moved_on(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return True


def settle(db: sqlite3.Connection, taken: Sequence[Spill]) -> None:
    """A store in memory that took ``taken`` in and has sent all it held goes back to its disk ``db``: what a copy of it
    superseded (sent) gone (and the disk's next ``seq`` past their frames of its epoch), in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        epoch = int(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
        for spill in taken:
            if spill.copied is not None and mark_of(db) == spill.copied:
                _drop_backlog(db)
                _moved_on(db)
            if spill.epoch == epoch:  # (as in take_in)
                db.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'next_seq'", (spill.end_seq,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _drop_backlog(db: sqlite3.Connection) -> None:
    """The disk's queues and frames deleted: a copy of it, which supersedes them, holds them or sent them."""
    for table in ("alarm_q", "telemetry_q", "frames"):
        db.execute(f"DELETE FROM {table}")  # noqa: S608 - a name of this module's


def _moved_on(db: sqlite3.Connection) -> None:
    """The disk ``db`` has taken a file in: no file copied from it before matches its :class:`Mark` any more."""
    db.execute("INSERT INTO meta VALUES ('intake', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1")


def remove(path: Path) -> None:
    """The file deleted, durably. Raises :class:`OSError`."""
    path.unlink(missing_ok=True)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
