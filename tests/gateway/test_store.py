"""The store and forward queue: durable, numbered, bounded by bytes, alarms never dropped."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from eldercare.devices import messages as m
from eldercare.gateway.store import KEY_BYTES, ROW_OVERHEAD, Batch, DetectorState, Item, Lane, Store, StoreFullError

T0 = 1_763_775_000_000
MIB = 1024 * 1024


def bed(i: int, dev: str = "BS-1") -> Item:
    msg = m.BedSample(dev=dev, ts=T0 + i, presence=True, hr=60.0, rr=15.0, move=0.1)
    return Item(Lane.TELEMETRY, m.encode(msg), msg)


def press(i: int) -> Item:
    msg = m.Button(dev="BT-1", ts=T0 + i, action=m.ButtonAction.PRESS)
    return Item(Lane.ALARM, m.encode(msg), msg)


def cut(store: Store, lane: Lane, n: int = 1000) -> m.Frame | None:
    frame = store.cut_frame(lane, max_msgs=n, max_bytes=256 * 1024, sent=T0 + 999)
    return None if frame is None else m.decode_frame(frame.body)


def test_epoch_and_seq_survive_a_restart_and_frames_are_sent_again_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store(path, max_bytes=8 * MIB)
    assert store.created
    epoch = store.epoch
    store.commit([Batch(items=[bed(1), bed(2), press(3)])])
    alarm = cut(store, Lane.ALARM)
    telemetry = cut(store, Lane.TELEMETRY)
    assert alarm is not None and telemetry is not None
    assert (alarm.epoch, alarm.seq, telemetry.seq) == (epoch, 0, 1)  # one counter for both lanes
    assert [type(x).__name__ for x in telemetry.msgs] == ["BedSample", "BedSample"]
    before = store.unacked()
    store.close()

    again = Store(path, max_bytes=8 * MIB)
    assert not again.created
    assert again.epoch == epoch
    assert again.unacked() == before  # same seq, same bytes (same "sent"): the platform keeps one copy
    assert [f.lane for f in again.unacked()] == [Lane.ALARM, Lane.TELEMETRY]
    again.commit([], acked=[0])
    assert [f.seq for f in again.unacked()] == [1]
    again.commit([Batch(items=[bed(4)])], acked=[1])
    frame = cut(again, Lane.TELEMETRY)
    assert frame is not None and frame.seq == 2
    assert again.depth() == again.depth().__class__(alarm=0, telemetry=1)
    again.close()


def test_a_new_store_is_a_new_epoch(tmp_path: Path) -> None:
    first = Store(tmp_path / "a.db", max_bytes=8 * MIB)
    first.close()
    (tmp_path / "a.db").unlink()
    second = Store(tmp_path / "a.db", max_bytes=8 * MIB)
    assert second.epoch != first.epoch
    assert cut(second, Lane.ALARM) is None
    second.commit([Batch(items=[press(1)])])
    frame = cut(second, Lane.ALARM)
    assert frame is not None and frame.seq == 0


def test_the_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB)
    store.close()
    probe = sqlite3.connect(tmp_path / "s.db")
    assert probe.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    probe.close()
    # synchronous is per connection: the store's own connection sets FULL (checked through its handle).
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB)
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)
    store.close()


def test_a_repeat_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB)
    first = store.commit([Batch(items=[bed(1), press(2)])])
    second = store.commit([Batch(items=[bed(1), press(2), bed(3)])])
    assert (len(first[0].accepted), first[0].repeats) == (2, 0)
    assert (len(second[0].accepted), second[0].repeats) == (1, 2)
    assert store.depth().telemetry == 2


def test_frames_respect_message_and_byte_limits(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB)
    store.commit([Batch(items=[bed(i) for i in range(50)])])
    frame = store.cut_frame(Lane.TELEMETRY, max_msgs=20, max_bytes=256 * 1024, sent=T0)
    assert frame is not None and frame.n_msgs == 20
    small = store.cut_frame(Lane.TELEMETRY, max_msgs=1000, max_bytes=1000, sent=T0)
    assert small is not None
    assert len(small.body) <= 1000
    assert json.loads(small.body)["msgs"][0]["ts"] == T0 + 20  # in order, nothing skipped
    assert store.queued(Lane.TELEMETRY) == 30 - small.n_msgs


def test_when_full_the_oldest_telemetry_goes_first_alarms_never(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    limit = 2 * MIB
    store = Store(path, max_bytes=limit)
    store.commit([Batch(items=[press(-1)])])
    n = 0
    for _ in range(120):  # about 4 MB of telemetry into a 2 MB store, with an alarm now and then
        store.commit([Batch(items=[bed(n + i) for i in range(300)])])
        n += 300
        if n % 3000 == 0:
            store.commit([Batch(items=[press(n)])])
        assert store.disk_bytes() <= limit, store.disk_bytes()
    assert store.dropped > 0
    assert store.depth().alarm == 1 + 12
    kept = [json.loads(b)["ts"] - T0 for (b,) in store._db.execute("SELECT body FROM telemetry_q ORDER BY id")]
    assert kept == list(range(n - len(kept), n))  # the newest, contiguous: the oldest were dropped
    assert store.dropped + len(kept) == n
    dropped = store.dropped
    store.close()
    again = Store(path, max_bytes=limit)
    assert again.dropped == dropped  # the count is kept with the store, reported in heartbeats
    alarms: list[int] = []
    while (frame := cut(again, Lane.ALARM, 5)) is not None:
        alarms.extend(x.ts - T0 for x in frame.msgs)
    assert alarms == [-1, *range(3000, n + 1, 3000)]


def test_only_alarms_left_and_full_refuses_without_losing_anything(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=1 * MIB)
    big = [
        Item(Lane.ALARM, m.encode(m.Button(dev="BT-" + "x" * 60, ts=T0 + i, action=m.ButtonAction.PRESS)))
        for i in range(400)
    ]
    stored = 0
    with pytest.raises(StoreFullError):
        for start in range(0, 100_000, 400):
            batch = [Item(b.lane, b.body.replace(b'"ts":', b'"x":%d,"ts":' % start)) for b in big]
            store.commit([Batch(items=batch)])
            stored += len(batch)
    assert store.depth().alarm == stored  # everything acknowledged is still there
    assert store.disk_bytes() <= 1 * MIB + 64 * 4096


def test_a_store_full_of_alarms_still_cuts_them_into_frames_and_empties(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=2 * MIB)
    n = 0
    with pytest.raises(StoreFullError):
        while True:  # alarms are never dropped: they come in (with a trickle of telemetry) until it refuses them
            store.commit([Batch(items=[*(press(n + k) for k in range(20)), bed(n)])])
            n += 20
    while (frame := store.cut_frame(Lane.ALARM, max_msgs=200, max_bytes=128 * 1024, sent=0)) is not None:
        store.commit([], acked=[frame.seq])  # sent: the room kept back is what lets them go
    assert store.depth().alarm == 0
    store.commit([Batch(items=[press(n)])])  # and it takes alarms again
    store.close()


def checkpoint(dev: str, *, stream: int = T0, first: int = 0, n: int = 300, keep_from: int = 0) -> DetectorState:
    """A fall detector's checkpoint as the gateway stores it: ``n`` samples of 12 bytes and its state."""
    return DetectorState(
        dev=dev,
        stream=stream,
        first=first,
        samples=bytes(12 * n),
        n_samples=n,
        keep_from=keep_from,
        state=b'{"t0": %d, "count": %d}' % (stream, first + n),
    )


