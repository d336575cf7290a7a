"""A wearable's fall detector, in memory and in the store, is forgotten once the wearable has been silent long
enough (in data time and in the gateway's running time) that its state can no longer matter, and not before."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
from tests.gateway.support import free_port, pipeline_over
from tests.gateway.test_store import fall_state_bytes

from eldercare.devices import messages as m
from eldercare.gateway import config as gateway_config
from eldercare.gateway import service
from eldercare.gateway.config import GatewayConfig
from eldercare.gateway.fall import model
from eldercare.gateway.pipeline import Delivery, FallService
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Store
from eldercare.gateway.worker import StoreWorker

T0 = 1_763_775_000_000
MIB = 1024 * 1024
HOUR = 3600.0
STILL = [(0, 0, 256)] * 25  # 0.5 s of a wearable lying still, 1 g


@dataclass(slots=True)
class Clock:
    """The gateway's running time (``time.monotonic``), moved on by the test."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Gateway:
    """The gateway's pipeline and store, a chunk committed at a time as a source would hand it over."""

    def __init__(self, path: Path, shipped: model.FallModel, clock: Clock) -> None:
        self.store = Store(path, max_bytes=8 * MIB)
        saved = self.store.detector_states()
        self.falls = FallService(shipped, suppress_s=10, forget_after_s=HOUR, saved=saved, clock=clock)
        self.worker = StoreWorker(self.store)
        self.pipeline = pipeline_over(self.store, self.worker, Stats(), self.falls)

    def send(self, dev: str, ts: int, n: int = 1) -> None:
        """``n`` chunks of ``dev``'s stream from ``ts`` (ms), each stored with its detector's checkpoint."""
        for k in range(n):
            message = m.AccelSamples(dev=dev, ts=ts + k * 500, hz=50, xyz=STILL)
            batch, problems = self.pipeline.prepare(
                Delivery(source="lan", vendor="contract", payload=m.encode(message))
            )
            assert problems == []
            self.store.commit([batch])

    def streams(self) -> dict[str, set[int]]:
        """Per wearable with a stored detector, the streams its stored samples belong to."""
        return {dev: {r.stream for r in rows} for dev, (_, rows) in self.store.detector_states().items()}


def test_a_wearable_silent_for_the_horizon_is_forgotten_in_memory_and_in_the_store(
    shipped: model.FallModel, tmp_path: Path
) -> None:
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    gateway.send("WR-OLD", T0, 10)
    gateway.send("WR-NEW", T0, 10)
    with_both = gateway.store.data_bytes
    clock.now += HOUR / 2
    gateway.send("WR-NEW", T0 + 1_800_000)  # half an hour later: nobody is forgotten yet
    assert set(gateway.streams()) == {"WR-OLD", "WR-NEW"}
    assert gateway.falls.wearables == {"WR-OLD", "WR-NEW"}

    clock.now += HOUR / 2 + 60
    gateway.send("WR-NEW", T0 + 3_660_000)  # an hour on, in data and in running time: WR-OLD was replaced
    assert gateway.streams() == {"WR-NEW": {T0 + 3_660_000}}
    assert gateway.falls.wearables == {"WR-NEW"}
    assert gateway.store.data_bytes < with_both  # and its bytes are no longer counted
    counted = gateway.store.data_bytes
    gateway.store.close()
    again = Store(tmp_path / "store.db", max_bytes=8 * MIB)
    assert again.data_bytes == counted
    again.close()


def test_a_refused_commit_does_not_keep_a_forgotten_wearable_in_the_store(
    shipped: model.FallModel, tmp_path: Path
) -> None:
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    gateway.send("WR-OLD", T0, 4)
    clock.now += HOUR + 60
    message = m.AccelSamples(dev="WR-NEW", ts=T0 + 3_660_000, hz=50, xyz=STILL)
    batch, _ = gateway.pipeline.prepare(Delivery(source="lan", vendor="contract", payload=m.encode(message)))
    assert batch.forget == ["WR-OLD"]
    gateway.falls.refused(batch)  # what the pipeline does when the store refuses the commit
    assert set(gateway.streams()) == {"WR-OLD"}
    gateway.send("WR-NEW", T0 + 3_660_000)  # sent again
    assert set(gateway.streams()) == {"WR-NEW"}


def test_after_a_restart_a_detector_waits_for_its_backlog_even_when_others_are_far_ahead(
    shipped: model.FallModel, tmp_path: Path
) -> None:
    """The gateway was down for two days; an HTTP wearable sends only what is new, while the home broker
    sends the other wearable's backlog, which continues its stored stream, a few minutes later."""
    path = tmp_path / "store.db"
    gateway = Gateway(path, shipped, Clock())
    gateway.send("WR-HTTP", T0, 4)
    gateway.send("WR-MQTT", T0, 4)
    gateway.store.close()
    clock = Clock(now=50.0)  # another process: another monotonic clock
    gateway = Gateway(path, shipped, clock)
    assert gateway.falls.restored == 2
    gateway.send("WR-HTTP", T0 + 2 * 86_400_000)
    clock.now += 600
    gateway.send("WR-HTTP", T0 + 2 * 86_400_000 + 600_000)
    gateway.send("WR-MQTT", T0 + 2000)  # the backlog: it continues the stream stored before the outage
    assert gateway.streams()["WR-MQTT"] == {T0}


def test_no_detector_is_forgotten_while_no_wearable_sends_anything(shipped: model.FallModel, tmp_path: Path) -> None:
    """A home broker down for two days while the gateway runs: the backlog that comes then continues the streams."""
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    gateway.send("WR-1", T0, 4)
    gateway.send("WR-2", T0, 4)
    clock.now += 2 * 86_400
    gateway.send("WR-1", T0 + 2000)
    gateway.send("WR-2", T0 + 2000)
    assert gateway.streams() == {"WR-1": {T0}, "WR-2": {T0}}


