"""A fall that straddles a gateway restart: each wearable's detector is kept in the store, in the same commit
as the chunk that changed it, and resumed exactly where the acknowledged stream left it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from tests.gateway.support import disk_fails, fill_with_alarms, pipeline_over, send_alarms, still_carrying

from eldercare.devices import messages as m
from eldercare.gateway import pipeline as pipeline_module
from eldercare.gateway.config import HttpSource
from eldercare.gateway.fall import data, model
from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.detector import FallDetector, feed_recording
from eldercare.gateway.pipeline import FallService
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, Item, Lane, Store
from eldercare.gateway.web import http_source_app
from eldercare.gateway.worker import StoreWorker

T0 = 1_763_775_000_000
MIB = 1024 * 1024
DEV = "WR-0001"


def chunks(counts: np.ndarray, *, hz: int, size: int) -> list[m.AccelSamples]:
    return [
        m.AccelSamples(
            dev=DEV,
            ts=T0 + round(begin * 1000 / hz),
            hz=hz,
            xyz=[(int(x), int(y), int(z)) for x, y, z in counts[begin : begin + size]],
        )
        for begin in range(0, len(counts), size)
    ]


def decided_in(shipped: model.FallModel, messages: list[m.AccelSamples]) -> int:
    """The index of the chunk whose arrival decides the (one) fall."""
    service = FallService(shipped, suppress_s=10)
    return next(i for i, message in enumerate(messages) if service.feed(message))


def fall_trial(dataset: data.Dataset, shipped: model.FallModel) -> data.Trial:
    """A fall of a subject the shipped model raises an alarm for (the restart is what is tested)."""
    for trial in dataset.trials:
        wanted = trial.is_fall and trial.subject == "SA07"
        if wanted and any(d.alarm for d in feed_recording(FallDetector(shipped), trial.counts, chunk=25)):
            return trial
    raise AssertionError("no fall of SA07 raises an alarm")


def feed_and_store(service: FallService, store: Store, messages: list[m.AccelSamples]) -> list[m.Fall]:
    """What the gateway does per chunk: detect, then store the falls and the detector's state in one commit."""
    raised: list[m.Fall] = []
    for message in messages:
        falls = service.feed(message)
        state = service.checkpoint(message.dev)
        store.commit(
            [Batch(items=[Item(Lane.ALARM, m.encode(f), f) for f in falls], detectors=[] if state is None else [state])]
        )
        raised += falls
    return raised


