"""What the gateway made in a commit its full store refused (a device fault, a fall) is not lost, and not stored
out of order: no device sends it again, and the supervisor does not make it again (its state has already moved).
It is not lost either when the gateway is killed while it waits: the carried file holds it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from tests.gateway.support import fill_with_alarms, pipeline_over, send_alarms, still_carrying

from eldercare.devices import messages as m
from eldercare.gateway import pipeline as pipeline_module
from eldercare.gateway.carried import CarriedFile, path_for
from eldercare.gateway.config import DeviceClass, SupervisionConfig
from eldercare.gateway.pipeline import Delivery, Pipeline
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, Store, Stored, StoreFullError
from eldercare.gateway.supervision import Supervisor
from eldercare.gateway.worker import StoreWorker

T0 = 1_763_775_000_000
MIB = 1024 * 1024
BED = "BS-0001"
BUTTON = "BT-0001"
CONFIG = SupervisionConfig.model_validate(
    {
        "margin_s": 5,
        "classes": {"bed_sensor": {"heartbeat_s": 10}, "button": {"heartbeat_s": 3600, "low_battery_pct": 20}},
    }
)


@dataclass
class Gateway:
    store: Store
    worker: StoreWorker
    supervisor: Supervisor
    pipeline: Pipeline
    stats: Stats

    def delivery(self, message: m.DeviceMessage) -> Delivery:
        return Delivery(source="lan", vendor="contract", payload=m.encode(message))

    async def outcome(self, future: asyncio.Future[Stored]) -> str:
        try:
            await future
        except StoreFullError:
            return "refused"
        return "stored"

    async def settle(self) -> None:
        """Let the carried retry run (the pipeline's timer) and its commit finish."""
        await asyncio.sleep(4 * pipeline_module.CARRIED_RETRY_S)
        await self.worker.call(lambda: None)
        await asyncio.sleep(0)

    def bed_goes_silent(self) -> list[m.DeviceFault]:
        """The supervisor ticks once a second for 30 s and the bed sensor sends nothing: it is offline."""
        return [fault for t in range(1, 31) for fault in self.supervisor.tick(float(t))]

    def faults(self) -> tuple[list[tuple[str, str, bool]], set[tuple[str, str]]]:
        """The fault messages queued for the platform (in order), and the faults the store holds raised."""
        with sqlite3.connect(self.store.path) as db:
            queued = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q ORDER BY id")]
            raised = {(str(d), str(f)) for d, f in db.execute("SELECT dev, fault FROM faults")}
        return [(q["dev"], q["fault"], q["active"]) for q in queued if q["t"] == "fault"], raised


async def with_gateway(
    path: Path, body: Callable[[Gateway], Awaitable[None]], *, carried_file: bool = False, killed: bool = False
) -> Gateway:
    """A gateway's store, supervisor and pipeline around ``body``; it stops as the service stops it (the carried
    offered a last time), or is ``killed`` (nothing more happens: the store worker just ends)."""
    store = Store(path, max_bytes=4 * MIB)
    store.commit([Batch(devices=[(BED, DeviceClass.BED_SENSOR.value), (BUTTON, DeviceClass.BUTTON.value)])])
    worker = StoreWorker(store)
    supervisor = Supervisor(
        config=CONFIG,
        devices={BED: DeviceClass.BED_SENSOR, BUTTON: DeviceClass.BUTTON},
        active=store.active_faults(),
        now=0.0,
        clock_ms=lambda: T0,
    )
    stats = Stats()
    on_disk = CarriedFile(path_for(path)) if carried_file else None
    pipeline = pipeline_over(store, worker, stats, None, supervisor=supervisor, carried_file=on_disk)
    gateway = Gateway(store, worker, supervisor, pipeline, stats)
    task = asyncio.create_task(worker.run())
    pipeline.resume_carried()
    try:
        await body(gateway)
    finally:
        if not killed:
            gateway.pipeline.close()
        worker.stop()
        await task
    return gateway


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "CARRIED_RETRY_S", 0.05)


def test_an_offline_fault_the_full_store_refused_is_stored_once_the_store_has_room(tmp_path: Path) -> None:
    """The supervisor's own fault comes from no device: refused, it is carried and offered again every retry."""
    seen: dict[str, object] = {}

    async def body(gw: Gateway) -> None:
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        raised = gw.bed_goes_silent()
        assert [(f.dev, f.fault, f.active) for f in raised] == [(BED, m.FaultKind.OFFLINE, True)]
        seen["first"] = await gw.outcome(gw.pipeline.submit_own(list(raised)))
        assert gw.supervisor.tick(31.0) == []  # the supervisor will not raise it again: it is raised
        await gw.settle()
        seen["while_full"] = await gw.worker.call(gw.faults)
        seen["carrying"] = await still_carrying(gw.pipeline)
        await gw.worker.call(partial(send_alarms, gw.store))
        await gw.settle()

    gw = asyncio.run(with_gateway(tmp_path / "store.db", body))
    assert seen["first"] == "refused"
    assert seen["while_full"] == ([], set()) and seen["carrying"]  # offered again, refused, still held
    assert gw.stats.refused > 1
    assert gw.faults() == ([(BED, "offline", True)], {(BED, "offline")})  # stored once, and held raised
    assert not gw.pipeline.carrying
    assert gw.stats.last_error is not None and "1 message(s) the gateway made carried" in gw.stats.last_error
    gw.store.close()


