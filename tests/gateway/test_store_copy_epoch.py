"""A store in memory as a copy of its failed disk's database cuts its new frames under an epoch of its own, so that no
path (a power cut with no file of unsent messages, that file, the copy written back over the disk, that file taken in
by a store in memory afresh) ever sends two different frames under one ``(epoch, seq)``: the platform keeps the first
and drops the other, whatever it holds (see :mod:`eldercare.gateway.store`). Before, the copy went on under the disk's
epoch and numbers, which the disk's file (it could not be written) did not learn: after a power cut the disk cut its
new messages into frames under the numbers the copy had sent, and the platform dropped them all, alarms included."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests.gateway.support import disk_fails
from tests.gateway.test_store_corrupt_running import files
from tests.gateway.test_store_memory import failing_for, in_memory, press, reading, small_file_system
from tests.gateway.test_store_spill import kept, send_all
from tests.gateway.test_store_start import opened, probe, read_only

from eldercare.gateway import spill
from eldercare.gateway.errors import StoreError
from eldercare.gateway.store import Batch, Depth, Lane, Store

MIB = 1024 * 1024
T0 = 1_763_775_000_000


class Platform:
    """What the platform keeps of the frames sent to it: the first frame of each ``(epoch, seq)`` (the key of
    ``uplink_frames``, claimed with ``ON CONFLICT DO NOTHING``), whatever the bytes of those that come after."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.kept: dict[tuple[int, int], bytes] = {}
        self.clashes: list[tuple[int, int]] = []  # a frame dropped although its bytes differ from the one kept
        for body in bodies:
            doc = json.loads(body)
            key = (int(doc["epoch"]), int(doc["seq"]))
            if self.kept.setdefault(key, body) != body:
                self.clashes.append(key)

    def messages(self) -> Counter[str]:
        """Each message stored, by its device (each device sends one message in these tests)."""
        return Counter(msg["dev"] for body in self.kept.values() for msg in json.loads(body)["msgs"])

    def holes(self) -> dict[int, list[int]]:
        """Per epoch, the seq numbers below its highest that never came (the gaps ``ingest/gaps.py`` reports: it
        starts each epoch at 0); only epochs with holes."""
        seqs: dict[int, set[int]] = {}
        for epoch, seq in self.kept:
            seqs.setdefault(epoch, set()).add(seq)
        missing = {epoch: sorted(set(range(max(s) + 1)) - s) for epoch, s in seqs.items()}
        return {epoch: m for epoch, m in missing.items() if m}


def taken(lo: int, hi: int) -> Counter[str]:
    """The messages of ``devices`` BT-lo.. and BS-lo.. (up to hi, excluded), once each."""
    return Counter([f"BT-{i}" for i in range(lo, hi)] + [f"BS-{i}" for i in range(lo, hi)])


def take(store: Store, lo: int, hi: int) -> None:
    for i in range(lo, hi):
        store.commit([Batch(items=[press(f"BT-{i}", T0 + i), reading(f"BS-{i}", T0 + i)])])


def epoch_of(body: bytes) -> int:
    return int(json.loads(body)["epoch"])


def on_a_failed_disk(path: Path, said: list[str]) -> tuple[Store, list[bytes]]:
    """A store on disk with 10 alarms and 10 readings taken, 5 of the alarms sent in a frame and acknowledged, 3 in
    a frame sent whose acknowledgement never came; then its disk fails for good, and the next commit (BT-10, BS-10)
    puts it in memory, a copy of the disk's database (its backlog: BT-8, BT-9, BS-0..9). The store, and the frames
    the uplink sent so far."""
    store = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)
    take(store, 0, 10)
    acked = store.cut_frame(Lane.ALARM, max_msgs=5, max_bytes=64 * 1024, sent=T0)
    in_flight = store.cut_frame(Lane.ALARM, max_msgs=3, max_bytes=64 * 1024, sent=T0)
    assert acked is not None and in_flight is not None
    store.commit([], acked=[acked.seq])
    disk_fails(store, failing=True)
    with pytest.raises(StoreError):
        store.commit([Batch(items=[press("BT-10", T0 + 10), reading("BS-10", T0 + 10)])])
    failing_for(store, 2)
    take(store, 10, 11)
    assert in_memory(store) and "with all the disk held" in said[-1], said
    assert store.unacked() == [in_flight], "the frame cut on the disk keeps its bytes, and its key"
    return store, [acked.body, in_flight.body]


