"""Fall detection goes on while the store is full, as it is after a long uplink outage: what the wearable sends
is taken (its detector's checkpoint has room where alarms no longer have), with or without the samples
forwarded, and the fall is stored as soon as alarms have room again."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.gateway.support import fill_with_alarms, pipeline_over, send_alarms, still_carrying
from tests.gateway.test_fall_restart import DEV, chunks, decided_in, fall_trial

from eldercare.devices import messages as m
from eldercare.gateway import pipeline as pipeline_module
from eldercare.gateway.config import HttpSource
from eldercare.gateway.fall import data, model
from eldercare.gateway.fall.detector import FallDetector
from eldercare.gateway.pipeline import FallService
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, Item, Lane, SavedSamples, Store
from eldercare.gateway.web import http_source_app
from eldercare.gateway.worker import StoreWorker

T0 = 1_763_775_000_000
MIB = 1024 * 1024


def fill_with_telemetry(store: Store) -> None:
    """Bed readings, a long outage's worth: until the oldest are dropped to make room for the newest (by
    hundreds, then one at a time, so that little room is left)."""
    n = 0
    for size in (200, 1):
        dropped = store.dropped
        while store.dropped == dropped:
            readings = [m.BedSample(dev=f"BS-{k}", ts=T0 + n + k, presence=True, hr=60.0, rr=15.0) for k in range(size)]
            store.commit([Batch(items=[Item(Lane.TELEMETRY, m.encode(r), r) for r in readings])])
            n += size


def falls_in(path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(path) as db:
        return [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q ORDER BY id") if b'"fall"' in body]


def resumed_at(shipped: model.FallModel, saved: dict[str, tuple[bytes, list[SavedSamples]]]) -> int | None:
    """Where the wearable's stored detector state resumes its stream (ms); None if it does not."""
    if DEV not in saved:
        return None
    state, rows = saved[DEV]
    samples = [(r.stream, r.first, np.frombuffer(r.samples, dtype="<f4").reshape(-1, 3)) for r in rows]
    detector = FallDetector.restore(shipped, state, samples)
    return None if detector is None or detector.end_ts is None else round(detector.end_ts)


@dataclass
class Outage:
    statuses: list[int]  # the wearable's, per chunk
    resumes_at: int | None  # where the stored detector state resumes the stream (ms), while the store was full
    carrying: bool  # whether the gateway carried a fall then
    dropped: int  # readings dropped meanwhile
    falls_while_full: list[dict[str, object]]
    falls_after: list[dict[str, object]]  # once the uplink had sent the alarms waiting


async def _outage(
    path: Path, shipped: model.FallModel, messages: list[m.AccelSamples], *, alarms: bool, forward_samples: bool
) -> Outage:
    """The uplink is down: the store fills with telemetry, and (``alarms``) then with alarms until it refuses
    them. The wearable sends its chunks; the last one completes a fall, and the wearable sends nothing more.
    Then the uplink sends the alarms that wait."""
    store = Store(path, max_bytes=4 * MIB)
    fill_with_telemetry(store)
    if alarms:
        fill_with_alarms(store)
    worker = StoreWorker(store)
    pipeline = pipeline_over(
        store, worker, Stats(), FallService(shipped, suppress_s=10), forward_samples=forward_samples
    )
    app = http_source_app(HttpSource(kind="http", name="lan", vendors=["contract"]), pipeline)
    task = asyncio.create_task(worker.run())
    dropped = store.dropped
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        statuses = [(await client.post("/v1/devices/contract", content=m.encode(c))).status_code for c in messages]
    await asyncio.sleep(3 * pipeline_module.CARRIED_RETRY_S)
    resumes_at = resumed_at(shipped, await worker.call(store.detector_states))
    carrying = await still_carrying(pipeline) if alarms else pipeline.carrying
    dropped = store.dropped - dropped
    while_full = await worker.call(partial(falls_in, path))
    await worker.call(partial(send_alarms, store))
    await asyncio.sleep(3 * pipeline_module.CARRIED_RETRY_S)
    worker.stop()
    await task
    store.close()
    return Outage(statuses, resumes_at, carrying, dropped, while_full, falls_in(path))


@pytest.mark.parametrize("forward_samples", [False, True])
def test_fall_detection_goes_on_while_alarms_fill_the_store(
    dataset: data.Dataset,
    shipped: model.FallModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    forward_samples: bool,
) -> None:
    """Before, a chunk was refused when alarms filled the store, though it brought no alarm, only its detector's
    checkpoint (the checkpoint's rows were counted, not the rows it replaces): the wearable's stream stopped
    there, unacknowledged, and a fall in it was not stored before the outage ended."""
    monkeypatch.setattr(pipeline_module, "CARRIED_RETRY_S", 0.05)
    trial = fall_trial(dataset, shipped)
    messages = chunks(trial.counts, hz=50, size=25)
    decided = decided_in(shipped, messages)
    reference = FallService(shipped, suppress_s=10)
    (fall,) = [f for message in messages for f in reference.feed(message)]
    path = tmp_path / "store.db"
    outage = asyncio.run(_outage(path, shipped, messages[: decided + 1], alarms=True, forward_samples=forward_samples))
    assert outage.statuses == [200] * decided + [503]  # taken, detector state and all, up to the fall's chunk:
    assert outage.carrying and outage.falls_while_full == []  # its fall is an alarm, with no room yet: carried
    assert outage.resumes_at == messages[decided - 1].ts + 500  # a restart would resume where the wearable was
    assert outage.dropped == (decided if forward_samples else 0)  # the forwarded copies went, counted
    assert outage.falls_after == [json.loads(m.encode(fall))]  # the same fall, once, when alarms had room


@pytest.mark.parametrize("forward_samples", [False, True])
def test_fall_detection_goes_on_while_telemetry_fills_the_store(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path, forward_samples: bool
) -> None:
    """Telemetry past the data share: the oldest readings make room for the chunks and the fall, stored at once."""
    trial = fall_trial(dataset, shipped)
    messages = chunks(trial.counts, hz=50, size=25)
    decided = decided_in(shipped, messages)
    path = tmp_path / "store.db"
    outage = asyncio.run(_outage(path, shipped, messages[: decided + 1], alarms=False, forward_samples=forward_samples))
    assert outage.statuses == [200] * (decided + 1)
    assert [(f["t"], f["dev"]) for f in outage.falls_while_full] == [("fall", DEV)] and not outage.carrying
    assert outage.resumes_at == messages[decided].ts + 500
    assert outage.dropped > 0  # old readings, to make room
