"""A store's file that SQLite finds corrupt while the gateway runs (a card going bad under it) is met as at start
(``tests/gateway/test_store_start.py``): the store goes on in memory at once, afresh, the commit that found the
damage made there, and the file is left in place as it is, for whoever recovers its unsent alarms, until it is moved
away or a repaired copy put in its place (see :mod:`eldercare.gateway.store`). Before, the damage was taken for a
failing disk: the alarm was refused for ``memory_after_s``, then the damaged database copied into memory, and the
probe wrote to the file and copied the memory's state over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.gateway.support import disk_fails
from tests.gateway.test_store_memory import failing_for, in_memory, press, reading, sent
from tests.gateway.test_store_start import opened, probe

from eldercare.gateway.errors import StoreError
from eldercare.gateway.store import PAGE_SIZE, Batch, Depth, Lane, Store

MIB = 1024 * 1024
T0 = 1_763_775_000_000
QUEUES = ("alarm_q", "telemetry_q", "frames", "recent")  # what a commit, a frame and an acknowledgement read


def backlog(store: Store) -> None:
    """40 alarms and 40 readings waiting, a fault and two devices: what the store holds when its card goes bad."""
    for i in range(40):
        store.commit([Batch(items=[reading(f"BS-{i}", T0 + i), press(f"BT-{i}", T0 + i)])])
    store.commit([Batch(faults=[("BS-1", "offline", True)], devices=[("BS-1", "bed"), ("BT-1", "button")])])


def damage_under(store: Store, *, tables: tuple[str, ...] = QUEUES, header: bool = False) -> bytes:
    """The store's file damaged under it while it runs, in place (the same inode), as a card going bad does: the
    first page of each of ``tables`` overwritten with garbage, and the file's header if ``header`` (SQLite then finds
    that the file is not a database). Every page is checkpointed into the file first, so that SQLite reads them
    there and not in its write-ahead log. After, the pages SQLite keeps in its cache are dropped (``PRAGMA
    shrink_memory`` on the store's own connection), as a larger store's traffic would drop them: a store this small
    would otherwise read them from its cache for as long as the test runs, and not see the damage (in WAL mode the
    cache is dropped only when another connection writes). The file's bytes, damaged."""
    disk = store._disk
    assert disk.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)
    roots = dict(disk.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'").fetchall())
    with store.path.open("r+b") as f:
        if header:
            f.write(b"\x5a" * 100)
        for table in tables:
            f.seek((roots[table] - 1) * PAGE_SIZE)
            f.write(b"\x5a" * PAGE_SIZE)
    disk.execute("PRAGMA shrink_memory")
    return store.path.read_bytes()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_file_found_corrupt_while_running_is_left_as_it_is_and_the_alarm_goes_on_in_memory_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    said: list[str] = []
    store = opened(path, said)  # in memory after 10 s of a failing disk
    try:
        backlog(store)
        epoch = store.epoch
        damaged = damage_under(store, tables=(*QUEUES, "faults"))

        alarm = press("BT-99", T0 + 99)
        (stored,) = store.commit([Batch(items=[alarm], faults=[("BS-2", "offline", True)])])  # before: StoreError
        assert stored.accepted == [alarm]
        assert in_memory(store) and store.epoch > epoch, "at once, afresh, under an epoch of its own"
        why = store.memory_why or ""
        assert "found corrupt while the store runs" in why and "malformed" in why and "left in place" in why, why
        assert "going on in memory" in said[-1] and "afresh" in said[-1] and why in said[-1], said
        assert store.devices() == {"BS-1": "bed", "BT-1": "button"}  # what can still be read of the file
        assert store.active_faults() == {("BS-2", "offline")}  # the faults' page cannot be: memory's own only
        assert path.read_bytes() == damaged and files(tmp_path) == ["s.db"]
        alarms = sent(store, Lane.ALARM)  # the uplink sends it: nothing of the commit was lost
        assert len(alarms) == 1 and b"BT-99" in alarms[0] and b'"epoch":%d' % store.epoch in alarms[0]

        for _ in range(3):  # memory has sent all it held: only the file keeps the store from going back
            probe(store)
            assert in_memory(store), "the same file: not opened again, not written to"
        assert path.read_bytes() == damaged and files(tmp_path) == ["s.db"]

        path.rename(tmp_path / "s.db.broken")  # what the operator does (the gateway never does it)
        probe(store, Batch(items=[press("BT-100", T0 + 100)]))
        assert not in_memory(store) and store.memory_why is None and said[-1].startswith("store: back on disk")
        assert store.depth() == Depth(alarm=1, telemetry=0)  # BT-100, on the new file
        assert store.devices() == {"BS-1": "bed", "BT-1": "button"}
        assert store.active_faults() == {("BS-2", "offline")}
    finally:
        store.close()
    assert (tmp_path / "s.db.broken").read_bytes() == damaged
    again = Store(path, max_bytes=8 * MIB)  # what the new file holds, after a restart
    try:
        assert again.depth() == Depth(alarm=1, telemetry=0)
        assert again.devices() == {"BS-1": "bed", "BT-1": "button"}
        assert again.active_faults() == {("BS-2", "offline")}
    finally:
        again.close()


@pytest.mark.parametrize("first", ["commit", "ack", "cut", "unacked"])
def test_whichever_read_finds_the_damage_first_the_store_goes_on_in_memory_at_once_and_leaves_the_file(
    tmp_path: Path, first: str
) -> None:
    """A commit of messages, an acknowledgement, the uplink cutting a frame, or looking for the frames it sent
    before: each takes the store to memory at once and is done there (before, each raised :class:`StoreError`)."""
    path = tmp_path / "s.db"
    said: list[str] = []
    store = opened(path, said)
    try:
        backlog(store)
        in_flight = store.cut_frame(Lane.ALARM, max_msgs=10, max_bytes=64 * 1024, sent=1)  # sent, not acknowledged
        assert in_flight is not None
        damaged = damage_under(store)

        if first == "commit":
            store.commit([Batch(items=[press("BT-99", T0 + 99)])])
        elif first == "ack":
            store.commit([], acked=[in_flight.seq])
        elif first == "cut":
            assert store.cut_frame(Lane.ALARM, max_msgs=10, max_bytes=64 * 1024, sent=2) is None  # afresh: empty
        else:
            assert store.unacked() == []  # afresh: the frame sent waits in the file, for recovery
        assert in_memory(store) and "found corrupt while the store runs" in (store.memory_why or ""), said
        assert store.depth() == Depth(alarm=1 if first == "commit" else 0, telemetry=0)

        store.commit([Batch(items=[press("BT-100", T0 + 100)])])
        frame = store.cut_frame(Lane.ALARM, max_msgs=10, max_bytes=64 * 1024, sent=3)
        assert frame is not None and frame.seq == 0 and b"BT-100" in frame.body
        assert (b"BT-99" in frame.body) == (first == "commit")
        assert store.unacked() == [frame]
        store.commit([], acked=[frame.seq])
        probe(store)
        assert in_memory(store) and path.read_bytes() == damaged and files(tmp_path) == ["s.db"]
    finally:
        store.close()
    assert path.read_bytes() == damaged, "nor at stopping"


def test_a_header_overwritten_while_running_is_left_and_a_repaired_copy_put_in_its_place_is_sent_under_its_epoch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    said: list[str] = []
    store = opened(path, said)
    try:
        backlog(store)
        epoch = store.epoch
        assert store._disk.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)
        good = path.read_bytes()  # what a recovery of the file gives back, say
        damaged = damage_under(store, tables=(), header=True)

        store.commit([Batch(items=[press("BT-99", T0 + 99)], faults=[("BS-2", "offline", True)])])
        why = store.memory_why or ""
        assert in_memory(store) and "not a database" in why and "left in place" in why, said
        assert store.devices() == {} and store.active_faults() == {("BS-2", "offline")}  # nothing could be read
        assert len(sent(store, Lane.ALARM)) == 1
        for _ in range(3):
            probe(store)
            assert in_memory(store)
        assert path.read_bytes() == damaged

        repaired = tmp_path / "repaired.db"  # recovered by hand (sqlite3 .recover), moved into its place
        repaired.write_bytes(good)
        repaired.replace(path)
        probe(store)
        assert not in_memory(store) and store.epoch == epoch, "the file's own store again"
        assert store.depth() == Depth(alarm=40, telemetry=40)  # what waited in the file, sent now
        # Nothing was read from the damaged file: the memory's faults and devices are written over the copy's.
        assert store.active_faults() == {("BS-1", "offline"), ("BS-2", "offline")}
        assert store.devices() == {"BS-1": "bed", "BT-1": "button"}
        alarms = sent(store, Lane.ALARM)
        assert all(b'"epoch":%d' % epoch in a for a in alarms)
        assert sum(a.count(b'"dev":"BT-') for a in alarms) == 40
    finally:
        store.close()