def rows_bytes(path: Path, *tables: str) -> int:
    """What the rows of ``tables`` take by the store's measure (their blobs and a row's overhead), from the file."""
    blob = {"fall_state": "state", "fall_samples": "samples"}
    with sqlite3.connect(path) as db:
        return sum(
            db.execute(
                f"SELECT coalesce(sum(length({blob.get(t, 'body')})), 0) + count(*) * ? FROM {t}", (ROW_OVERHEAD,)
            ).fetchone()[0]
            for t in tables
        )


def fall_state_bytes(path: Path) -> int:
    return rows_bytes(path, "fall_state", "fall_samples")


def test_fall_detector_state_is_counted_in_the_budget_across_replacements_restarts_and_rollbacks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = Store(path, max_bytes=1 * MIB)
    steps = [
        [checkpoint("WR-0"), checkpoint("WR-1")],
        [checkpoint("WR-0", first=300, n=25)],  # more samples of the same stream
        [checkpoint("WR-0", first=325, n=25, keep_from=301)],  # the window moved on: the first row goes
        [checkpoint("WR-1", stream=T0 + 60_000)],  # a new stream: the old one's rows go
        [checkpoint("WR-1", stream=T0 + 60_000, n=50)],  # stored again from the same sample (after a refusal)
    ]
    for detectors in steps:
        store.commit([Batch(detectors=detectors)])
        assert store.data_bytes == fall_state_bytes(path) > 0
    store.commit([Batch(forget=["WR-0"])])  # a wearable gone: its rows go, and their bytes
    assert set(store.detector_states()) == {"WR-1"}
    assert store.data_bytes == fall_state_bytes(path) > 0
    counted = store.data_bytes
    store.close()

    store = Store(path, max_bytes=1 * MIB)
    assert store.data_bytes == counted  # counted again from the file at start
    with pytest.raises(StoreFullError):  # alarms and checkpoints until one is refused, and rolled back
        for n in range(0, 100_000, 100):
            store.commit([Batch(items=[press(n + k) for k in range(100)], detectors=[checkpoint(f"WR-{n}")])])
    keys = store._db.execute("SELECT count(*) FROM recent").fetchone()[0] * KEY_BYTES
    assert store.data_bytes == rows_bytes(path, "alarm_q", "fall_state", "fall_samples") + keys
    store.close()


