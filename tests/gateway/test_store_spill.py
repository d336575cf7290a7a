"""A store that stops in memory (its file found corrupt, or its disk failing) keeps what it holds unsent in a file
beside its own, and the next start sends it (see :mod:`eldercare.gateway.spill`). Before, every acknowledged alarm a
store in memory held when the gateway stopped was lost ("not sent are lost")."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from tests.gateway.support import disk_fails
from tests.gateway.test_store_corrupt_running import files
from tests.gateway.test_store_memory import failing_for, in_memory, press, reading, small_file_system
from tests.gateway.test_store_start import damage, opened

from eldercare.gateway import spill
from eldercare.gateway.errors import StoreError
from eldercare.gateway.store import Batch, Depth, Lane, OutFrame, Store

MIB = 1024 * 1024
T0 = 1_763_775_000_000


def held(store: Store, n: int) -> OutFrame:
    """``n`` alarms and ``n`` readings taken (BT-0.., BS-0..), the first 5 alarms cut into a frame that the uplink sent
    and whose acknowledgement never came (the frame)."""
    for i in range(n):
        store.commit([Batch(items=[press(f"BT-{i}", T0 + i), reading(f"BS-{i}", T0 + i)])])
    frame = store.cut_frame(Lane.ALARM, max_msgs=5, max_bytes=64 * 1024, sent=T0)
    assert frame is not None and frame.n_msgs == 5
    return frame


def send_all(store: Store) -> list[bytes]:
    """What the uplink sends after a start: the frames not acknowledged (acknowledged now), then every queued message
    cut into frames and acknowledged. The frames' bodies."""
    out = []
    for old in store.unacked():
        store.commit([], acked=[old.seq])
        out.append(old.body)
    for lane in Lane:
        while frame := store.cut_frame(lane, max_msgs=100, max_bytes=64 * 1024, sent=T0 + 1):
            store.commit([], acked=[frame.seq])
            out.append(frame.body)
    return out


def platform(frames: list[bytes]) -> Counter[str]:
    """The messages the platform stores of ``frames``: one copy per (epoch, seq), the first (``ingest/store.py``);
    each message's device, counted."""
    first: dict[tuple[int, int], bytes] = {}
    for body in frames:
        doc = json.loads(body)
        first.setdefault((doc["epoch"], doc["seq"]), body)
    return Counter(msg["dev"] for body in first.values() for msg in json.loads(body)["msgs"])


def everything(n: int) -> Counter[str]:
    return Counter([f"BT-{i}" for i in range(n)] + [f"BS-{i}" for i in range(n)])


def kept(said: list[str]) -> Path:
    """The file the store said it kept its unsent messages in, as it stopped."""
    assert said[-1].startswith("store: stopping in memory") and "to be sent after the restart" in said[-1], said[-1]
    (path,) = (Path(w.rstrip(",")) for w in said[-1].split() if ".unsent-" in w)
    assert path.is_file()
    return path


def test_a_store_whose_file_is_corrupt_keeps_its_alarms_at_stop_and_sends_every_one_after_the_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    damage(path)
    damaged = path.read_bytes()
    said: list[str] = []
    store = opened(path, said)
    assert in_memory(store)
    in_flight = held(store, 30)
    store.close()  # before: "30 alarm(s) and 30 telemetry message(s) not sent are lost"
    assert "30 alarm(s) and 30 telemetry message(s)" in said[-1] and "its file found corrupt" in said[-1], said[-1]
    spilled = kept(said)
    assert spilled.name.startswith(f"s.db.unsent-{store.epoch}-") and path.read_bytes() == damaged

    store = opened(path, said)  # the file still corrupt: in memory again, afresh
    try:
        assert in_memory(store) and store.depth() == Depth(alarm=30, telemetry=30)
        frames = send_all(store)
        assert frames[0] == in_flight.body, "the frame in flight is sent again as it was (the platform keeps one)"
        assert platform([in_flight.body, *frames]) == everything(30), "every alarm, once"
        assert spilled.is_file(), "kept while the store is in memory: only the next stop says all is sent"
    finally:
        store.close()
    assert said[-1].endswith("0 alarm(s) and 0 telemetry message(s) not sent are lost"), said[-1]
    assert files(tmp_path) == ["s.db"] and path.read_bytes() == damaged


def test_a_spill_is_taken_by_the_disk_once_the_corrupt_file_is_moved_away_and_deleted_once_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    damage(path)
    said: list[str] = []
    store = opened(path, said)
    in_flight = held(store, 12)
    store.close()
    spilled = kept(said)
    path.rename(tmp_path / "s.db.broken")  # what the operator does

    store = opened(path, said)
    try:
        assert not in_memory(store) and not spilled.exists(), "on disk: taken in, committed, then deleted"
        assert store.depth() == Depth(alarm=12, telemetry=12)
    finally:
        store.close()  # a stop before anything is sent: it is all on the disk
    again = Store(path, max_bytes=8 * MIB)
    try:
        frames = send_all(again)
        assert in_flight.body in frames and platform(frames) == everything(12)
    finally:
        again.close()