def test_a_copy_in_memory_cut_off_by_a_power_cut_leaves_the_disk_no_number_it_has_used(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    said: list[str] = []
    store, out = on_a_failed_disk(path, said)
    disk_epoch = epoch_of(out[0])
    try:
        memory_epoch = store.epoch
        out += send_all(store)  # the frame in flight again, as it was; the backlog and BT-10 under the copy's epoch
        take(store, 11, 15)
        out += send_all(store)
        assert out[2] == out[1] and {epoch_of(b) for b in out[3:]} == {memory_epoch}
    finally:  # the power cut: no close, so no file of unsent messages (the disk's file as the failure left it)
        store._db.close()
    assert not [f for f in files(tmp_path) if ".unsent-" in f]

    again = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)  # the disk works after the reboot
    try:
        assert not in_memory(again) and again.epoch == disk_epoch
        take(again, 20, 25)  # new alarms: before, cut into frames under the numbers the copy had sent, and dropped
        out += send_all(again)
    finally:
        again.close()
        store._disk.close()  # (the dead gateway's connection, left open meanwhile: it wrote nothing)
    platform = Platform(out)
    # Every message, the new ones too. What the disk held when it failed (BT-8, BT-9, BS-0..9) the copy sent and the
    # disk, which could not learn it, sends again, under its own numbers: stored twice, the price of the power cut.
    backlog = Counter(["BT-8", "BT-9"] + [f"BS-{i}" for i in range(10)])
    wanted = taken(0, 15) + taken(20, 25) + backlog
    assert platform.messages() == wanted, f"lost: {sorted(wanted - platform.messages())}"
    assert platform.clashes == [], "no two different frames under one (epoch, seq)"
    assert platform.holes() == {}, "each epoch numbered from 0, without a hole"
    (went,) = (s for s in said if "going on in memory" in s)
    assert memory_epoch != disk_epoch and f"its new frames under epoch {memory_epoch}" in went, went


def test_a_copy_stopping_on_a_failed_disk_keeps_its_unsent_under_its_own_epoch_and_the_disk_sends_each_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    said: list[str] = []
    store, out = on_a_failed_disk(path, said)
    disk_epoch = epoch_of(out[0])
    try:
        (old,) = store.unacked()
        store.commit([], acked=[old.seq])
        out.append(old.body)
        acked = store.cut_frame(Lane.ALARM, max_msgs=2, max_bytes=64 * 1024, sent=T0 + 11)
        in_flight = store.cut_frame(Lane.ALARM, max_msgs=1, max_bytes=64 * 1024, sent=T0 + 11)
        assert acked is not None and in_flight is not None
        store.commit([], acked=[acked.seq])
        out += [acked.body, in_flight.body]
        take(store, 11, 15)
    finally:
        store.close()  # the disk still failing: what it holds unsent goes into a file beside the store's
    kept(said)

    again = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)
    try:
        assert not in_memory(again) and again.epoch == disk_epoch
        assert again.depth() == Depth(alarm=15 - 8 - 2, telemetry=15), "the file's, instead of the disk's own"
        take(again, 20, 25)
        out += send_all(again)
        assert in_flight.body in out[out.index(in_flight.body) + 1 :], "sent again as it was"
    finally:
        again.close()
    platform = Platform(out)
    assert platform.messages() == taken(0, 15) + taken(20, 25), "every message, once"
    assert platform.clashes == [] and platform.holes() == {}