def test_telemetry_is_dropped_to_make_room_for_fall_detector_state(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path, max_bytes=1 * MIB)
    n = 0
    while store.dropped == 0:  # telemetry up to the data share
        store.commit([Batch(items=[bed(n + i) for i in range(100)])])
        n += 100
    dropped, room = store.dropped, store._data_limit - store.data_bytes
    store.commit([Batch(detectors=[checkpoint(f"WR-{w}") for w in range(20)])])  # 20 wearables, 73 KiB
    assert len(store.detector_states()) == 20
    freed = (store.dropped - dropped) * (len(bed(0).body) + ROW_OVERHEAD)
    assert freed >= fall_state_bytes(path) - room  # the oldest readings made room for them
    assert store.data_bytes <= store._data_limit
    store.close()


def test_fall_detector_state_has_room_where_alarms_are_refused(tmp_path: Path) -> None:
    """A store full of alarms (a long outage) still takes the fall detectors' checkpoints, which are what fall
    alarms are made from: one that replaces as much as it adds, always; one that grows (a new wearable) up to
    DETECTOR_SHARE. A spare copy coming with one (the samples forwarded) is dropped and counted; any other message
    is refused. The room kept for framing the alarms is still there: the store empties."""
    path = tmp_path / "s.db"
    store = Store(path, max_bytes=1 * MIB)
    for k in range(12):  # a wearable's window: 12 rows of 25 samples
        store.commit([Batch(detectors=[checkpoint("WR-1", first=25 * k, n=25)])])
    n = 0
    with pytest.raises(StoreFullError):
        while True:
            store.commit([Batch(items=[press(n)])])
            n += 1
    with pytest.raises(StoreFullError):  # a reading is refused: the device keeps it
        store.commit([Batch(items=[bed(0)], detectors=[checkpoint("WR-1", first=300, n=25, keep_from=25)])])
    for k in range(12, 100):  # the window moves on, a copy of each chunk's samples with it
        accel = m.AccelSamples(dev="WR-1", ts=T0 + 500 * k, hz=50, xyz=[(0, 0, 256)] * 25)
        copy = Item(Lane.TELEMETRY, m.encode(accel), accel, spare=True)
        stored = store.commit(
            [Batch(items=[copy], detectors=[checkpoint("WR-1", first=25 * k, n=25, keep_from=25 * (k - 11))])]
        )
        assert stored[0].accepted == []
    assert store.dropped == 88 and store.queued(Lane.TELEMETRY) == 0
    new = 0
    with pytest.raises(StoreFullError):  # new wearables, until their state would pass DETECTOR_SHARE
        while True:
            store.commit([Batch(detectors=[checkpoint(f"WR-N{new}")])])
            new += 1
    assert new > 0 and store._alarm_limit < store.data_bytes <= store._detector_limit
    keys = store._db.execute("SELECT count(*) FROM recent").fetchone()[0] * KEY_BYTES
    assert store.data_bytes == rows_bytes(path, "alarm_q", "fall_state", "fall_samples") + keys
    while (frame := store.cut_frame(Lane.ALARM, max_msgs=1000, max_bytes=128 * 1024, sent=0)) is not None:
        store.commit([], acked=[frame.seq])
    assert store.depth().alarm == 0
    store.commit([Batch(items=[press(n), bed(1)])])  # and it takes messages again
    store.close()


def test_alarms_are_cut_into_frames_even_when_no_page_is_left(tmp_path: Path) -> None:
    """A frame takes the place of the rows it holds (they are deleted first, in the same transaction), so cutting
    one needs no free page: a store whose pages ran out before its estimate said (alarms only, nothing to drop)
    still sends its alarms. Before, the frame was written first, the cut failed, and the uplink with it."""
    store = Store(tmp_path / "s.db", max_bytes=1 * MIB)
    store._alarm_limit = store._detector_limit = 2 * MIB  # no room kept: alarms until SQLite has no page left
    n = 0
    with pytest.raises(StoreFullError, match="full"):
        while True:
            batch = [Item(Lane.ALARM, press(n + k).body + b" " * 500) for k in range(10)]
            store.commit([Batch(items=batch)])
            n += 10
    while (frame := store.cut_frame(Lane.ALARM, max_msgs=200, max_bytes=64 * 1024, sent=0)) is not None:
        store.commit([], acked=[frame.seq])
    assert store.depth().alarm == 0
    store.close()
