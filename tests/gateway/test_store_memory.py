"""A gateway whose disk fails for good goes on in memory: it reads on behind the first message its disk refused,
shows and forwards the alarms, and goes back to the disk, with nothing left behind, once the disk takes writes
again (see :mod:`eldercare.gateway.store`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.support import (
    HomeBroker,
    MqttDevices,
    disk_fails,
    fleet,
    now_ms,
    pipeline_over,
    register_site,
    stored_events,
    wait_for,
    write_config,
)
from tests.gateway.test_store_trouble import gateway_in_process, home_source, shown, until
from tests.platform_procs import Proc

from eldercare.devices import messages as m
from eldercare.gateway import store as store_module
from eldercare.gateway.errors import StoreError
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, Item, Lane, Store, StoreFullError
from eldercare.gateway.worker import StoreWorker
from eldercare.platform.stack.model import StackInfo

MIB = 1024 * 1024
T0 = 1_763_775_000_000


def press(dev: str, ts: int) -> Item:
    message = m.Button(dev=dev, ts=ts, action=m.ButtonAction.PRESS)
    return Item(Lane.ALARM, m.encode(message), message)


def reading(dev: str, ts: int) -> Item:
    message = m.BedSample(dev=dev, ts=ts, presence=True)
    return Item(Lane.TELEMETRY, m.encode(message), message)


def sent(store: Store, lane: Lane) -> list[bytes]:
    """Cut every message of ``lane`` into frames and acknowledge them: the frames' bodies."""
    out = []
    while frame := store.cut_frame(lane, max_msgs=100, max_bytes=64 * 1024, sent=0):
        store.commit([], acked=[frame.seq])
        out.append(frame.body)
    return out


def in_memory(store: Store) -> bool:
    return store.in_memory


def failing_for(store: Store, seconds: float) -> None:
    """Let the disk's failure last ``seconds`` (the clock of the first failure set back)."""
    assert store._failing_since is not None
    store._failing_since -= seconds
    store._last_failure = time.monotonic()


def test_a_disk_failing_for_good_puts_the_store_in_memory_with_all_it_held_and_back_on_disk_after(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB, memory_after_s=10, say=said.append)
    store.commit([Batch(items=[press("BT-1", T0), reading("BS-1", T0)])])
    in_flight = store.cut_frame(Lane.ALARM, max_msgs=10, max_bytes=64 * 1024, sent=1)  # sent, not yet acked
    assert in_flight is not None
    store.commit([Batch(items=[press("BT-2", T0 + 1)])])
    epoch = store.epoch

    disk_fails(store, failing=True)
    with pytest.raises(StoreError):  # a failure that has not lasted: refused, the device sends it again
        store.commit([Batch(items=[press("BT-3", T0 + 2)])])
    assert not in_memory(store)
    failing_for(store, 11)
    store.commit([Batch(items=[press("BT-3", T0 + 2)])])  # it has lasted: taken, in memory
    assert in_memory(store) and store.memory_since is not None
    assert "going on in memory" in said[-1] and "with all the disk held" in said[-1], said
    # The same store goes on, what was sent before is not sent under a new name, but its new frames under an epoch
    # of its own: the disk, which cannot learn the numbers they take, would give them again after a power cut.
    assert store.epoch != epoch
    assert store.unacked() == [in_flight]
    assert store.depth().alarm == 3 and store.depth().telemetry == 1
    frame = store.cut_frame(Lane.ALARM, max_msgs=10, max_bytes=64 * 1024, sent=2)
    assert frame is not None and frame.seq == in_flight.seq + 1 and b"BT-2" in frame.body and b"BT-3" in frame.body
    assert frame.body.startswith(b'{"v":1,"epoch":%d,"seq":0,' % store.epoch)
    store.commit([Batch(items=[press("BT-4", T0 + 3)])], acked=[in_flight.seq])

    store.commit([Batch(items=[reading("BS-1", T0 + 4)])])
    assert in_memory(store)  # the disk is tried again only every DISK_PROBE_S
    store._next_probe = 0
    store.commit([Batch(items=[reading("BS-1", T0 + 5)])])
    assert in_memory(store), "the disk still fails: still in memory"
    disk_fails(store, failing=False)
    store._next_probe = 0
    store.commit([Batch(items=[reading("BS-1", T0 + 6)])])
    assert not in_memory(store) and said[-1].startswith("store: back on disk"), said
    store.close()

    again = Store(tmp_path / "s.db", max_bytes=8 * MIB)  # what the disk holds now: all that was not acked
    try:
        assert again.epoch == store.epoch != epoch
        assert [f.seq for f in again.unacked()] == [frame.seq]
        assert again.depth() == store_module.Depth(alarm=3, telemetry=4)  # BT-2 and BT-3 in the frame, BT-4
        alarms = sent(again, Lane.ALARM)
        assert len(alarms) == 1 and b"BT-4" in alarms[0]
    finally:
        again.close()


