"""A store that cannot be opened at start (its file system read-only or full, its folder gone, its file not a
database or damaged) does not stop the gateway: it starts in memory, afresh, says so, and goes back to its disk
once the disk works again. A corrupt file is left in place, as it is (see :mod:`eldercare.gateway.store`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.support import (
    HomeBroker,
    MqttDevices,
    fleet,
    now_ms,
    register_site,
    stored_events,
    wait_for,
    write_config,
)
from tests.gateway.test_end_to_end import StatusWatcher
from tests.gateway.test_store_memory import in_memory, press, reading, sent, small_file_system
from tests.gateway.test_store_trouble import gateway_in_process
from tests.platform_procs import Proc

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.gateway import config as gateway_config
from eldercare.gateway import store as store_module
from eldercare.gateway.errors import StoreError
from eldercare.gateway.service import Gateway
from eldercare.gateway.store import Batch, Depth, Lane, Store
from eldercare.platform.stack.model import StackInfo

MIB = 1024 * 1024
T0 = 1_763_775_000_000


def opened(path: Path, said: list[str]) -> Store:
    """The store as the gateway opens it (in memory after 10 s of a failing disk, up to 64 MiB)."""
    return Store(path, max_bytes=8 * MIB, memory_after_s=10, say=said.append)


def why(store: Store) -> str | None:
    return store.memory_why


def probe(store: Store, *batches: Batch) -> None:
    """A commit once the time to try the disk again has come."""
    store._next_probe = 0
    store.commit(list(batches))


def damage(path: Path) -> tuple[bytes, int]:
    """A store's file with 40 alarms and 40 readings waiting, then a page in the middle of it overwritten: SQLite
    reads its header and schema, and finds the damage reading the queues. The good file's bytes, and its epoch."""
    store = Store(path, max_bytes=8 * MIB)
    for i in range(40):
        store.commit([Batch(items=[reading(f"BS-{i}", T0 + i), press(f"BT-{i}", T0 + i)])])
    store.close()
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[4096 * 3 : 4096 * 4] = b"\x5a" * 4096
    path.write_bytes(bytes(damaged))
    return good, store.epoch


@contextlib.contextmanager
def read_only(fs: Path) -> Iterator[None]:
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    try:
        yield
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)


def test_a_file_that_is_not_a_database_is_left_in_place_and_the_store_runs_in_memory_until_it_is_moved_away(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    junk = b"a file that is not a database, put here by hand or by a broken disk\n" * 200
    path.write_bytes(junk)
    said: list[str] = []
    store = opened(path, said)  # before, StoreError: the gateway did not start
    try:
        assert in_memory(store) and store.memory_since is not None
        assert "left in place" in (why(store) or "")
        assert "going on in memory" in said[-1] and "afresh" in said[-1] and "not a database" in said[-1], said
        store.commit([Batch(items=[press("BT-1", T0)])])
        alarms = sent(store, Lane.ALARM)
        assert len(alarms) == 1 and b"BT-1" in alarms[0] and b'"epoch":%d' % store.epoch in alarms[0]

        probe(store)
        assert in_memory(store), "the same file: not opened again, not written to"
        assert path.read_bytes() == junk and sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]

        path.rename(tmp_path / "s.db.broken")  # what the operator does (the gateway never does it)
        probe(store, Batch(items=[press("BT-2", T0 + 1)]))
        assert not in_memory(store) and why(store) is None and said[-1].startswith("store: back on disk")
        assert store.depth().alarm == 1  # the memory's state went with it: the press waits on disk now
        assert (tmp_path / "s.db.broken").read_bytes() == junk
    finally:
        store.close()


def test_a_damaged_database_is_left_as_it_is_and_a_repaired_one_put_in_its_place_is_sent_under_its_epoch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    good, epoch = damage(path)
    damaged = path.read_bytes()
    said: list[str] = []
    store = opened(path, said)
    try:
        assert in_memory(store) and store.epoch > epoch, "afresh, under an epoch of its own"
        assert "malformed" in said[-1] and "left in place" in said[-1], said
        store.commit([Batch(items=[press("BT-99", T0 + 99)], faults=[("BS-9", "offline", True)])])
        assert len(sent(store, Lane.ALARM)) == 1
        for _ in range(3):
            probe(store)
            assert in_memory(store)
        assert path.read_bytes() == damaged, "never written to"

        path.write_bytes(good)  # recovered by hand (sqlite3 .recover), put back in place
        probe(store)
        assert not in_memory(store) and store.epoch == epoch
        assert store.depth() == Depth(alarm=40, telemetry=40)  # what waited in the file, sent now
        assert store.active_faults() == {("BS-9", "offline")}  # the state the memory had, written over the file's
        alarms = sent(store, Lane.ALARM)
        assert all(b'"epoch":%d' % epoch in a for a in alarms)
        assert sum(a.count(b'"dev":"BT-') for a in alarms) == 40
    finally:
        store.close()


def test_a_read_only_file_system_at_start_puts_the_store_in_memory_and_back_on_its_disk_once_writable(
    tmp_path: Path,
) -> None:
    with small_file_system(tmp_path / "fs", "16m") as fs:
        before = Store(fs / "s.db", max_bytes=8 * MIB)
        before.commit([Batch(items=[press("BT-1", T0)])])
        disk_epoch = before.epoch
        before.close()
        said: list[str] = []
        with read_only(fs):
            store = opened(fs / "s.db", said)
            try:
                assert in_memory(store) and store.epoch > disk_epoch, "afresh, under an epoch of its own"
                assert "cannot be opened at start" in said[-1], said
                store.commit([Batch(items=[press("BT-2", T0 + 1)])])
                assert store.depth() == Depth(alarm=1, telemetry=0)
                probe(store)
                assert in_memory(store)
            except BaseException:
                store.close()
                raise
        try:
            probe(store)
            assert in_memory(store), "not back while it holds a message the disk does not have"
            alarms = sent(store, Lane.ALARM)
            assert len(alarms) == 1 and b"BT-2" in alarms[0]
            probe(store)
            assert not in_memory(store) and store.epoch == disk_epoch
            assert store.depth() == Depth(alarm=1, telemetry=0)  # BT-1, which waited on the disk
            assert b"BT-1" in sent(store, Lane.ALARM)[0]
        finally:
            store.close()