def test_a_half_written_spill_is_ignored_and_left_and_a_whole_one_beside_it_taken(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    damage(path)
    said: list[str] = []
    store = opened(path, said)
    held(store, 8)
    store.close()
    whole = kept(said)
    torn = whole.with_name(whole.name.replace("-", "-9", 1) + ".tmp")  # a stop whose write was cut short
    torn.write_bytes(whole.read_bytes()[:6000])
    cut_short = whole.with_name(whole.name.replace("-", "-8", 1))  # one cut short, put in place by a hand
    cut_short.write_bytes(whole.read_bytes()[:6000])
    path.rename(tmp_path / "s.db.broken")

    store = opened(path, said)
    try:
        assert not in_memory(store) and store.depth() == Depth(alarm=8, telemetry=8)
        assert any(f"{cut_short} cannot be read" in s and "left as it is" in s for s in said), said
        assert platform(send_all(store)) == everything(8)
    finally:
        store.close()
    assert sorted(files(tmp_path)) == sorted(["s.db", "s.db.broken", torn.name, cut_short.name]), files(tmp_path)
    assert len(torn.read_bytes()) == len(cut_short.read_bytes()) == 6000


class Crash(BaseException):
    """The power going off."""


def test_a_crash_after_the_spill_is_taken_in_but_before_it_is_sent_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    damage(path)
    said: list[str] = []
    store = opened(path, said)
    in_flight = held(store, 20)
    store.close()
    spilled = kept(said)
    content = spilled.read_bytes()

    crashed = opened(path, said)  # in memory again: takes it in, sends part of it, and the power goes off
    assert in_memory(crashed) and crashed.depth() == Depth(alarm=20, telemetry=20)
    first = crashed.unacked()[:2]
    crashed.commit([], acked=[first[0].seq])
    crashed._db.close()  # (no close: nothing written)
    assert spilled.read_bytes() == content

    store = opened(path, said)
    try:
        assert in_memory(store) and store.depth() == Depth(alarm=20, telemetry=20)
        again = store.unacked()
        assert [f.body for f in again[:2]] == [f.body for f in first], "the same frames: the platform keeps one"
        assert platform([in_flight.body, first[0].body, *send_all(store)]) == everything(20)
    finally:
        store._db.close()

    # On disk: a crash between the commit that takes it in and its deletion takes nothing in twice.
    path.rename(tmp_path / "s.db.broken")

    def power_off(_: Path) -> None:
        raise Crash

    monkeypatch.setattr(spill, "remove", power_off)
    with pytest.raises(Crash):
        opened(path, said)
    monkeypatch.undo()
    assert spilled.read_bytes() == content
    store = opened(path, said)
    try:
        assert not in_memory(store) and not spilled.exists()
        assert store.depth() == Depth(alarm=20, telemetry=20), "taken in once"
        assert platform(send_all(store)) == everything(20)
    finally:
        store.close()


def test_a_store_in_memory_for_a_failing_disk_keeps_its_messages_beside_it_and_the_disk_takes_them_once(
    tmp_path: Path,
) -> None:
    """In memory as a copy of the disk's database (its epoch and sequence numbers): after the restart the disk's own
    queues, which the copy holds or has sent, are not sent a second time, and no new frame reuses a number."""
    path = tmp_path / "s.db"
    said: list[str] = []
    store = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)
    sent_before = held(store, 10)  # 10 alarms and 10 readings on the disk, 5 of the alarms in a frame
    disk_fails(store, failing=True)
    with pytest.raises(StoreError):
        store.commit([Batch(items=[press("BT-10", T0 + 10)])])
    failing_for(store, 2)
    store.commit([Batch(items=[press("BT-10", T0 + 10), reading("BS-10", T0 + 10)])])
    assert in_memory(store) and "with all the disk held" in said[-1], said
    from_memory = store.cut_frame(Lane.ALARM, max_msgs=3, max_bytes=64 * 1024, sent=T0 + 2)
    assert from_memory is not None
    store.commit([], acked=[sent_before.seq, from_memory.seq])  # acknowledged while in memory
    store.close()  # the disk still failing (the store's own connection refuses writes)
    assert "the disk still failing" in said[-1], said[-1]
    kept(said)

    again = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)
    try:
        assert not in_memory(again) and files(tmp_path) == ["s.db", "s.db-shm", "s.db-wal"]
        assert again.depth() == Depth(alarm=11 - 8, telemetry=11), "what the memory held, the disk's own not twice"
        frames = [sent_before.body, from_memory.body, *send_all(again)]
        assert platform(frames) == everything(11)
        seqs = [(json.loads(b)["epoch"], json.loads(b)["seq"]) for b in frames]
        assert len(set(seqs)) == len(seqs), f"no number given twice: {seqs}"
    finally:
        again.close()


def test_a_disk_that_cannot_take_even_the_spill_says_its_messages_are_lost(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs", "16m") as fs:
        said: list[str] = []
        store = Store(fs / "s.db", max_bytes=8 * MIB, memory_after_s=1, say=said.append)
        try:
            held(store, 6)
            disk_fails(store, failing=True)
            with pytest.raises(StoreError):
                store.commit([Batch(items=[press("BT-6", T0 + 6)])])
            failing_for(store, 2)
            store.commit([Batch(items=[press("BT-6", T0 + 6)])])
            assert in_memory(store)
        except BaseException:
            store.close()
            raise
        other = os.open(fs / "logs", os.O_WRONLY | os.O_CREAT)  # the disk really fails: full, to the last byte
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(other, b"x" * size)
        os.close(other)
        store.close()
        assert said[-1].startswith("store: stopping in memory, the disk still failing"), said[-1]
        assert "7 alarm(s) and 6 telemetry message(s) not sent are lost" in said[-1], said[-1]
        assert "cannot be written beside it either" in said[-1] and "full" in said[-1], said[-1]
        assert sorted(p.name for p in fs.iterdir()) == ["logs", "s.db", "s.db-shm", "s.db-wal"]
