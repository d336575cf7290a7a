"""A store's file damaged in the tables that are not queues (its faults, devices and fall detectors, which the gateway
reads at start) is met as one damaged in its queues (``tests/gateway/test_store_start.py``,
``test_store_corrupt_running.py``): the store goes on in memory, afresh, with what can still be read of the file,
says why, and leaves the file in place as it is. Before, opening read only the queues (and of the fall detectors'
rows, the lengths of their blobs), so such a file opened on disk and the first of ``devices()``, ``active_faults()``
and ``detector_states()`` to meet the damage raised a bare SQLite error: the gateway did not start at all, and the
home had no local alarm and nothing sent."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import certifi
import pytest
from tests.gateway.support import free_port
from tests.gateway.test_store_corrupt_running import damage_under, files
from tests.gateway.test_store_memory import in_memory, press, reading, sent
from tests.gateway.test_store_start import opened, probe

from eldercare.gateway import config as gateway_config
from eldercare.gateway import service
from eldercare.gateway.store import PAGE_SIZE, Batch, DetectorState, Lane, SavedSamples, Store

MIB = 1024 * 1024
T0 = 1_763_775_000_000
DEVICES = {"BS-1": "bed_sensor", "BT-1": "button", "WR-1": "wearable", "WR-2": "wearable"}
FAULTS = {("BS-1", "offline")}
# A detector's state and its samples, each long enough to take more than one overflow page (a state holding the
# chunks that came ahead of the stream, its samples a window of 16 s): a page of such a chain damaged is found only
# by reading the blob itself, which the queues' counts at open never did.
STATE = b'{"ahead": "%s"}' % (b"A" * 9000)
SAMPLES = bytes(range(240)) * 40  # 800 samples of 12 bytes (float32 x, y, z)


def checkpoint(dev: str) -> DetectorState:
    return DetectorState(dev=dev, stream=T0, first=0, samples=SAMPLES, n_samples=800, keep_from=0, state=STATE)


DETECTORS = {dev: (STATE, [SavedSamples(T0, 0, SAMPLES)]) for dev in ("WR-1", "WR-2")}


def backlog(store: Store) -> None:
    """40 alarms and 40 readings waiting, a fault, the devices seen and two fall detectors' checkpoints."""
    for i in range(40):
        store.commit([Batch(items=[reading(f"BS-{i}", T0 + i), press(f"BT-{i}", T0 + i)])])
    store.commit(
        [
            Batch(
                faults=[(dev, fault, True) for dev, fault in FAULTS],
                devices=list(DEVICES.items()),
                detectors=[checkpoint("WR-1"), checkpoint("WR-2")],
            )
        ]
    )


def stored(path: Path) -> int:
    """A store's file as the gateway left it when it stopped (its backlog in it); its epoch."""
    store = Store(path, max_bytes=8 * MIB)
    backlog(store)
    store.close()
    return store.epoch


def damage(path: Path, table: str, pages: str) -> bytes:
    """The stored file's ``pages`` of ``table`` overwritten with garbage, in place: its b-tree pages (``"b-tree"``), or
    the overflow pages of its blobs (``"overflow"``: the first 4 bytes of such a page are the next one's number, so
    SQLite finds the damage reading the blob). The file's bytes, damaged."""
    types = ("internal", "leaf") if pages == "b-tree" else ("overflow",)
    db = sqlite3.connect(path)  # (the store closed, its write-ahead log is in the file: nothing is written)
    try:
        found = [
            n
            for (n, kind) in db.execute("SELECT pageno, pagetype FROM dbstat WHERE name = ?", (table,))
            if kind in types
        ]
    finally:
        db.close()
    assert found, f"no {pages} page of {table}"
    with path.open("r+b") as f:
        for n in found:
            f.seek((n - 1) * PAGE_SIZE)
            f.write(b"\x5a" * PAGE_SIZE)
    return path.read_bytes()


def state_read(
    store: Store,
) -> tuple[dict[str, str], set[tuple[str, str]], dict[str, tuple[bytes, list[SavedSamples]]]]:
    """What the gateway reads of the store at start, in its order (``gateway/service.py``)."""
    return store.devices(), store.active_faults(), store.detector_states()


@pytest.mark.parametrize(
    ("table", "pages"),
    [
        ("faults", "b-tree"),
        ("devices", "b-tree"),
        ("fall_state", "overflow"),
        ("fall_samples", "overflow"),
        ("fall_state", "b-tree"),  # found at open before too, but nothing of the file was read then
    ],
)
def test_a_file_damaged_in_its_state_starts_in_memory_with_what_can_be_read_and_leaves_the_file_as_it_is(
    tmp_path: Path, table: str, pages: str
) -> None:
    path = tmp_path / "s.db"
    epoch = stored(path)
    damaged = damage(path, table, pages)
    said: list[str] = []
    store = opened(path, said)  # before, on disk; the first reader to meet the damage raised sqlite3.DatabaseError
    try:
        assert in_memory(store) and store.epoch > epoch, "at start, afresh, under an epoch of its own"
        devices, faults, detectors = state_read(store)  # what can still be read of the file; the rest, nothing
        assert devices == ({} if table == "devices" else DEVICES)
        assert faults == (set() if table == "faults" else FAULTS)
        assert detectors == ({} if table.startswith("fall_") else DETECTORS)
        why = store.memory_why or ""
        assert "found corrupt at start" in why and "malformed" in why and "left in place" in why, why
        assert "going on in memory" in said[-1] and "afresh" in said[-1] and why in said[-1], said

        alarm = press("BT-99", T0 + 99)
        (taken,) = store.commit([Batch(items=[alarm], faults=[("BS-2", "offline", True)])])
        assert taken.accepted == [alarm]
        alarms = sent(store, Lane.ALARM)  # the uplink sends it
        assert len(alarms) == 1 and b"BT-99" in alarms[0] and b'"epoch":%d' % store.epoch in alarms[0]
        for _ in range(3):
            probe(store)
            assert in_memory(store), "the same file: not opened again, not written to"
        assert path.read_bytes() == damaged and files(tmp_path) == ["s.db"]

        path.rename(tmp_path / "s.db.broken")  # what the operator does (the gateway never does it)
        probe(store)
        assert not in_memory(store) and store.memory_why is None and said[-1].startswith("store: back on disk")
        assert store.devices() == devices and store.active_faults() == faults | {("BS-2", "offline")}
        assert store.detector_states() == detectors  # what was read of the file goes on, on the new one
    finally:
        store.close()
    assert (tmp_path / "s.db.broken").read_bytes() == damaged