def test_a_copy_written_back_over_the_disk_goes_on_there_under_its_epoch_after_a_power_cut(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    said: list[str] = []
    store, out = on_a_failed_disk(path, said)
    disk_epoch = epoch_of(out[0])
    memory_epoch = store.epoch
    try:
        out += send_all(store)
        disk_fails(store, failing=False)
        probe(store, Batch(items=[press("BT-11", T0 + 11), reading("BS-11", T0 + 11)]))
        assert not in_memory(store) and said[-1].startswith("store: back on disk"), said
        assert store.epoch == memory_epoch, "the disk holds the copy now: its epoch, and its numbers"
        take(store, 12, 15)
        in_flight = store.cut_frame(Lane.ALARM, max_msgs=2, max_bytes=64 * 1024, sent=T0 + 15)
        assert in_flight is not None
        out.append(in_flight.body)
    except BaseException:
        store.close()
        raise
    again = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)  # after a power cut (no close)
    try:
        assert not in_memory(again) and again.epoch == memory_epoch != disk_epoch
        assert again.unacked() == [in_flight]
        take(again, 20, 25)
        out += send_all(again)
    finally:
        again.close()
        store._disk.close()
    platform = Platform(out)
    assert platform.messages() == taken(0, 15) + taken(20, 25), "every message, once"
    assert platform.clashes == [] and platform.holes() == {}


def test_a_copys_file_taken_in_by_a_store_in_memory_afresh_is_sent_once_and_the_disk_it_copied_then_dropped(
    tmp_path: Path,
) -> None:
    with small_file_system(tmp_path / "fs", "16m") as fs:
        path = fs / "s.db"
        said: list[str] = []
        store, out = on_a_failed_disk(path, said)
        disk_epoch = epoch_of(out[0])
        try:
            acked = store.cut_frame(Lane.TELEMETRY, max_msgs=4, max_bytes=64 * 1024, sent=T0 + 11)
            assert acked is not None
            store.commit([], acked=[acked.seq])
            out.append(acked.body)
        finally:
            store.close()
        kept(said)
        with read_only(fs):  # after the reboot the disk cannot be opened: in memory afresh, the file taken in
            again = opened(path, said)
            try:
                assert in_memory(again) and again.epoch not in (disk_epoch, epoch_of(acked.body))
                assert again.depth() == Depth(alarm=11 - 5, telemetry=11 - 4)
                take(again, 11, 13)
                out += send_all(again)
            except BaseException:
                again.close()
                raise
        try:
            probe(again)  # all sent: back to the disk, whose backlog the file held (and memory sent)
            assert not in_memory(again) and again.epoch == disk_epoch
            assert again.depth() == Depth(alarm=0, telemetry=0), "what the copy superseded is gone"
            take(again, 20, 25)
            out += send_all(again)
        finally:
            again.close()
    platform = Platform(out)
    assert platform.messages() == taken(0, 13) + taken(20, 25), "every message, once"
    assert platform.clashes == [] and platform.holes() == {}