def test_a_low_battery_fault_of_a_refused_reading_goes_with_the_reading_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The button sends its reading again; the supervisor sees no change in it, so the fault it made the first
    time is the only one there is, and it goes with the reading, in the order it was made."""
    monkeypatch.setattr(pipeline_module, "CARRIED_RETRY_S", 60.0)  # the reading sent again must take it
    seen: dict[str, object] = {}
    low = m.Battery(dev=BUTTON, ts=T0, level=12)

    async def body(gw: Gateway) -> None:
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        future, problems = gw.pipeline.submit(gw.delivery(low))
        assert problems == []
        seen["first"] = await gw.outcome(future)
        await gw.worker.call(partial(send_alarms, gw.store))
        future, _ = gw.pipeline.submit(gw.delivery(low))
        seen["again"] = await gw.outcome(future)

    gw = asyncio.run(with_gateway(tmp_path / "store.db", body))
    assert (seen["first"], seen["again"]) == ("refused", "stored")
    assert gw.faults() == ([(BUTTON, "low_battery", True)], {(BUTTON, "low_battery")})
    with sqlite3.connect(gw.store.path) as db:
        (readings,) = db.execute("SELECT count(*) FROM telemetry_q").fetchone()
    assert readings == 1
    gw.store.close()


def test_a_carried_fault_the_device_has_moved_past_is_not_stored_after_the_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline fault is refused while the bed's next delivery, prepared before, clearing it, is stored (the
    store worker commits one by one after a refusal, and a small commit may fit where a larger did not). Stored
    after the clearing, the carried fault would leave the bed offline on the platform while it sends."""
    monkeypatch.setattr(pipeline_module, "CARRIED_RETRY_S", 60.0)  # offered when the gateway stops, after both
    seen: dict[str, object] = {}

    async def body(gw: Gateway) -> None:
        raised = gw.bed_goes_silent()
        batch, _ = gw.pipeline.prepare(gw.delivery(m.BedSample(dev=BED, ts=T0, presence=True)))  # clears it
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        seen["raised"] = await gw.outcome(gw.pipeline.submit_own(list(raised)))
        await gw.worker.call(partial(send_alarms, gw.store))
        seen["cleared"] = await gw.outcome(gw.pipeline.submit_batch(batch))

    gw = asyncio.run(with_gateway(tmp_path / "store.db", body))
    assert (seen["raised"], seen["cleared"]) == ("refused", "stored")
    assert gw.faults() == ([(BED, "offline", False)], set())  # the bed is not left offline
    assert not gw.pipeline.carrying
    gw.store.close()


def test_faults_carried_through_two_refusals_are_stored_in_the_order_they_were_made(tmp_path: Path) -> None:
    """Raised by the supervisor and cleared by the bed's next delivery, both refused: both go, raised first."""

    async def body(gw: Gateway) -> None:
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        assert await gw.outcome(gw.pipeline.submit_own(list(gw.bed_goes_silent()))) == "refused"
        future, _ = gw.pipeline.submit(gw.delivery(m.BedSample(dev=BED, ts=T0, presence=True)))
        assert await gw.outcome(future) == "refused"
        await gw.worker.call(partial(send_alarms, gw.store))
        await gw.settle()

    gw = asyncio.run(with_gateway(tmp_path / "store.db", body))
    assert gw.faults() == ([(BED, "offline", True), (BED, "offline", False)], set())
    gw.store.close()