def test_a_full_file_system_or_a_missing_folder_at_start_is_waited_out_in_memory(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs", "2m") as fs:
        with (fs / "logs").open("wb") as other, contextlib.suppress(OSError):  # another program's files
            while True:
                other.write(b"x" * 65536)
                other.flush()
                os.fsync(other.fileno())
        said: list[str] = []
        store = opened(fs / "s.db", said)
        try:
            assert in_memory(store) and "cannot be opened at start" in said[-1], said
            store.commit([Batch(items=[reading("BS-1", T0)])])
            sent(store, Lane.TELEMETRY)
            probe(store)
            assert in_memory(store)
            (fs / "logs").unlink()
            probe(store, Batch(items=[reading("BS-1", T0 + 1)]))
            assert not in_memory(store) and store.depth() == Depth(alarm=0, telemetry=1)
        finally:
            store.close()

    folder = tmp_path / "card"  # not mounted (yet)
    said = []
    store = opened(folder / "s.db", said)
    try:
        assert in_memory(store) and "unable to open" in said[-1], said
        folder.mkdir()
        probe(store, Batch(items=[press("BT-1", T0)]))
        assert not in_memory(store) and (folder / "s.db").is_file()
    finally:
        store.close()
    again = Store(folder / "s.db", max_bytes=8 * MIB)
    try:
        assert again.depth() == Depth(alarm=1, telemetry=0)
    finally:
        again.close()


def test_without_a_memory_bound_a_store_that_cannot_be_opened_still_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database" * 100)
    for store_args in ({}, {"memory_after_s": 10, "memory_bytes": 0}):
        with pytest.raises(StoreError, match="not a database"):
            Store(path, max_bytes=8 * MIB, **store_args)  # type: ignore[arg-type]
    assert path.read_bytes() == b"not a database" * 100


def test_a_gateway_whose_store_file_is_corrupt_starts_in_memory_says_so_and_sends_its_alarms(
    stack: StackInfo, platform: Proc, home: HomeBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "DISK_PROBE_S", 1.0)
    devices = fleet("sst", {"button": 1})
    site = register_site(stack, seed=313, devices=devices)
    (button,) = devices
    setup = write_config(tmp_path / "gw", site=site, stack=stack, home_port=home.port, http=False)
    junk = b"\x00\x01 not a database \xff" * 4096
    setup.store.write_bytes(junk)
    local = f"http://127.0.0.1:{setup.local_port}"
    watcher = StatusWatcher(stack, topics.uplink(site.institution, site.gateway, topics.Channel.STATUS))

    def status() -> dict[str, Any]:
        document: dict[str, Any] = httpx.get(f"{local}/api/status", timeout=5).json()
        return document

    try:
        with gateway_in_process(setup.config, monkeypatch) as gateway:  # before, it did not start
            wait_for(lambda: status()["sources"]["home"] and status()["uplink"]["connected"], 30, "source and uplink")
            store = status()["store"]
            assert store["in_memory"] and "left in place" in store["why"], store
            assert "going on in memory" in status()["stats"]["last_error"]
            _, beat = watcher.next(m.Heartbeat)
            assert beat.last_error is not None and "going on in memory" in beat.last_error, beat

            sensors = MqttDevices(home.port)
            try:
                a = m.Button(dev=button, ts=now_ms(), action=m.ButtonAction.PRESS)
                sensors.send("lianke", a).wait_for_publish(5)
                wait_for(lambda: len(stored_events(stack.database_url, site)) == 1, 30, "the press on the platform")
                time.sleep(1.5)
                assert status()["store"]["in_memory"] and setup.store.read_bytes() == junk

                setup.store.rename(setup.store.with_name("store.db.corrupt"))  # the operator moves it away
                b = m.Button(dev=button, ts=now_ms(), action=m.ButtonAction.CANCEL)
                sensors.send("lianke", b).wait_for_publish(5)
                wait_for(lambda: not status()["store"]["in_memory"], 15, "the store on a new file")
                wait_for(lambda: len(stored_events(stack.database_url, site)) == 2, 30, "the cancel on the platform")
            finally:
                sensors.close()
        assert gateway.ended == [None]
    finally:
        watcher.close()
    assert setup.store.with_name("store.db.corrupt").read_bytes() == junk


def test_a_gateway_told_never_to_keep_its_store_in_memory_refuses_to_start_and_says_why(
    stack: StackInfo, tmp_path: Path
) -> None:
    site = register_site(stack, seed=315, devices=fleet("ssr", {"button": 1}))
    setup = write_config(tmp_path / "gw", site=site, stack=stack, http=False, storage={"memory_bytes": 0})
    setup.store.write_bytes(b"not a database" * 100)
    gateway = Gateway(gateway_config.load(setup.config), config_path=setup.config)
    with pytest.raises(StoreError, match=r"not a database.*memory_bytes = 0"):
        asyncio.run(gateway.run(asyncio.Event()))
    assert setup.store.read_bytes() == b"not a database" * 100