def test_a_copys_file_kept_again_by_a_store_in_memory_afresh_still_replaces_the_disk_it_copied(
    tmp_path: Path,
) -> None:
    """The copy's file taken in by a store in memory afresh (its disk's file found not a database after the reboot)
    that stops before it has sent all: its own file holds what the copy's held, so it replaces the disk's backlog as
    the copy's did, once the disk's file is back. Before, it was added to that backlog: what the copy had sent from
    it, the disk sent again, stored twice."""
    path = tmp_path / "s.db"
    said: list[str] = []
    store, out = on_a_failed_disk(path, said)
    try:
        (old,) = store.unacked()  # sent again, and acknowledged; then every alarm, the readings left queued
        alarms = store.cut_frame(Lane.ALARM, max_msgs=100, max_bytes=64 * 1024, sent=T0 + 11)
        assert alarms is not None
        store.commit([], acked=[old.seq, alarms.seq])
        out += [old.body, alarms.body]
    finally:
        store.close()
    copys = kept(said)
    good = path.read_bytes()
    path.write_bytes(b"not a database " * 1000)

    again = opened(path, said)
    try:
        assert in_memory(again) and "is found corrupt at start" in why_of(said), said
        assert again.depth() == Depth(alarm=0, telemetry=11), "the alarms went in the first frame"
        take(again, 11, 13)
        frame = again.cut_frame(Lane.TELEMETRY, max_msgs=3, max_bytes=64 * 1024, sent=T0 + 13)
        assert frame is not None
        again.commit([], acked=[frame.seq])
        out.append(frame.body)
    finally:
        again.close()
    own = kept(said)
    assert own != copys and not copys.exists()
    path.write_bytes(good)  # a repaired copy put in its place

    third = opened(path, said)
    try:
        assert not in_memory(third) and not own.exists()
        assert third.depth() == Depth(alarm=2, telemetry=11), "what the file held, instead of the disk's own"
        take(third, 20, 25)
        out += send_all(third)
    finally:
        third.close()
    platform = Platform(out)
    wanted = taken(0, 13) + taken(20, 25)
    assert platform.messages() == wanted, f"stored twice: {sorted(platform.messages() - wanted)}"
    assert platform.clashes == [] and platform.holes() == {}


def why_of(said: list[str]) -> str:
    (went,) = (s for s in said if "afresh" in s)
    return went


class Crash(BaseException):
    """The power going off."""


def test_two_files_left_by_a_power_cut_replace_the_disk_once_and_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the power goes off after the store in memory afresh wrote its file, before it deleted the copy's:
    both are taken in. The newer replaces the disk's frames (the disk's queues were empty: all cut into frames); the
    older, taken in after it, adds its frames again (the same bytes: the platform keeps one). Before, the disk had not
    moved on by the older file's mark (its queues and next seq as they were), so it replaced the disk's frames in
    turn, the newer file's among them: the reading only that file held was lost."""
    path = tmp_path / "s.db"
    said: list[str] = []
    store = Store(path, max_bytes=8 * MIB, memory_after_s=1, say=said.append)
    out: list[bytes] = []
    try:
        take(store, 0, 6)
        alarms, readings = (store.cut_frame(lane, max_msgs=100, max_bytes=64 * 1024, sent=T0) for lane in Lane)
        assert alarms is not None and readings is not None  # every message in a frame, sent
        store.commit([], acked=[readings.seq])  # the alarms' acknowledgement never came
        out += [alarms.body, readings.body]
        disk_fails(store, failing=True)
        with pytest.raises(StoreError):
            take(store, 6, 7)
        failing_for(store, 2)
        take(store, 6, 7)
        assert in_memory(store)
    finally:
        store.close()
    copys = kept(said)
    good = path.read_bytes()
    path.write_bytes(b"not a database " * 1000)

    again = opened(path, said)
    try:
        assert in_memory(again) and again.depth() == Depth(alarm=7, telemetry=1)
        take(again, 7, 8)
        alarm = again.cut_frame(Lane.ALARM, max_msgs=100, max_bytes=64 * 1024, sent=T0 + 8)
        assert alarm is not None and b"BT-7" in alarm.body  # sent, its acknowledgement never came
        out.append(alarm.body)

        def power_off(_: Path) -> None:
            raise Crash

        monkeypatch.setattr(spill, "remove", power_off)
        with pytest.raises(Crash):
            again.close()
        monkeypatch.undo()
    finally:
        again._db.close()
    own = kept(said)
    assert copys.exists() and own.exists()
    path.write_bytes(good)

    third = opened(path, said)
    try:
        assert not in_memory(third) and not own.exists() and not copys.exists()
        take(third, 20, 22)
        out += send_all(third)
    finally:
        third.close()
    platform = Platform(out)
    wanted = taken(0, 8) + taken(20, 22)
    assert platform.messages() == wanted, f"lost: {sorted(wanted - platform.messages())}"
    assert platform.clashes == [] and platform.holes() == {}