def test_a_disk_too_big_to_copy_is_left_for_a_store_afresh_which_gives_it_back_once_it_has_sent_all(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB, memory_after_s=1, memory_bytes=1 * MIB, say=said.append)
    padding = [reading(f"BS-{i}", T0 + i) for i in range(6000)]  # the file outgrows the memory's bound
    store.commit([Batch(items=[press("BT-1", T0), *padding], faults=[("BS-9", "offline", True)])])
    assert store.disk_bytes() > 1 * MIB
    epoch = store.epoch

    disk_fails(store, failing=True)
    with pytest.raises(StoreError):
        store.commit([Batch(items=[press("BT-2", T0 + 1)])])
    failing_for(store, 2)
    store.commit([Batch(items=[press("BT-2", T0 + 1)], faults=[("BS-9", "offline", False)])])
    assert in_memory(store) and store.epoch > epoch, "afresh, under an epoch of its own"
    assert "afresh" in said[-1], said
    assert store.depth() == store_module.Depth(alarm=1, telemetry=0)  # what waits on the disk is not here

    disk_fails(store, failing=False)
    store._next_probe = 0
    store.commit([Batch(items=[press("BT-3", T0 + 2)])])
    assert in_memory(store), "not back while it holds messages the disk does not have"
    alarms = sent(store, Lane.ALARM)
    assert (
        len(alarms) == 1 and b"BT-2" in alarms[0] and b"BT-3" in alarms[0] and b'"epoch":%d' % store.epoch in alarms[0]
    )
    store._next_probe = 0
    store.commit([])
    assert not in_memory(store) and store.epoch == epoch
    assert store.active_faults() == set()  # the fault cleared while in memory is cleared on the disk too
    assert store.depth() == store_module.Depth(alarm=1, telemetry=6000)  # the disk's own, sent now
    store.close()


def test_a_store_that_may_not_go_in_memory_refuses_as_long_as_its_disk_fails(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB)
    try:
        disk_fails(store, failing=True)
        for _ in range(2):
            with pytest.raises(StoreError):
                store.commit([Batch(items=[press("BT-1", T0)])])
            store._failing_since = (store._failing_since or time.monotonic()) - 3600
        assert not in_memory(store)
    finally:
        store.close()


def test_a_gateway_stopping_in_memory_writes_it_back_to_a_disk_that_works_again(tmp_path: Path) -> None:
    said: list[str] = []
    store = Store(tmp_path / "s.db", max_bytes=8 * MIB, memory_after_s=1, say=said.append)
    disk_fails(store, failing=True)
    with pytest.raises(StoreError):
        store.commit([Batch(items=[press("BT-1", T0)])])
    failing_for(store, 2)
    store.commit([Batch(items=[press("BT-1", T0)])])
    assert in_memory(store)
    disk_fails(store, failing=False)
    store.close()  # the probe's time has not come: stopping tries anyway
    again = Store(tmp_path / "s.db", max_bytes=8 * MIB)
    try:
        assert again.depth().alarm == 1
    finally:
        again.close()