@pytest.mark.parametrize(("hz", "size"), [(50, 25), (200, 30)])
def test_a_fall_straddling_a_restart_is_raised_once_as_if_the_gateway_never_stopped(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path, hz: int, size: int
) -> None:
    trial = fall_trial(dataset, shipped)
    counts = np.repeat(trial.counts, hz // ft.HZ, axis=0)  # 200 Hz: averaged back in runs of 4, with a carry
    messages = chunks(counts, hz=hz, size=size)
    never_stopped = FallService(shipped, suppress_s=10)
    reference = [f for message in messages for f in never_stopped.feed(message)]
    assert len(reference) == 1
    # Restart after the chunk holding the impact, before the decision 1.2 s later.
    impact_ts = T0 + trial.impact_index() * 1000 // ft.HZ
    cut = next(i for i, c in enumerate(messages) if c.ts > impact_ts)
    assert messages[cut].ts < reference[0].ts + ft.POST * 1000 // ft.HZ

    path = tmp_path / "store.db"
    store = Store(path, max_bytes=8 * MIB)
    before = feed_and_store(FallService(shipped, suppress_s=10, saved=store.detector_states()), store, messages[:cut])
    store.close()  # the gateway stops (or is killed: every commit is on disk)

    store = Store(path, max_bytes=8 * MIB)
    resumed = FallService(shipped, suppress_s=10, saved=store.detector_states())
    assert resumed.restored == 1
    # The home broker or the device sends again what may not have been acknowledged: a repeat, skipped.
    after = feed_and_store(resumed, store, messages[cut - 1 :])
    store.close()
    assert before == []
    assert after == reference  # same impact time, same confidence: decided on the same window

    # Without the stored state, the restarted detector sees only the end of the fall, and misses it.
    forgetful = FallService(shipped, suppress_s=10)
    assert [f for message in messages[cut:] for f in forgetful.feed(message)] == []


@pytest.mark.parametrize(("hz", "size"), [(50, 25), (200, 30)])
def test_every_decision_after_a_restart_equals_the_uninterrupted_one(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path, hz: int, size: int
) -> None:
    """Restarted at any chunk around the impact, the detector decides the same candidates on the same window."""
    trial = fall_trial(dataset, shipped)
    counts = np.repeat(trial.counts, hz // ft.HZ, axis=0)
    messages = chunks(counts, hz=hz, size=size)
    whole = FallDetector(shipped)
    reference = [whole.feed(c.ts, c.hz, c.xyz) for c in messages]
    impact_chunk = next(i for i, c in enumerate(messages) if c.ts > T0 + trial.impact_index() * 1000 // ft.HZ)
    cuts = range(impact_chunk - 4 * ft.HZ // size, impact_chunk + 3 * ft.HZ // size)
    for n, cut in enumerate(cuts):
        path = tmp_path / f"store-{n}.db"
        store = Store(path, max_bytes=8 * MIB)
        feed_and_store(FallService(shipped, suppress_s=10), store, messages[:cut])
        store.close()
        store = Store(path, max_bytes=8 * MIB)
        state, rows = store.detector_states()[DEV]
        store.close()
        samples = [(r.stream, r.first, np.frombuffer(r.samples, dtype="<f4").reshape(-1, 3)) for r in rows]
        resumed = FallDetector.restore(shipped, state, samples)
        assert resumed is not None
        for c, expected in zip(messages[cut:], reference[cut:], strict=True):
            got = resumed.feed(c.ts, c.hz, c.xyz)
            assert [(d.peak_index, d.peak_ts, d.decided_ts, d.probability, d.alarm) for d in got] == [
                (d.peak_index, d.peak_ts, d.decided_ts, d.probability, d.alarm) for d in expected
            ], (hz, cut)
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a.features, b.features)


def test_the_stored_window_stays_small_and_a_state_that_does_not_fit_starts_afresh(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    walk = next(t for t in dataset.trials if t.activity == "D01")  # walking, 100 s
    path = tmp_path / "store.db"
    store = Store(path, max_bytes=8 * MIB)
    feed_and_store(FallService(shipped, suppress_s=10), store, chunks(walk.counts, hz=50, size=25))
    store.close()
    with sqlite3.connect(path) as db:
        kept = db.execute("SELECT sum(last - first), sum(length(samples)) FROM fall_samples").fetchone()
    window = ft.CONTEXT + ft.PEAK_SEARCH + ft.POST + 1
    assert window <= kept[0] <= window + 2 * 25  # the window a decision needs, not the whole walk
    assert kept[1] == kept[0] * 12

    store = Store(path, max_bytes=8 * MIB)
    saved = store.detector_states()
    assert FallService(shipped, suppress_s=10, saved=saved).restored == 1
    state, rows = saved[DEV]
    assert FallService(shipped, suppress_s=10, saved={DEV: (state, rows[1:])}).restored == 0  # a hole
    assert FallService(shipped, suppress_s=10, saved={DEV: (b"{not json", rows)}).restored == 0
    other_window = state.replace(b'"post": 60', b'"post": 50')
    assert other_window != state
    assert FallService(shipped, suppress_s=10, saved={DEV: (other_window, rows)}).restored == 0
    store.close()


def http_app(
    store: Store, worker: StoreWorker, stats: Stats, shipped: model.FallModel, *, forward_samples: bool = False
) -> Starlette:
    """The gateway's pipeline over ``store`` with its fall service resumed from it, behind the HTTP source."""
    return http_source_app(
        HttpSource(kind="http", name="lan", vendors=["contract"]),
        pipeline_over(
            store,
            worker,
            stats,
            FallService(shipped, suppress_s=10, saved=store.detector_states()),
            forward_samples=forward_samples,
        ),
    )


async def gateway_run(path: Path, shipped: model.FallModel, messages: list[m.AccelSamples]) -> int:
    """One life of the gateway's pipeline: its store, its fall service resumed from it, devices posting."""
    store = Store(path, max_bytes=8 * MIB)
    worker = StoreWorker(store)
    stats = Stats()
    app = http_app(store, worker, stats, shipped)
    task = asyncio.create_task(worker.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for message in messages:
            reply = await client.post("/v1/devices/contract", content=m.encode(message))
            assert reply.status_code == 200, reply.text
    worker.stop()
    await task
    store.close()
    return stats.falls


def test_through_the_pipeline_the_fall_is_stored_once_across_the_restart(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    trial = fall_trial(dataset, shipped)
    messages = chunks(trial.counts, hz=50, size=25)
    impact_ts = T0 + trial.impact_index() * 1000 // ft.HZ
    cut = next(i for i, c in enumerate(messages) if c.ts > impact_ts)
    path = tmp_path / "store.db"
    assert asyncio.run(gateway_run(path, shipped, messages[:cut])) == 0
    assert asyncio.run(gateway_run(path, shipped, messages[cut:])) == 1
    with sqlite3.connect(path) as db:
        stored = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q")]
    assert [(a["t"], a["dev"], a["source"]) for a in stored] == [("fall", DEV, "wearable")]


async def _refused_then_resent(path: Path, shipped: model.FallModel, messages: list[m.AccelSamples]) -> list[int]:
    """The store full of unsent alarms refuses what brings a new alarm (503): the chunk that completes the fall
    (and those after it that take the carried fall with them). The broker then takes the alarms, and the device
    sends the refused chunks again. Returns the HTTP statuses of the first round."""
    store = Store(path, max_bytes=4 * MIB)
    fill_with_alarms(store)
    worker = StoreWorker(store)
    stats = Stats()
    app = http_app(store, worker, stats, shipped)
    task = asyncio.create_task(worker.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        first = [(await client.post("/v1/devices/contract", content=m.encode(c))).status_code for c in messages]
        await worker.call(partial(send_alarms, store))
        for message, status in zip(messages, first, strict=True):
            if status == 503:  # the device sends again what was not taken
                reply = await client.post("/v1/devices/contract", content=m.encode(message))
                assert reply.status_code == 200, reply.text
    worker.stop()
    await task
    store.close()
    return first


def test_a_fall_decided_in_a_chunk_the_full_store_refused_is_stored_when_the_chunk_comes_again(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    trial = fall_trial(dataset, shipped)
    messages = chunks(trial.counts, hz=50, size=25)
    statuses = asyncio.run(_refused_then_resent(tmp_path / "store.db", shipped, messages))
    assert statuses.index(503) == decided_in(shipped, messages)  # the chunks before it were taken
    with sqlite3.connect(tmp_path / "store.db") as db:
        stored = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q")]
    assert [(a["t"], a["dev"], a["source"]) for a in stored] == [("fall", DEV, "wearable")]


async def _refused_and_never_sent_again(
    path: Path, shipped: model.FallModel, messages: list[m.AccelSamples]
) -> tuple[list[int], list[str], bool, int]:
    """The store full of unsent alarms takes the wearable's chunks (their detector state has room beyond the
    alarms') but refuses the one completing the fall (503), and the wearable, broken in the fall, never sends it
    again. The store stays full for a few retries, then the broker takes the alarms. Returns the HTTP statuses,
    the alarms stored while the store was full, whether falls were still carried then, and the commits refused
    while the store was full."""
    store = Store(path, max_bytes=4 * MIB)
    fill_with_alarms(store)
    full = store.queued(Lane.ALARM)
    worker = StoreWorker(store)
    stats = Stats()
    pipeline = pipeline_over(store, worker, stats, FallService(shipped, suppress_s=10))
    app = http_source_app(HttpSource(kind="http", name="lan", vendors=["contract"]), pipeline)
    task = asyncio.create_task(worker.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        statuses = [(await client.post("/v1/devices/contract", content=m.encode(c))).status_code for c in messages]
    await asyncio.sleep(3 * pipeline_module.CARRIED_RETRY_S)
    while_full = await worker.call(partial(_alarms_after, path, full))
    carrying, refused = await still_carrying(pipeline), stats.refused
    await worker.call(partial(send_alarms, store))
    await asyncio.sleep(2 * pipeline_module.CARRIED_RETRY_S)
    worker.stop()
    await task
    store.close()
    return statuses, while_full, carrying, refused


def _alarms_after(path: Path, skip: int) -> list[str]:
    with sqlite3.connect(path) as db:
        return [body for (body,) in db.execute("SELECT body FROM alarm_q ORDER BY rowid LIMIT -1 OFFSET ?", (skip,))]


def test_a_fall_in_a_refused_chunk_is_stored_on_its_own_when_the_wearable_never_sends_again(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fall's only copy is in the gateway's memory: it must not wait for a chunk that will never come."""
    monkeypatch.setattr(pipeline_module, "CARRIED_RETRY_S", 0.05)
    trial = fall_trial(dataset, shipped)
    messages = chunks(trial.counts, hz=50, size=25)
    path = tmp_path / "store.db"
    decided = decided_in(shipped, messages)
    statuses, while_full, carrying, refused = asyncio.run(
        _refused_and_never_sent_again(path, shipped, messages[: decided + 1])
    )
    assert statuses == [200] * decided + [503]  # the fall's chunk refused: its fall is an alarm, carried
    assert while_full == [] and carrying  # offered again while the store was full, refused, and still held
    assert refused > 1
    with sqlite3.connect(tmp_path / "store.db") as db:
        stored = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q")]
    assert [(a["t"], a["dev"], a["source"]) for a in stored] == [("fall", DEV, "wearable")]


async def _one_chunk_refused(
    path: Path, shipped: model.FallModel, messages: list[m.AccelSamples], refused: int
) -> None:
    """The gateway takes ``messages``, but its store, its disk failing for a moment, refuses ``messages[refused]``
    (503); the device sends that chunk again (200) and goes on; the gateway stops. (A store full of alarms takes
    a chunk that brings no alarm: see test_fall_detection_goes_on_while_alarms_fill_the_store.)"""
    store = Store(path, max_bytes=4 * MIB)
    worker = StoreWorker(store)
    app = http_app(store, worker, Stats(), shipped, forward_samples=True)
    task = asyncio.create_task(worker.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for i, message in enumerate(messages):
            if i == refused:
                await worker.call(partial(disk_fails, store, failing=True))
                assert (await client.post("/v1/devices/contract", content=m.encode(message))).status_code == 503
                await worker.call(partial(disk_fails, store, failing=False))
            assert (await client.post("/v1/devices/contract", content=m.encode(message))).status_code == 200
    worker.stop()
    await task
    store.close()


def test_the_samples_of_a_chunk_the_store_refused_go_with_the_next_checkpoint(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    """The detector took the refused chunk, and takes it again as a repeat: its samples must still reach the
    store, or the stored window has a hole and a restart starts the detector afresh (missing the fall)."""
    trial = fall_trial(dataset, shipped)
    messages = chunks(trial.counts, hz=50, size=25)
    never_stopped = FallService(shipped, suppress_s=10)
    reference = [f for message in messages for f in never_stopped.feed(message)]
    impact_ts = T0 + trial.impact_index() * 1000 // ft.HZ
    refused = next(i for i, c in enumerate(messages) if c.ts > impact_ts) - 1  # the chunk with the impact
    path = tmp_path / "store.db"
    asyncio.run(_one_chunk_refused(path, shipped, messages[: refused + 2], refused))  # and one more, stored

    store = Store(path, max_bytes=4 * MIB)
    resumed = FallService(shipped, suppress_s=10, saved=store.detector_states())
    assert resumed.restored == 1  # no hole in the stored window
    assert feed_and_store(resumed, store, messages[refused + 2 :]) == reference  # decided on the same window
    store.close()
