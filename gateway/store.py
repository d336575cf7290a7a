"""The store and forward queue: SQLite in WAL mode, ``synchronous=FULL``, bounded by bytes on disk.

Durability. Every commit is fsynced before it returns (WAL with ``synchronous=FULL``: the commit record is
on disk when ``COMMIT`` returns), and the gateway acknowledges a device only after the commit that holds
its message. A power cut therefore loses nothing acknowledged: at most the messages of a transaction in
progress, which no device has been told are safe (it sends them again).

Layout. Two queues of contract messages, one per lane (``alarm_q``, ``telemetry_q``), each message as its
encoded JSON. When the uplink can send, the oldest messages of a lane are cut into a frame, numbered with
the next ``seq`` and moved into ``frames`` in one transaction; the frame is deleted only after the broker's
PUBACK. A frame's bytes never change, so a frame sent again after a reconnect or a restart is the same frame
(the platform keeps one copy per ``(gateway, epoch, seq)``, the first, and drops any other frame under the same
numbers as a repeat, whatever it holds: so no two different frames may ever take them). The ``epoch`` is chosen
when the store is created and kept with it (a store in memory takes one of its own, below); ``seq`` is stored and
only goes up. A frame's key in ``frames`` (what an acknowledgement names) is its ``seq`` but for a copy's (below)
and a file's (see :mod:`eldercare.gateway.spill`).

Bounds. ``max_bytes`` caps the database file (``PRAGMA max_page_count``) and its write-ahead log
(checkpointed and truncated well below the cap). Before that cap is reached, the oldest telemetry is
dropped to make room, and counted (``dropped``, stored). Alarms are never dropped: when only alarms are
left and the store is full, new messages are refused (:class:`StoreFullError`) and not acknowledged, so the
device keeps them and sends again. A message marked ``spare`` (the accelerometer samples a fall detector has
taken, forwarded as a copy) is dropped and counted instead, so that it never holds back what came with it.

Fall detectors. Each wearable's detector state (a few numbers and the last seconds of its 50 Hz samples,
5.1 KiB a wearable by ``bench/gateway_fall_state.py``) is kept in ``fall_state`` and ``fall_samples``,
written in the same commit as the chunk that changed it, so a restart resumes every detector where the
acknowledged stream left it (see :mod:`eldercare.gateway.fall.detector`). It is bounded per wearable and
counted in ``max_bytes``' data share like an alarm: telemetry is dropped to make room for it. It is what fall
alarms are made from, so it is not refused where alarms start to be: a checkpoint mostly replaces the rows
of the one before, and a commit is refused for its detector state only when that state grows the store past
:data:`DETECTOR_SHARE`, a little above the alarms' limit. A wearable's rows are deleted when the gateway forgets
its detector (``Batch.forget``, see :class:`eldercare.gateway.pipeline.FallService`).

A failing disk. A store created with ``memory_after_s`` goes on in memory when its disk has failed for that long
(every write refused: a card worn out, a file system remounted read-only, or full of other files), rather than
refuse every message and so leave the home broker's messages unread behind the first one refused. The database
is copied into memory (SQLite's backup, which only reads the file) when it is no larger than ``memory_bytes``,
and goes on there as the same store, so nothing waiting on the disk is left behind, its frames not acknowledged
sent again as they are, but its new frames cut under an epoch of its own, numbered from 0 (keyed after the disk's
frames: ``key_base`` in ``meta``). Under the disk's epoch, the numbers they took would be given again: the disk's
file, which cannot be written, still says its next ``seq``, and after a power cut (no file of unsent messages, see
below) the disk would cut its new messages into frames under those numbers, which the platform drops. What the
disk held and the copy sent the disk then sends again, under its own numbers: stored twice, never lost. When the
database cannot be read or is larger, a store in memory starts afresh with an epoch of its own, and what waits on
the disk stays there. :attr:`Store.epoch` is the epoch new frames are cut under. Messages taken in memory are lost
if the power is cut before they are sent: it is the price of reading on at all, and the gateway says so (``say``,
the status's ``store``).
Every :data:`DISK_PROBE_S` the disk is tried again (a write on its own connection); once it takes one, the store
in memory is written back over it (a copy: the disk goes on under the copy's epoch), or, one started afresh, once
it has sent all it held (its fall detector checkpoints, faults and devices are written to the disk first), and the
store is on disk again.

A disk that fails at start. A store created with ``memory_after_s`` (and a ``memory_bytes``) whose file cannot be
opened at all (a file system read-only or full, a folder gone, a file that is not a database or is damaged) starts
in memory straight away, afresh, with an epoch of its own (and, of a damaged file, what can still be read: see
below), and says why (``say``, and :attr:`Store.memory_why`): a gateway that does not start shows and sends no alarm
at all. Every :data:`DISK_PROBE_S` the file is opened again, and once it opens and takes a write the store goes back
to it as above (once it has sent all it held). What waited in the file is sent then, under the file's own epoch.
Without ``memory_after_s`` the store refuses to start (:class:`StoreError`), as before.

A corrupt file. A file SQLite finds corrupt (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``), at start or while the store
runs (reading for a commit, for a frame, for the frames not acknowledged, for the faults, devices and fall detectors
the gateway reads at start, or the disk's probe), is left where it is, as it is: never deleted or moved (it may hold
alarms not sent, for whoever recovers it; a file renamed by the gateway would be one nobody looks for, and a gateway
moving on to a new file would hide that anything went wrong but for a log line), and never written to again: not
copied into memory (the copy would be as damaged), not probed with a write, nothing written back over it. Found at
start or while the store runs, it puts a store created with ``memory_after_s`` in memory at once, not after
``memory_after_s`` (a damage does not heal by waiting): afresh, with an epoch of its own and the faults, devices and
fall detectors that can still be read from the file (each of the three, or not at all), saying why; found while it
runs, the commit or the read that found the damage is made again there, so no message of it is lost. The file's
connection is closed then, which writes into the file only what SQLite's own close writes (the commits its
write-ahead log holds, made before the damage was found), so that the file holds all it had, on its own. Opening
reads every queue (its rows' count and size) and every row of the faults, devices and fall detectors, their blobs
too (small and bounded, and what the gateway reads at start), so that a file damaged in any of them is found there,
where the store can start in memory, and not by a reader the gateway cannot start without; it writes nothing to a
file the gateway made (its tables and rows are there: SQLite finds the damage reading them), and the probe does not
open it again while it is the same file (inode, size, time). Once it is moved away, or a repaired copy put in its
place, the store goes back to disk, to a new database or the repaired one (once it has sent all it held, as above).
Without ``memory_after_s`` a store refuses to start on such a file, and refuses the commits that find one while it
runs (:class:`StoreError`), as before.

Stopping in memory. A store that stops in memory (its disk failing, or its file found corrupt: it cannot go back
to the file) writes all it holds unsent into a new file beside its own, and the next start takes it in and sends it,
each message in frames whose ``(epoch, seq)`` the file fixes, so the platform keeps one copy however often it is
taken in; a copy's file replaces what the disk it copied holds (see :mod:`eldercare.gateway.spill`). Only if that
file cannot be written either are its messages lost, and it says so.

Repeats. A message whose exact bytes were stored recently (the last ``dedup_keys`` messages) is a repeat
(a device or the home broker sending again what was already stored) and is not stored twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

from eldercare.devices import messages as m
from eldercare.gateway import spill
from eldercare.gateway.errors import GatewayError, StoreError

PAGE_SIZE: Final = 4096
ROW_OVERHEAD: Final = 48  # bytes a queued row costs beyond its body (b-tree cell, header, slack)
KEY_BYTES: Final = 80  # bytes a repeat-detection key costs (two b-trees)
DATA_SHARE: Final = 0.6  # of max_bytes, what queued data may use before telemetry is dropped
# Alarms are never dropped, so past the data share they may still come in, but only up to this share of the
# pages: the rest stays free for cutting them into frames, and for what SQLite's pages hold beyond the
# estimate (b-tree slack), or a store full of alarms could never send them. (A frame's rows are deleted before
# it is written, in the same transaction, so that it reuses their pages.)
ALARM_SHARE: Final = 0.8
# Fall detector state is refused only when it grows the store past this share: with alarms at their limit (an
# outage), detection goes on. Its checkpoints mostly replace the rows before them, so it grows only when a
# detector's window does (a candidate pending) or a new wearable starts; the rest stays free for framing alarms.
DETECTOR_SHARE: Final = 0.85
WAL_SHARE: Final = 16  # the write-ahead log is checkpointed at max_bytes / WAL_SHARE
DISK_PROBE_S: Final = 30.0  # in memory, the failed disk is tried again this often
FS_FULL_MARGIN: Final = 64 * 1024  # bytes free below which SQLITE_FULL means the file system, not the cap, is full
# What is not a queue, by what is read together (a fall detector's state and its samples).
_STATE_GROUPS: Final = (("faults",), ("devices",), ("fall_state", "fall_samples"))
_STATE_TABLES: Final = tuple(t for group in _STATE_GROUPS for t in group)
_LEFT_IN_PLACE: Final = (
    "it is left in place as it is, for recovery: once it is moved away (or a repaired copy put in its place) the store"
    " goes back to disk"
)


class Lane(IntEnum):
    ALARM = 0
    TELEMETRY = 1


_QUEUE: Final = {Lane.ALARM: "alarm_q", Lane.TELEMETRY: "telemetry_q"}

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarm_q (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry_q (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY, lane INTEGER NOT NULL, n_msgs INTEGER NOT NULL, body BLOB NOT NULL
);  -- seq: the frame's key, its body's seq plus meta's key_base (0 if none); a file's frames below 0 (see spill.py)
CREATE TABLE IF NOT EXISTS recent (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS faults (
    dev TEXT NOT NULL, fault TEXT NOT NULL, PRIMARY KEY (dev, fault)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (dev TEXT PRIMARY KEY, class TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fall_state (dev TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fall_samples (
    dev TEXT NOT NULL, stream INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    samples BLOB NOT NULL, PRIMARY KEY (dev, stream, first)
) WITHOUT ROWID;
"""