@pytest.mark.parametrize(
    ("table", "reader"), [("faults", "active_faults"), ("devices", "devices"), ("fall_samples", "detector_states")]
)
def test_a_state_table_found_corrupt_by_its_reader_while_running_puts_the_store_in_memory_at_once(
    tmp_path: Path, table: str, reader: str
) -> None:
    """The damage comes after the file was opened (a card going bad under the store): the reader that meets it takes
    the store to memory at once, as a commit meeting it does, and reads there (before: sqlite3.DatabaseError)."""
    path = tmp_path / "s.db"
    said: list[str] = []
    store = opened(path, said)
    try:
        backlog(store)
        epoch = store.epoch
        damaged = damage_under(store, tables=(table,))

        assert not getattr(store, reader)()  # the damaged table: memory's own, empty
        assert in_memory(store) and store.epoch > epoch
        why = store.memory_why or ""
        assert "found corrupt while the store runs" in why and "left in place" in why, why
        devices, faults, detectors = state_read(store)  # the other tables, as read from the file
        assert devices == ({} if table == "devices" else DEVICES)
        assert faults == (set() if table == "faults" else FAULTS)
        assert detectors == ({} if table.startswith("fall_") else DETECTORS)
        store.commit([Batch(items=[press("BT-99", T0 + 99)])])
        alarms = sent(store, Lane.ALARM)
        assert len(alarms) == 1 and b"BT-99" in alarms[0]
        assert path.read_bytes() == damaged and files(tmp_path) == ["s.db"]
    finally:
        store.close()
    assert path.read_bytes() == damaged


def test_a_store_stopping_in_memory_for_a_corrupt_file_says_so_not_that_the_disk_fails(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    damaged = b"a file that is not a database, put here by hand or by a broken disk\n" * 200
    path.write_bytes(damaged)
    said: list[str] = []
    store = opened(path, said)
    store.commit([Batch(items=[press("BT-99", T0 + 99), reading("BS-99", T0 + 99)])])
    store.close()  # before: "store: stopping in memory, the disk still failing: ..."
    assert said[-1].startswith("store: stopping in memory, its file found corrupt"), said[-1]
    assert "left as it is" in said[-1] and "1 alarm(s) and 1 telemetry message(s)" in said[-1], said[-1]
    assert "still failing" not in said[-1], said[-1]
    assert path.read_bytes() == damaged


async def _start_and_stop(gateway: service.Gateway) -> None:
    """The gateway's service started (no source, its uplink unreachable), ready, then stopped."""
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(gateway.run(stop, on_ready=ready.set))
    readied = asyncio.create_task(ready.wait())
    await asyncio.wait({running, readied}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    readied.cancel()
    if running.done():
        running.result()  # why it did not start (before: sqlite3.DatabaseError, reading the faults or detectors)
    assert ready.is_set(), "the gateway did not start in 30 s"
    stop.set()
    await running


@pytest.mark.parametrize(("table", "pages"), [("faults", "b-tree"), ("fall_samples", "overflow")])
def test_a_gateway_whose_store_is_damaged_in_its_state_starts_in_memory_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, table: str, pages: str
) -> None:
    path = tmp_path / "store.db"
    stored(path)
    damaged = damage(path, table, pages)
    document = {
        "institution": "524205024154895658",
        "gateway": "GW-0001",
        "uplink": {"host": "127.0.0.1", "port": free_port(), "ca_file": certifi.where(), "password": "x"},
        "storage": {"path": str(path)},
        "devices": {"auto_discover": True},  # the devices it has seen: those in the store
        "local": {"enabled": False},
        "fall": {"enabled": False},
    }
    config = gateway_config.parse(document, path=tmp_path / "gw.toml")
    with caplog.at_level(logging.INFO):
        asyncio.run(_start_and_stop(service.Gateway(config, config_path=tmp_path / "gw.toml")))
    logged = [r.getMessage() for r in caplog.records]
    starting = [t for t in logged if t.startswith("gateway: starting with the store in memory")]
    assert len(starting) == 1 and "found corrupt at start" in starting[0] and "left in place" in starting[0], logged
    running = [t for t in logged if " running: epoch " in t]
    assert len(running) == 1 and f"{len(DEVICES)} device(s)" in running[0], logged  # read of the file
    assert any(t.startswith("store: stopping in memory, its file found corrupt") for t in logged), logged
    assert path.read_bytes() == damaged and files(tmp_path) == ["store.db"]