def test_the_home_broker_is_read_on_behind_what_a_failed_disk_refused(tmp_path: Path, home: HomeBroker) -> None:
    """Fifty readings, then a press, sent while the disk fails: before, the gateway had the first twenty again and
    again (the broker's window of messages not yet acknowledged) and never saw the press; once the failure has
    lasted ``memory_after_s`` it reads on in memory, and the press is shown and stored."""

    async def main() -> tuple[list[str], Store]:
        store = Store(tmp_path / "s.db", max_bytes=4 * MIB, memory_after_s=2)
        worker = StoreWorker(store)
        pipeline = pipeline_over(store, worker, Stats(), None)
        task = asyncio.create_task(worker.run())
        source = home_source(home, pipeline)
        reading_task = asyncio.create_task(source.run())
        devices = None
        try:
            await until(lambda: source.connected, 10)
            await worker.call(partial(disk_fails, store, failing=True))
            devices = await asyncio.to_thread(MqttDevices, home.port)
            t = now_ms()
            for i in range(50):
                devices.send("lianke", m.BedSample(dev=f"BS-{i % 10}", ts=t + i, presence=True))
            devices.send("lianke", m.Button(dev="BT-7", ts=t + 50, action=m.ButtonAction.PRESS))
            await until(lambda: store.depth().alarm == 1, 20)
            assert in_memory(store)
            await until(lambda: store.depth().telemetry == 50, 10)
            return [dev for dev, _ in shown(pipeline)], store
        finally:
            if devices is not None:
                await asyncio.to_thread(devices.close)
            reading_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading_task
            worker.stop()
            await task
            store.close()

    on_page, _ = asyncio.run(main())
    assert on_page == ["BT-7"]


@contextlib.contextmanager
def small_file_system(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (the tests run as root, as on these machines)."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=False)
    assert done.returncode == 0, "mounting a tmpfs needs root: the test cannot run otherwise"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_file_system_full_of_other_files_is_a_failing_disk_not_a_store_full_of_alarms(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs", "2m") as fs:
        said: list[str] = []
        store = Store(fs / "s.db", max_bytes=64 * MIB, memory_after_s=1, say=said.append)
        try:
            with (fs / "logs").open("wb") as other, contextlib.suppress(OSError):  # another program's files
                while True:
                    other.write(b"x" * 65536)
                    other.flush()
                    os.fsync(other.fileno())
            refusals = 0
            for n in range(20_000):
                try:
                    store.commit([Batch(items=[press(f"BT-{n % 50}", T0 + n)])])
                except StoreFullError:
                    refusals += 1
                    if store._failing_since is not None:
                        failing_for(store, 2)
                if in_memory(store):
                    break
            assert in_memory(store), f"{refusals} refusals, never in memory: {said}"
            assert "going on in memory" in said[-1]
        finally:
            store.close()


def test_a_whole_gateway_on_a_failed_disk_sends_its_alarms_from_memory_and_goes_back_to_its_disk(
    stack: StackInfo, platform: Proc, home: HomeBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "DISK_PROBE_S", 1.0)
    devices = fleet("mem", {"button": 2})
    site = register_site(stack, seed=312, devices=devices)
    setup = write_config(
        tmp_path / "gw", site=site, stack=stack, home_port=home.port, http=False, storage={"memory_after_s": 2}
    )
    first, second = sorted(devices)
    local = f"http://127.0.0.1:{setup.local_port}"

    def status() -> dict[str, Any]:
        document: dict[str, Any] = httpx.get(f"{local}/api/status", timeout=5).json()
        return document

    with gateway_in_process(setup.config, monkeypatch) as gateway:
        wait_for(lambda: status()["sources"]["home"] and status()["uplink"]["connected"], 30, "source and uplink")
        sensors = MqttDevices(home.port)
        try:
            gateway.on_store(partial(disk_fails, gateway.worker.store, failing=True))
            a = m.Button(dev=first, ts=now_ms(), action=m.ButtonAction.PRESS)
            sensors.send("lianke", a).wait_for_publish(5)
            wait_for(lambda: status()["store"]["in_memory"], 15, "the store in memory")
            b = m.Button(dev=second, ts=now_ms(), action=m.ButtonAction.PRESS)
            sensors.send("lianke", b).wait_for_publish(5)
            wanted = [(a.dev, a.ts, "button"), (b.dev, b.ts, "button")]
            wait_for(
                lambda: [(d, t, k) for d, t, k, _ in stored_events(stack.database_url, site)] == wanted,
                30,
                "both presses on the platform while the disk fails",
            )
            assert "going on in memory" in status()["stats"]["last_error"]
            time.sleep(2.5)
            assert status()["store"]["in_memory"], "the disk still fails"

            gateway.on_store(partial(disk_fails, gateway.worker.store, failing=False))
            c = m.Button(dev=first, ts=now_ms(), action=m.ButtonAction.CANCEL)
            sensors.send("lianke", c).wait_for_publish(5)
            wait_for(lambda: not status()["store"]["in_memory"], 15, "the store back on its disk")
            wait_for(lambda: len(stored_events(stack.database_url, site)) == 3, 30, "the cancel on the platform")
        finally:
            sensors.close()
    assert gateway.ended == [None]