class StoreFullError(GatewayError):
    """No room even after dropping all telemetry: nothing of the batch was stored."""


@dataclass(frozen=True, slots=True)
class Item:
    lane: Lane
    body: bytes
    message: m.DeviceMessage | None = field(default=None, compare=False)  # the decoded form, not stored
    made: bool = field(default=False, compare=False)  # made by the gateway (a fall, a fault): no device resends it
    # A copy nothing waits for (the accelerometer samples a fall detector took, forwarded): where a telemetry
    # message would make the store refuse its batch (only alarms left, at their limit), it is dropped and counted.
    spare: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class DetectorState:
    """A fall detector's checkpoint as stored: its state, and the samples it took since the previous one."""

    dev: str
    stream: int
    first: int  # stream index of the first sample
    samples: bytes  # float32 (n, 3), little-endian
    n_samples: int
    keep_from: int  # stored samples before this stream index may go
    state: bytes


@dataclass(frozen=True, slots=True)
class SavedSamples:
    stream: int
    first: int
    samples: bytes


@dataclass(slots=True)
class Batch:
    """What one source delivery adds, committed together (or not at all)."""

    items: list[Item] = field(default_factory=list)
    faults: list[tuple[str, str, bool]] = field(default_factory=list)  # (device, fault, active)
    devices: list[tuple[str, str]] = field(default_factory=list)  # (device, class) first seen
    detectors: list[DetectorState] = field(default_factory=list)  # fall detectors' checkpoints, in order
    forget: list[str] = field(default_factory=list)  # wearables whose detector state goes (before ``detectors``)