def test_a_failed_disk_whose_file_the_probe_finds_corrupt_is_left_as_it_is_from_then_on(tmp_path: Path) -> None:
    """In memory for a failing disk, afresh (the file too large to copy), the store's probe finds the file damaged
    once the disk takes writes again (its write is taken; the faults it writes back cannot be read): from then on
    the file is left as it is, as when the damage is found on disk. Before, every probe wrote to it again."""
    path = tmp_path / "s.db"
    said: list[str] = []
    store = Store(path, max_bytes=8 * MIB, memory_after_s=1, memory_bytes=1 * MIB, say=said.append)
    try:
        padding = [reading(f"BS-{i}", T0 + i) for i in range(6000)]  # the file outgrows the memory's bound
        store.commit([Batch(items=[press("BT-1", T0), *padding], faults=[("BS-9", "offline", True)])])
        disk_fails(store, failing=True)
        with pytest.raises(StoreError):
            store.commit([Batch(items=[press("BT-2", T0 + 1)])])
        failing_for(store, 2)
        store.commit([Batch(items=[press("BT-2", T0 + 1)])])
        assert in_memory(store) and "afresh" in said[-1], said
        assert store.active_faults() == {("BS-9", "offline")}  # read from the file, before it went bad

        disk_fails(store, failing=False)
        damage_under(store, tables=("faults",))
        assert len(sent(store, Lane.ALARM)) == 1  # memory has sent all it held: the probe goes as far as the file
        probe(store)
        why = store.memory_why or ""
        assert in_memory(store) and "found corrupt while the store runs" in why and "left in place" in why, said
        assert said[-1].endswith("staying in memory"), said
        left = path.read_bytes()  # with the probe's own write, taken before the damage was found
        for _ in range(3):
            probe(store)
            assert in_memory(store)
        assert path.read_bytes() == left and files(tmp_path) == ["s.db"]

        path.rename(tmp_path / "s.db.broken")
        probe(store)
        assert not in_memory(store) and store.active_faults() == {("BS-9", "offline")}  # the memory's, on a new file
        assert store.depth() == Depth(alarm=0, telemetry=0)
    finally:
        store.close()
    assert (tmp_path / "s.db.broken").read_bytes() == left