def test_a_fall_carried_when_the_gateway_is_killed_is_stored_after_the_restart(tmp_path: Path) -> None:
    """The full store refuses a fall and the gateway is killed (or loses power) while it waits: the fall is in
    the carried file, and the restarted gateway offers it first, until the store, once the uplink has sent its
    alarms, takes it. Then the file is gone."""
    path, on_disk = tmp_path / "store.db", CarriedFile(path_for(tmp_path / "store.db"))
    fall = m.Fall(dev=BUTTON, ts=T0, source="radar", confidence=0.9)
    seen: dict[str, object] = {}

    async def killed(gw: Gateway) -> None:
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        seen["first"] = await gw.outcome(gw.pipeline.submit_own([fall]))
        seen["file"] = on_disk.load()

    async def restarted(gw: Gateway) -> None:
        seen["carrying"] = await still_carrying(gw.pipeline)  # the store is still full: refused, and held
        seen["file again"] = on_disk.load()
        await gw.worker.call(partial(send_alarms, gw.store))
        await gw.settle()

    asyncio.run(with_gateway(path, killed, carried_file=True, killed=True)).store.close()
    assert seen["first"] == "refused" and seen["file"] == [fall]
    gw = asyncio.run(with_gateway(path, restarted, carried_file=True))
    assert seen["carrying"] and seen["file again"] == [fall]
    with sqlite3.connect(path) as db:
        falls = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q") if b'"fall"' in body]
    assert [(f["dev"], f["ts"], f["source"]) for f in falls] == [(BUTTON, T0, "radar")]  # stored once
    assert not gw.pipeline.carrying and not on_disk.path.exists()
    gw.store.close()


def test_a_fault_carried_when_the_gateway_is_killed_is_made_again_by_the_restarted_supervisor(
    tmp_path: Path,
) -> None:
    """An offline fault refused, then the gateway killed: at the restart the supervisor starts from the faults
    the store holds (not this one), so the carried fault no longer matches its state and is dropped, and the
    supervisor raises it again when the bed stays silent. Stored once, and the file is gone."""
    path, on_disk = tmp_path / "store.db", CarriedFile(path_for(tmp_path / "store.db"))

    async def killed(gw: Gateway) -> None:
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        assert await gw.outcome(gw.pipeline.submit_own(list(gw.bed_goes_silent()))) == "refused"

    async def restarted(gw: Gateway) -> None:
        assert not on_disk.path.exists()  # dropped as stale when taken back, and the file with it
        await gw.worker.call(partial(send_alarms, gw.store))
        assert await gw.outcome(gw.pipeline.submit_own(list(gw.bed_goes_silent()))) == "stored"

    asyncio.run(with_gateway(path, killed, carried_file=True, killed=True)).store.close()
    carried = on_disk.load()
    assert [(f.dev, f.fault, f.active) for f in carried if isinstance(f, m.DeviceFault)] == [
        (BED, m.FaultKind.OFFLINE, True)
    ] and len(carried) == 1
    gw = asyncio.run(with_gateway(path, restarted, carried_file=True))
    assert gw.faults() == ([(BED, "offline", True)], {(BED, "offline")})
    gw.store.close()


def test_the_carried_file_skips_what_does_not_decode_and_goes_when_nothing_is_carried(tmp_path: Path) -> None:
    on_disk = CarriedFile(tmp_path / "store.db.carried")
    assert on_disk.load() == []
    fall = m.Fall(dev=BUTTON, ts=T0, source="radar")
    on_disk.path.write_bytes(b"not json\n" + m.encode(fall) + b"\n" + b'{"t":"fall"}\n')
    assert on_disk.load() == [fall]
    on_disk.save([fall, fall])
    assert on_disk.load() == [fall, fall]
    on_disk.save([])
    assert not on_disk.path.exists()


def test_a_carried_fall_taken_back_again_after_it_was_stored_is_stored_once(tmp_path: Path) -> None:
    """The gateway killed after the store committed a carried fall but before the carried file was rewritten: at
    the next start the file still holds the fall, and it is offered again. The store knows its body (it keeps the
    keys of what it took), so the platform is sent it once."""
    path, on_disk = tmp_path / "store.db", CarriedFile(path_for(tmp_path / "store.db"))
    fall = m.Fall(dev=BUTTON, ts=T0, source="radar", confidence=0.9)

    async def refused(gw: Gateway) -> None:
        await gw.worker.call(partial(fill_with_alarms, gw.store))
        assert await gw.outcome(gw.pipeline.submit_own([fall])) == "refused"

    async def stored(gw: Gateway) -> None:
        await gw.worker.call(partial(send_alarms, gw.store))
        await gw.settle()

    asyncio.run(with_gateway(path, refused, carried_file=True, killed=True)).store.close()
    left = on_disk.path.read_bytes()
    first = asyncio.run(with_gateway(path, stored, carried_file=True, killed=True))
    first.store.close()
    assert first.stats.repeats == 0 and not on_disk.path.exists()
    on_disk.path.write_bytes(left)  # as if killed between the store's commit and the file's rewrite

    async def again(gw: Gateway) -> None:
        await gw.settle()

    second = asyncio.run(with_gateway(path, again, carried_file=True))
    with sqlite3.connect(path) as db:
        falls = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q") if b'"fall"' in body]
    assert [(f["dev"], f["ts"]) for f in falls] == [(BUTTON, T0)]  # queued once (not yet sent by the uplink)
    assert second.stats.repeats == 1 and not on_disk.path.exists()
    second.store.close()