def test_a_wearable_with_its_clock_far_ahead_does_not_reset_the_others(
    shipped: model.FallModel, tmp_path: Path
) -> None:
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    gateway.send("WR-1", T0, 4)
    gateway.send("WR-2100", T0 + 10 * 365 * 86_400_000)
    for k in range(1, 4):  # WR-1 keeps sending, minutes apart in running time
        clock.now += 120
        gateway.send("WR-1", T0 + 2000 * k, 4)
        gateway.send("WR-2100", T0 + 10 * 365 * 86_400_000 + 2000 * k)
    assert gateway.streams()["WR-1"] == {T0}
    assert gateway.falls.wearables == {"WR-1", "WR-2100"}


def test_a_stored_state_that_cannot_be_restored_is_deleted(shipped: model.FallModel, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    gateway = Gateway(path, shipped, Clock())
    gateway.send("WR-GONE", T0, 4)
    (state,) = gateway.store._db.execute("SELECT state FROM fall_state").fetchone()
    other_window = state.replace(b'"post": 60', b'"post": 50')  # a model with another window
    gateway.store._db.execute("UPDATE fall_state SET state = ?", (other_window,))
    gateway.store.close()
    gateway = Gateway(path, shipped, Clock())  # the state is of no use
    assert gateway.falls.restored == 0
    gateway.send("WR-1", T0)
    assert set(gateway.streams()) == {"WR-1"}


async def _forget_on_its_own(gateway: Gateway) -> None:
    """What the gateway does once a second, with the store worker running: no chunk comes meanwhile."""
    task = asyncio.create_task(gateway.worker.run())
    future = gateway.pipeline.forget_detectors()
    assert future is not None
    await future
    gateway.worker.stop()
    await task


def test_a_wearable_forgotten_while_no_chunk_comes_has_its_rows_deleted_without_one(
    shipped: model.FallModel, tmp_path: Path
) -> None:
    """WR-NEW sent two hours in a burst (its backlog), then nothing more came from any wearable: WR-OLD is due to
    be forgotten an hour later, and its rows go then, not at some next chunk that may never come."""
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    gateway.send("WR-OLD", T0, 4)
    gateway.send("WR-NEW", T0 + 2 * 3_600_000, 4)
    assert set(gateway.streams()) == {"WR-OLD", "WR-NEW"}
    clock.now += HOUR + 60
    asyncio.run(_forget_on_its_own(gateway))
    assert set(gateway.streams()) == {"WR-NEW"}
    assert gateway.falls.wearables == {"WR-NEW"}
    assert gateway.store.data_bytes == fall_state_bytes(gateway.store.path)
    gateway.store.close()


def _stored_detectors(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {str(dev) for (dev,) in db.execute("SELECT dev FROM fall_state UNION SELECT dev FROM fall_samples")}


async def _gateway_starts(config: GatewayConfig, path: Path, expected: set[str]) -> set[str]:
    """The gateway process's service, started and left alone (no source, its uplink unreachable): the wearables
    with stored detector state, once it is ``expected`` or after 5 s."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        service.Gateway(config, config_path=path.parent / "gw.toml").run(stop, on_ready=ready.set)
    )
    await asyncio.wait_for(ready.wait(), 30)
    deadline = time.monotonic() + 5
    while (stored := _stored_detectors(path)) != expected and time.monotonic() < deadline:  # noqa: ASYNC110 - a file
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return stored


@pytest.mark.parametrize("fall_enabled", [True, False])
def test_at_start_stored_detectors_that_will_not_be_resumed_are_deleted(
    shipped: model.FallModel, tmp_path: Path, fall_enabled: bool
) -> None:
    """WR-GONE was taken out of the configuration, WR-OLDMODEL's state is of another detector window, and (or)
    fall detection was switched off: nothing will resume those detectors, so their rows go at start, before any
    chunk comes (before, they waited for the next chunk of a wearable, and with detection off, forever, taking
    room from alarms)."""
    path = tmp_path / "store.db"
    gateway = Gateway(path, shipped, Clock())
    for dev in ("WR-KEPT", "WR-GONE", "WR-OLDMODEL"):
        gateway.send(dev, T0, 4)
    (state,) = gateway.store._db.execute("SELECT state FROM fall_state WHERE dev = 'WR-OLDMODEL'").fetchone()
    other_window = state.replace(b'"post": 60', b'"post": 50')
    gateway.store._db.execute("UPDATE fall_state SET state = ? WHERE dev = 'WR-OLDMODEL'", (other_window,))
    gateway.store.close()
    document = {
        "institution": "524205024154895658",
        "gateway": "GW-0001",
        "uplink": {"host": "127.0.0.1", "port": free_port(), "ca_file": certifi.where(), "password": "x"},
        "storage": {"path": str(path)},
        "devices": {"known": [{"code": c, "class": "wearable"} for c in ("WR-KEPT", "WR-OLDMODEL")]},
        "local": {"enabled": False},
        "fall": {"enabled": fall_enabled},
    }
    config = gateway_config.parse(document, path=tmp_path / "gw.toml")
    expected = {"WR-KEPT"} if fall_enabled else set()
    assert asyncio.run(_gateway_starts(config, path, expected)) == expected
    with sqlite3.connect(path) as db:  # and no row is left behind
        assert db.execute("SELECT count(*) FROM fall_samples WHERE dev <> 'WR-KEPT'").fetchone() == (0,)