@dataclass(frozen=True, slots=True)
class Stored:
    accepted: list[Item]  # new, in order; repeats left out
    repeats: int


@dataclass(frozen=True, slots=True)
class OutFrame:
    seq: int  # its key in the store (what an acknowledgement names), not always its body's seq: see SCHEMA
    lane: Lane
    n_msgs: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Depth:
    alarm: int  # messages waiting, queued or in frames not yet acknowledged
    telemetry: int


def _cost(item: Item) -> int:
    """Bytes a queued message takes by the store's measure: its body, its row, its repeat-detection key."""
    return len(item.body) + ROW_OVERHEAD + KEY_BYTES


def _key(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


def frame_bytes(*, epoch: int, seq: int, sent: int, bodies: Sequence[bytes]) -> bytes:
    head = b'{"v":1,"epoch":%d,"seq":%d,"sent":%d,"msgs":[' % (epoch, seq, sent)
    return head + b",".join(bodies) + b"]}"


class Store:
    """Used from one thread at a time (the gateway's store thread)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        dedup_keys: int = 200_000,
        memory_after_s: float | None = None,
        memory_bytes: int = 64 * 1024 * 1024,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._memory_after_s = memory_after_s
        self._memory_bytes = memory_bytes
        self._say = say or (lambda _: None)
        wal_pages = max(32, max_bytes // WAL_SHARE // PAGE_SIZE)
        self._disk_pages = (max_bytes - 2 * wal_pages * PAGE_SIZE) // PAGE_SIZE  # the WAL, and its -shm, besides
        self._set_limits(self._disk_pages)
        self._wal_pages = wal_pages
        self._dedup_keys = max(1000, min(dedup_keys, max_bytes // 8 // KEY_BYTES))
        self.epoch = 0
        self._stale = False  # the counters in memory missed a rollback (the database could not be read)
        self._failing_since: float | None = None  # monotonic time of the first of the writes failing since
        self._last_failure = 0.0
        self.memory_since: float | None = None  # wall clock time the store went on in memory; None on disk
        self.memory_why: str | None = None  # in memory: why (what ``say`` was told)
        self._copied = False  # in memory: a copy of the disk's database (else started afresh)
        # In memory afresh: the tables of the disk's faults, devices and detectors it started with (those it read).
        self._seeded: tuple[str, ...] = ()
        self._copy_mark: spill.Mark | None = None  # in memory, a copy: the disk's database as it was copied
        self._taken: list[spill.Spill] = []  # in memory: the files of unsent messages taken in, kept until sent
        self._next_probe = 0.0
        self._unreadable: os.stat_result | None = None  # the file found corrupt, left in place: not opened again
        # The file's connection, kept while the store is in memory (to try it again); None while it cannot be opened,
        # or is found corrupt.
        self._file: sqlite3.Connection | None = None
        self.created = False
        try:
            fresh = not path.exists()
            counters = self._open_file()
            self._db = self._disk
            self.epoch = self._meta("epoch")
            self._set_counters(counters)
            self._take_spills()
        except (StoreError, OSError) as exc:
            if self._memory_after_s is None or self._memory_bytes <= 0:
                self._close_file()
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(path, str(exc)) from exc
            self._start_in_memory(exc)
            self._take_spills()
            return
        self.created = fresh

    def _open_file(self) -> _Counters:
        """The database file opened as the file's connection (created if missing) and read through: its counters, and
        the tables that are not queues. :class:`StoreError` if it cannot be used, with SQLite's error as its cause;
        the connection, if it was made, is then left to the caller (to close, or to read what can still be read of a
        file found corrupt: see :meth:`_start_in_memory`). Writes nothing to a database it made before."""
        try:
            self._file = db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(self.path, f"the file system does not allow WAL mode (got {mode})")  # noqa: TRY301
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA wal_autocheckpoint = {self._wal_pages}")
            db.execute(f"PRAGMA journal_size_limit = {self._wal_pages * PAGE_SIZE}")
            db.execute(f"PRAGMA max_page_count = {self._disk_pages}")
            db.executescript(SCHEMA)
            with _Transaction(db):
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('epoch', ?), ('next_seq', 0), ('dropped', 0)",
                    (time.time_ns() // 1_000_000,),
                )
            # Every queue, and every row of the faults, devices and fall detectors (the gateway reads them at start):
            # a database damaged there fails here, where the store can start in memory, not in those readers.
            counters = _read_counters(db)
            _read_state(db)
        except (sqlite3.Error, StoreError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(self.path, str(exc)) from exc
        return counters

    def _set_limits(self, pages: int) -> None:
        self._data_limit = int(pages * PAGE_SIZE * DATA_SHARE)
        self._alarm_limit = int(pages * PAGE_SIZE * ALARM_SHARE)
        self._detector_limit = int(pages * PAGE_SIZE * DETECTOR_SHARE)

    def _load_counters(self) -> None:
        """Counters kept in memory, from the database (at start, and after a transaction failed)."""
        self._set_counters(_read_counters(self._db))

    def _set_counters(self, counters: _Counters) -> None:
        self.dropped = counters.dropped
        self._queued = counters.queued
        self._in_frames = counters.in_frames
        self._bytes = counters.data_bytes

    def _rolled_back(self) -> None:
        """After a transaction failed, or before the next one if the database could not be read then: the counters
        from the database. A disk that fails reads too raises :class:`StoreError`, never a bare SQLite error."""
        self._stale = True
        try:
            self._load_counters()
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"cannot be read: {exc}") from exc
        self._stale = False

    # --- a failing disk (see the module's text) ------------------------------------------------------

    @property
    def in_memory(self) -> bool:
        return self._db is not self._file

    @property
    def _disk(self) -> sqlite3.Connection:
        """The file's connection, where it is known to be open."""
        assert self._file is not None
        return self._file

    def _start_in_memory(self, exc: StoreError | OSError) -> None:
        """The file cannot be opened at start: go on in memory, afresh (see the module's text). A file found corrupt
        (reading its queues, faults, devices or fall detectors, or not a database at all) is met as when it is found
        corrupt while the store runs: the faults, devices and fall detectors that can still be read from it are read,
        and it is left as it is."""
        if _is_corrupt(exc):
            self._to_memory(self._found_corrupt(exc, "at start"), copy=False)
            self._leave_file()
        else:
            reason = exc.reason if isinstance(exc, StoreError) else str(exc)
            self._close_file()
            self._to_memory(f"{self.path} cannot be opened at start ({reason})")

    def _disk_failed(self, exc: Exception) -> bool:
        """A write or read of the disk failed: whether the store has now gone on in memory (try it again there). A
        file found corrupt puts it there at once, afresh, and is left as it is (see the module's text)."""
        if self.in_memory or self._memory_after_s is None:
            return False
        if _is_corrupt(exc):  # a damage does not heal by waiting, and what the file holds is not copied
            self._to_memory(self._found_corrupt(exc, "while the store runs"), copy=False)
            self._leave_file()
            return True
        now = time.monotonic()
        if self._failing_since is None or now - self._last_failure > self._memory_after_s:
            self._failing_since = now  # the first failure, or the first after a long quiet: the clock starts
        self._last_failure = now
        if now - self._failing_since < self._memory_after_s:
            return False
        self._to_memory(f"its disk has failed for {now - self._failing_since:.0f} s ({exc})")
        return True

    def _found_corrupt(self, exc: Exception, when: str) -> str:
        """Why the store is in memory, once its file is found corrupt ``when``."""
        reason = exc.reason if isinstance(exc, StoreError) else str(exc)
        return f"{self.path} is found corrupt {when} ({reason}); {_LEFT_IN_PLACE}"

    def _leave_file(self) -> None:
        """The file found corrupt, its faults, devices and detectors read (or not): its connection closed, and the file
        not opened again while it is the same file (see :meth:`_open_again`)."""
        self._close_file()
        with contextlib.suppress(OSError):
            self._unreadable = self.path.stat()

    def _close_file(self) -> None:
        """The file's connection closed, if it is open (SQLite's close writes into the file the commits its
        write-ahead log holds, as always, and nothing else)."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(sqlite3.Error):
                file.close()

    def _file_system_full(self) -> bool:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < FS_FULL_MARGIN

    def _to_memory(self, why: str, *, copy: bool = True) -> None:
        """Go on in memory: a copy of the disk's database if ``copy`` and it can be, else afresh (see the module's
        text)."""
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        copied = False
        try:
            # (on disk still, disk_bytes is the files' size)
            if copy and self._file is not None and self.disk_bytes() <= self._memory_bytes:
                self._file.backup(memory)
                copied = True
        except (sqlite3.Error, OSError):
            memory.close()
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        seeded = _STATE_TABLES if copied else ()
        epoch = _new_epoch(self.epoch)
        self._copy_mark = spill.mark_of(memory) if copied else None
        if copied:  # its own epoch from seq 0 (see the module's text); its new frames keyed after the disk's
            with _Transaction(memory):
                memory.execute(
                    "INSERT OR REPLACE INTO meta SELECT 'key_base', sum(value) FROM meta"
                    " WHERE key IN ('key_base', 'next_seq')"
                )
                memory.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (epoch,))
                memory.execute("UPDATE meta SET value = 0 WHERE key = 'next_seq'")
        else:
            memory.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            memory.executescript(SCHEMA)
            memory.execute("INSERT INTO meta VALUES ('epoch', ?), ('next_seq', 0), ('dropped', 0)", (epoch,))
            if self._file is not None:  # the disk's faults, devices and detectors: those that can be read
                for tables in _STATE_GROUPS:
                    with contextlib.suppress(sqlite3.Error):
                        _copy_state(self._file, memory, tables)
                        seeded += tables
        pages = self._memory_bytes // PAGE_SIZE
        memory.execute(f"PRAGMA max_page_count = {pages}")
        self._set_limits(pages)
        self._db, self._copied, self._seeded = memory, copied, seeded
        self.memory_since = time.time()
        self._failing_since = None
        self._next_probe = time.monotonic() + DISK_PROBE_S
        self.epoch = self._meta("epoch")
        self._load_counters()
        self.memory_why = why
        self._say(
            f"store: {why}; going on in memory (up to {self._memory_bytes // 1024 // 1024} MiB), "
            + (
                f"with all the disk held, its new frames under epoch {self.epoch} of its own"
                if copied
                else f"afresh (epoch {self.epoch}); what waits on the disk is sent once it works again"
            )
            + ": messages taken meanwhile are lost if the power is cut before they are sent"
        )

    def _back_to_disk(self) -> None:
        """In memory: try the disk again, and go back to it if it takes a write (see the module's text)."""
        self._next_probe = time.monotonic() + DISK_PROBE_S
        if not self._copied and (any(self._queued.values()) or any(self._in_frames.values())):
            return  # a store started afresh goes back once it has sent all it held
        if self._file is None and not self._open_again():
            return
        disk = self._disk
        try:
            with _Transaction(disk):
                disk.execute("INSERT OR REPLACE INTO meta VALUES ('probe', ?)", (time.time_ns() // 1_000_000,))
            if self._copied:
                self._db.backup(disk)
            else:  # the state as it is now; of the tables not seeded from the disk (unread), what it has is kept
                _copy_state(self._db, disk, replace=self._seeded)
                spill.settle(disk, self._taken)  # the files taken in are sent: no new frame takes their numbers
        except sqlite3.Error as exc:
            if _is_corrupt(exc):  # found corrupt by the probe: from now on left as it is, as above
                self._leave_file()
                self.memory_why = self._found_corrupt(exc, "while the store runs")
                self._say(f"store: {self.memory_why}; staying in memory")
            return
        memory, self._db = self._db, disk
        memory.close()
        self._set_limits(self._disk_pages)
        self.memory_since = None
        self.memory_why = None
        self._copied = False
        self.epoch = self._meta("epoch")
        self._load_counters()
        self._say(f"store: back on disk ({self.path})")
        self._forget_taken()

    def _open_again(self) -> bool:
        """In memory since a start whose file could not be opened, or since it was found corrupt: try to open it now. A
        file found corrupt is not opened again while it is the same file (the same inode, size and time): what is left
        in place for recovery is never written to."""
        if self._unreadable is not None:
            try:
                now = self.path.stat()
            except OSError:
                now = None
            if now is not None and _same_file(now, self._unreadable):
                return False
        try:
            self._open_file()
        except StoreError as exc:
            if _is_corrupt(exc):
                self._leave_file()
            else:
                self._close_file()
            return False
        self._unreadable = None
        return True

    # --- helpers ---------------------------------------------------------------------------------

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def _meta(self, key: str, default: int | None = None) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None and default is not None:
            return default
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        if self.in_memory:
            self._back_to_disk()
        if self.in_memory:
            depth = self.depth()
            why = (
                f"its file found corrupt ({self.path}, left as it is with what waits in it, for recovery)"
                if self._unreadable is not None
                else "the disk still failing"
            )
            fate, kept = "are lost", False
            if depth.alarm or depth.telemetry:  # kept beside the file, sent after the restart (see spill.py)
                try:
                    # A copy's file taken in is held in this one: it replaces the disk's backlog as that file did.
                    copied = self._copy_mark or next((t.copied for t in self._taken if t.copied), None)
                    written = spill.write(self._db, self.path, seeded=self._seeded, copied=copied)
                except (sqlite3.Error, OSError) as exc:
                    fate = f"are lost: they cannot be written beside it either ({exc})"
                else:
                    fate, kept = f"are kept in {written}, to be sent after the restart", True
            self._say(
                f"store: stopping in memory, {why}: {depth.alarm} alarm(s) and {depth.telemetry} telemetry message(s)"
                f" not sent {fate}"
            )
            if kept or not (depth.alarm or depth.telemetry):
                self._forget_taken()  # what they held is in the new file, or sent
            self._db.close()
        if self._file is not None:
            self._file.close()

    def _take_spills(self) -> None:
        """Take in the files of unsent messages a store stopping in memory left beside this one (see
        :mod:`eldercare.gateway.spill`). On disk, a failing write raises :class:`StoreError` (it starts in memory, if it
        may)."""
        memory, may = self.in_memory, self._memory_after_s is not None and self._memory_bytes > 0
        try:
            taken = spill.take_all(
                self._db, self.path, _STATE_TABLES, keep=memory, say=self._say, raising=may and not memory
            )
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"cannot take in the unsent messages beside it: {exc}") from exc
        if taken:
            self._taken += taken if memory else []
            self._load_counters()

    def _forget_taken(self) -> None:
        """The files taken in while in memory deleted: what they held is sent, or in a newer file."""
        taken, self._taken = self._taken, []
        for found in taken:
            try:
                spill.remove(found.path)
            except OSError as exc:
                self._say(f"store: {found.path} cannot be deleted ({exc}); its messages may be sent again")

    # --- reading state ----------------------------------------------------------------------------

    def depth(self) -> Depth:
        return Depth(
            alarm=self._queued[Lane.ALARM] + self._in_frames[Lane.ALARM],
            telemetry=self._queued[Lane.TELEMETRY] + self._in_frames[Lane.TELEMETRY],
        )

    def queued(self, lane: Lane) -> int:
        """Messages not yet in a frame."""
        return self._queued[lane]

    @property
    def data_bytes(self) -> int:
        return self._bytes

    def disk_bytes(self) -> int:
        """Bytes of the database file and its write-ahead log; in memory, what the store holds by its own measure
        (read from any thread: no query)."""
        if self.in_memory:
            return self._bytes
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def active_faults(self) -> set[tuple[str, str]]:
        (rows,) = self._state_rows("SELECT dev, fault FROM faults")
        return {(str(d), str(f)) for d, f in rows}

    def devices(self) -> dict[str, str]:
        (rows,) = self._state_rows("SELECT dev, class FROM devices")
        return {str(d): str(c) for d, c in rows}

    def detector_states(self) -> dict[str, tuple[bytes, list[SavedSamples]]]:
        """Each wearable's last fall detector checkpoint: its state and its stored samples."""
        states, stored = self._state_rows(
            "SELECT dev, state FROM fall_state",
            "SELECT dev, stream, first, samples FROM fall_samples ORDER BY dev, stream, first",
        )
        saved: dict[str, tuple[bytes, list[SavedSamples]]] = {str(dev): (bytes(state), []) for dev, state in states}
        for dev, stream, first, samples in stored:
            if dev in saved:
                saved[dev][1].append(SavedSamples(int(stream), int(first), bytes(samples)))
        return saved

    def _state_rows(self, *queries: str) -> list[list[Any]]:
        """The rows of ``queries`` (of the tables that are not queues), read together. A file found corrupt reading
        them puts the store in memory at once, as a commit finding it does (see the module's text), and they are
        read there; a disk that cannot be read otherwise raises :class:`StoreError`, never a bare SQLite error."""
        try:
            return [self._db.execute(query).fetchall() for query in queries]
        except sqlite3.Error as exc:
            if self._disk_failed(exc):
                return self._state_rows(*queries)
            raise StoreError(self.path, f"cannot be read: {exc}") from exc

    # --- writing ------------------------------------------------------------------------------------

    def commit(self, batches: Sequence[Batch], *, acked: Sequence[int] = ()) -> list[Stored]:
        """Store ``batches`` and forget the frames ``acked``, in one fsynced transaction."""
        messages = sum(_cost(i) for b in batches for i in b.items)
        spare = sum(_cost(i) for b in batches for i in b.items if i.spare)
        # Fall detector state takes room as alarms do; telemetry makes room for all of it (the rows it replaces
        # are not subtracted here: what it really adds is known once it is written, see _room_for_detectors).
        detectors = sum(len(d.state) + len(d.samples) + 2 * ROW_OVERHEAD for b in batches for d in b.detectors)
        at_least = 0  # bytes of telemetry to drop whatever the estimate says (the pages ran out first)
        if self.in_memory and time.monotonic() >= self._next_probe:
            self._back_to_disk()
        if self._stale:
            try:
                self._rolled_back()
            except StoreError as exc:
                if not self._disk_failed(exc):
                    raise
        while True:
            try:
                with self._tx():
                    self._delete_frames(acked)
                    self._make_room(messages + detectors, at_least=at_least)
                    keep_spare = self._room_for_messages(messages, spare)
                    before = self._bytes
                    results = [self._add(batch, keep_spare=keep_spare) for batch in batches]
                    self._room_for_detectors(before, messages if keep_spare else messages - spare)
                    self._trim_keys()
            except _AlarmsFullError as exc:
                self._rolled_back()
                raise StoreFullError(f"{exc.args[0]}: the rest is kept for sending them") from exc
            except sqlite3.Error as exc:
                if self._failed(exc):
                    continue  # the same commit, now in memory
                at_least += max(messages + detectors, self.max_bytes // 32)
                continue
            self._failing_since = None  # taken (in memory it is None already)
            for stored in results:
                for item in stored.accepted:
                    self._queued[item.lane] += 1
                    self._bytes += _cost(item)
            return results

    def _failed(self, exc: sqlite3.Error) -> bool:
        """After a commit failed: True if the store went on in memory (commit again there), False if the pages ran
        out (drop more telemetry and commit again); otherwise raises :class:`StoreError` or :class:`StoreFullError`."""
        try:
            self._rolled_back()
        except StoreError as again:
            if self._disk_failed(again if _is_corrupt(again) else exc):  # (corrupt: in memory at once)
                return True
            raise
        if not (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)):
            if self._disk_failed(exc):
                return True
            raise StoreError(self.path, str(exc)) from exc
        if self._queued[Lane.TELEMETRY] == 0:
            # Full with no telemetry left: by the store's own bound, alarms are refused (they wait in the devices);
            # a file system full of other files is a failing disk.
            if not self.in_memory and self._file_system_full() and self._disk_failed(exc):
                return True
            raise StoreFullError(f"{exc}, and no telemetry left to drop") from exc
        return False

    def _add(self, batch: Batch, *, keep_spare: bool = True) -> Stored:
        accepted: list[Item] = []
        repeats = left_out = 0
        for item in batch.items:
            if item.spare and not keep_spare:
                left_out += 1
                continue
            cursor = self._db.execute("INSERT OR IGNORE INTO recent (key) VALUES (?)", (_key(item.body),))
            if cursor.rowcount == 0:
                repeats += 1
                continue
            self._db.execute(f"INSERT INTO {_QUEUE[item.lane]} (body) VALUES (?)", (item.body,))  # noqa: S608
            accepted.append(item)
        for dev, fault, active in batch.faults:
            if active:
                self._db.execute("INSERT OR IGNORE INTO faults VALUES (?, ?)", (dev, fault))
            else:
                self._db.execute("DELETE FROM faults WHERE dev = ? AND fault = ?", (dev, fault))
        self._db.executemany("INSERT OR IGNORE INTO devices VALUES (?, ?)", batch.devices)
        for dev in batch.forget:
            self._free("DELETE FROM fall_samples WHERE dev = ? RETURNING length(samples)", dev)
            self._free("DELETE FROM fall_state WHERE dev = ? RETURNING length(state)", dev)
        for d in batch.detectors:  # the new checkpoint replaces a row from the same sample (stored again)
            self._free(
                "DELETE FROM fall_samples WHERE dev = ? AND (stream <> ? OR last <= ? OR first = ?)"
                " RETURNING length(samples)",
                d.dev,
                d.stream,
                d.keep_from,
                d.first,
            )
            self._free("DELETE FROM fall_state WHERE dev = ? RETURNING length(state)", d.dev)
            if d.n_samples:
                self._db.execute(
                    "INSERT INTO fall_samples VALUES (?, ?, ?, ?, ?)",
                    (d.dev, d.stream, d.first, d.first + d.n_samples, d.samples),
                )
                self._bytes += len(d.samples) + ROW_OVERHEAD
            self._db.execute("INSERT INTO fall_state VALUES (?, ?)", (d.dev, d.state))
            self._bytes += len(d.state) + ROW_OVERHEAD
        if left_out:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (left_out,))
            self.dropped += left_out
        return Stored(accepted, repeats)

    def _free(self, delete: str, *params: str | int) -> None:
        """Run ``delete`` (a ``DELETE ... RETURNING`` the length of each row's blob) and count what it freed."""
        self._bytes -= sum(size + ROW_OVERHEAD for (size,) in self._db.execute(delete, params).fetchall())

    def _trim_keys(self) -> None:
        cursor = self._db.execute(
            "DELETE FROM recent WHERE id <= (SELECT max(id) FROM recent) - ?", (self._dedup_keys,)
        )
        self._bytes -= max(0, cursor.rowcount) * KEY_BYTES

    def _room_for_messages(self, incoming: int, spare: int) -> bool:
        """After :meth:`_make_room`: what is left is alarms (and frames, and fall detector state), which are never
        dropped; messages that would take them past :data:`ALARM_SHARE` of the pages are refused, so that they
        can still be cut into frames. Whether the ``spare`` ones fit too (if not, they are left out)."""
        if self._bytes + incoming <= self._alarm_limit:
            return True
        if incoming > spare:
            raise _AlarmsFullError(f"alarms fill {self._bytes:,} bytes")
        return False

    def _room_for_detectors(self, before: int, messages: int) -> None:
        """After the batches' rows are written (the messages not yet counted): refuse detector state that grows
        the store past :data:`DETECTOR_SHARE`. State that replaces as much as it adds always fits."""
        grown = self._bytes - before
        if grown > 0 and before + messages + grown > self._detector_limit:
            raise _AlarmsFullError(f"alarms and fall detector state fill {before:,} bytes")

    def _make_room(self, incoming: int, *, at_least: int = 0) -> None:
        """Drop the oldest telemetry until ``incoming`` more bytes fit under the data limit (and ``at_least``)."""
        excess = max(self._bytes + incoming - self._data_limit, at_least)
        while excess > 0 and self._queued[Lane.TELEMETRY] > 0:
            rows = self._db.execute(
                "SELECT id, length(body) FROM telemetry_q ORDER BY id LIMIT ?", (max(16, min(4096, excess // 256)),)
            ).fetchall()
            freed = 0
            last = rows[-1][0]
            for _, size in rows:
                freed += size + ROW_OVERHEAD
            self._db.execute("DELETE FROM telemetry_q WHERE id <= ?", (last,))
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (len(rows),))
            self._queued[Lane.TELEMETRY] -= len(rows)
            self.dropped += len(rows)
            self._bytes -= freed
            excess -= freed

    def _delete_frames(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        placeholders = ",".join("?" * len(seqs))
        rows = self._db.execute(
            f"DELETE FROM frames WHERE seq IN ({placeholders}) RETURNING lane, n_msgs, length(body)",  # noqa: S608
            list(seqs),
        ).fetchall()
        for lane, n_msgs, size in rows:
            self._in_frames[Lane(lane)] -= n_msgs
            self._bytes -= size + ROW_OVERHEAD

    def cut_frame(self, lane: Lane, *, max_msgs: int, max_bytes: int, sent: int) -> OutFrame | None:
        """Move the oldest messages of ``lane`` into a new numbered frame; None if the lane is empty."""
        table = _QUEUE[lane]
        try:
            if self._stale:
                self._rolled_back()
            rows = self._db.execute(f"SELECT id, body FROM {table} ORDER BY id LIMIT ?", (max_msgs,)).fetchall()  # noqa: S608
        except (sqlite3.Error, StoreError) as exc:
            if self._disk_failed(exc):
                return self.cut_frame(lane, max_msgs=max_msgs, max_bytes=max_bytes, sent=sent)
            raise StoreError(self.path, str(exc)) from exc
        if not rows:
            return None
        bodies: list[bytes] = []
        size = 100
        for _, body in rows:
            if bodies and size + len(body) + 1 > max_bytes:
                break
            bodies.append(body)
            size += len(body) + 1
        last_id = rows[len(bodies) - 1][0]
        try:
            with self._tx():
                seq = self._meta("next_seq")
                key = seq + self._meta("key_base", 0)
                body = frame_bytes(epoch=self.epoch, seq=seq, sent=sent, bodies=bodies)
                self._db.execute(f"DELETE FROM {table} WHERE id <= ?", (last_id,))  # noqa: S608
                self._db.execute("INSERT INTO frames VALUES (?, ?, ?, ?)", (key, int(lane), len(bodies), body))
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        except sqlite3.Error as exc:
            if self._disk_failed(exc):
                return self.cut_frame(lane, max_msgs=max_msgs, max_bytes=max_bytes, sent=sent)
            raise StoreError(self.path, str(exc)) from exc
        self._failing_since = None
        self._queued[lane] -= len(bodies)
        self._in_frames[lane] += len(bodies)
        self._bytes += len(body) + ROW_OVERHEAD - sum(len(b) + ROW_OVERHEAD for b in bodies)
        return OutFrame(key, lane, len(bodies), body)

    def unacked(self) -> list[OutFrame]:
        """Frames cut but not acknowledged, alarm lane first, each lane in ``seq`` order."""
        try:
            rows = self._db.execute("SELECT seq, lane, n_msgs, body FROM frames ORDER BY lane, seq").fetchall()
        except sqlite3.Error as exc:
            if self._disk_failed(exc):
                return self.unacked()
            raise StoreError(self.path, str(exc)) from exc
        return [OutFrame(int(seq), Lane(lane), int(n), bytes(body)) for seq, lane, n, body in rows]


@dataclass(frozen=True, slots=True)
class _Counters:
    dropped: int
    queued: dict[Lane, int]
    in_frames: dict[Lane, int]
    data_bytes: int


def _read_counters(db: sqlite3.Connection) -> _Counters:
    """The counters a store keeps in memory, read from its database (every queue's rows)."""

    def count(sql: str, *params: int) -> int:
        return int(db.execute(sql, params).fetchone()[0])

    return _Counters(
        dropped=count("SELECT value FROM meta WHERE key = 'dropped'"),
        queued={lane: count(f"SELECT count(*) FROM {_QUEUE[lane]}") for lane in Lane},  # noqa: S608
        in_frames={lane: count("SELECT coalesce(sum(n_msgs), 0) FROM frames WHERE lane = ?", lane) for lane in Lane},
        data_bytes=count(
            "SELECT (SELECT coalesce(sum(length(body)), 0) + count(*) * ? FROM alarm_q)"
            " + (SELECT coalesce(sum(length(body)), 0) + count(*) * ? FROM telemetry_q)"
            " + (SELECT coalesce(sum(length(body)), 0) + count(*) * ? FROM frames)"
            " + (SELECT count(*) * ? FROM recent)"
            " + (SELECT coalesce(sum(length(state)), 0) + count(*) * ? FROM fall_state)"
            " + (SELECT coalesce(sum(length(samples)), 0) + count(*) * ? FROM fall_samples)",
            ROW_OVERHEAD,
            ROW_OVERHEAD,
            ROW_OVERHEAD,
            KEY_BYTES,
            ROW_OVERHEAD,
            ROW_OVERHEAD,
        ),
    )


def _read_state(db: sqlite3.Connection) -> None:
    """Read every row of the tables that are not queues, all their columns (their blobs too, as the gateway reads
    them at start), so that a database damaged there fails here. They are small and bounded (a few KiB a device)."""
    for table in _STATE_TABLES:
        for _ in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - a name of this module's
            pass


def _is_corrupt(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is SQLite finding a file that is not a database, or a damaged one."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if not isinstance(cause, sqlite3.DatabaseError):
        return False
    code = getattr(cause, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _new_epoch(known: int) -> int:
    """An epoch for a store in memory, after ``known`` (the disk's): the time in ms or, where the clock is not past
    ``known`` (a gateway with no clock of its own, not yet set), a random one after it, so that two starts with the
    clock behind do not take the same one (nothing on a failed disk records it; two of 2**31 meet once in 2e9)."""
    now = time.time_ns() // 1_000_000
    return now if now > known else known + 1 + secrets.randbelow(2**31)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _copy_state(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    tables: Sequence[str] = _STATE_TABLES,
    *,
    replace: Sequence[str] = _STATE_TABLES,
) -> None:
    """The ``tables`` that are not queues (faults, devices, fall detectors), from ``source`` to ``target`` in one
    transaction: instead of ``target``'s rows (those in ``replace``), or over them (rows of the same key replaced)."""
    with _Transaction(target):
        for table in tables:
            if table in replace:
                target.execute(f"DELETE FROM {table}")  # noqa: S608 - a name of this module's
            rows = source.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
            if rows:
                marks = ",".join("?" * len(rows[0]))
                target.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)  # noqa: S608


class _AlarmsFullError(Exception):
    """Inside a commit: no telemetry left to drop, and the alarms would pass :data:`ALARM_SHARE` (or the fall
    detector state :data:`DETECTOR_SHARE`); its argument says which."""


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # SQLite may already have rolled back by itself (SQLITE_FULL does): roll back only what is open.
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")
