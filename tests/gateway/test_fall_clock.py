"""A wearable's clock that glitches: one chunk stamped far ahead (or far behind), then the right times again.

The detector must not take the chunks after the glitch for repeats (they start earlier than where its stream
ended): before, it skipped them all until real time caught up with the glitch, and a fall in that hour went
undetected. A glitch now costs what losing the chunk costs: one stamped ahead, a gap; one stamped behind is stale.
Chunks sent again (a device retrying, the home broker redelivering, after a restart too) are still skipped as
repeats."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tests.gateway.test_fall_restart import chunks as restart_chunks
from tests.gateway.test_fall_restart import feed_and_store, gateway_run

from eldercare.devices import messages as m
from eldercare.gateway.fall import data, model
from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.detector import REMEMBERED, Decision, FallDetector
from eldercare.gateway.pipeline import FallService
from eldercare.gateway.store import Store

T0 = 1_763_775_000_000
MIB = 1024 * 1024
DEV = "WR-0001"
HOUR = 3_600_000
DAY = 24 * HOUR
GLITCH_S = 60  # the glitch comes this far into the walk, some 47 s before the fall


def walk_then_fall(dataset: data.Dataset) -> np.ndarray:
    """100 s of walking, then a fall (real recordings of one subject); the shipped model raises only the fall."""
    walk = next(t for t in dataset.trials if t.name == "D01_SA07_R01")
    fall = next(t for t in dataset.trials if t.name == "F01_SA07_R01")
    return np.concatenate([walk.counts, fall.counts])


def chunks(counts: np.ndarray, *, hz: int = 50, size: int = 25) -> list[m.AccelSamples]:
    """The 50 Hz recording as a wearable at ``hz`` sends it (each sample repeated), in chunks of ``size``."""
    return restart_chunks(np.repeat(counts, hz // ft.HZ, axis=0), hz=hz, size=size)


def stamped(message: m.AccelSamples, shift_ms: int) -> m.AccelSamples:
    return m.AccelSamples(dev=message.dev, ts=message.ts + shift_ms, hz=message.hz, xyz=message.xyz)


def glitched(messages: list[m.AccelSamples], at: int, shift_ms: int) -> list[m.AccelSamples]:
    """The chunk ``at`` stamped ``shift_ms`` off (its samples are the right ones), the others right."""
    return [stamped(c, shift_ms) if i == at else c for i, c in enumerate(messages)]


def feed(detector: FallDetector, messages: list[m.AccelSamples]) -> list[Decision]:
    return [d for c in messages for d in detector.feed(c.ts, c.hz, c.xyz)]


def same(a: list[Decision], b: list[Decision]) -> bool:
    return [(d.peak_ts, d.decided_ts, d.probability, d.alarm) for d in a] == [
        (d.peak_ts, d.decided_ts, d.probability, d.alarm) for d in b
    ]


@pytest.mark.parametrize(
    "shift_ms", [HOUR, DAY, 5_000, -DAY], ids=["hour-ahead", "day-ahead", "5s-ahead", "day-behind"]
)
@pytest.mark.parametrize(("hz", "size"), [(50, 25), (200, 30)])
def test_one_chunk_stamped_far_off_costs_what_a_gap_costs_and_the_fall_after_it_is_raised(
    dataset: data.Dataset, shipped: model.FallModel, shift_ms: int, hz: int, size: int
) -> None:
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    reference = [d for d in feed(FallDetector(shipped), messages) if d.alarm]
    assert len(reference) == 1  # the fall, 107 s in
    at = GLITCH_S * hz // size
    decisions = feed(FallDetector(shipped), glitched(messages, at, shift_ms))
    # Stamped ahead, it starts a stream, and the right times after it start the stream again, exactly as after a
    # gap. Stamped behind, it is stale (dropped) and costs what losing it costs: a gap at 50 Hz in 0.5 s chunks; at
    # 200 Hz in 0.15 s chunks a hole within the tolerance, bridged, which dates the stream after it 150 ms early ...
    lost = messages[at + 1 :] if shift_ms > 0 else messages[:at] + messages[at + 1 :]
    assert same(decisions, feed(FallDetector(shipped), lost))
    # ... so the fall, 47 s later, is raised as if nothing had happened (at 200 Hz, the runs of 4 averaged start
    # with the new stream: the peak may move by a sample). Before, a chunk stamped ahead made the detector skip
    # every chunk after it as a "repeat" (they start before it) until real time caught up.
    alarms = [d for d in decisions if d.alarm]
    assert len(alarms) == 1
    assert abs(alarms[0].peak_ts - reference[0].peak_ts) <= (1000 // ft.HZ if shift_ms > 0 else 200)
    if hz == ft.HZ:
        assert same(alarms, reference)


def test_chunks_sent_again_are_skipped_and_a_clock_that_jumps_back_starts_a_new_stream(
    dataset: data.Dataset, shipped: model.FallModel
) -> None:
    messages = chunks(walk_then_fall(dataset))
    reference = feed(FallDetector(shipped), messages)
    detector = FallDetector(shipped)
    decisions = feed(detector, messages[:200])
    assert detector.checkpoint() is not None
    # The home broker redelivers what the gateway had not acknowledged: the last chunks, in order, up to the
    # number remembered; an HTTP device retries its last post. Repeats: nothing taken, nothing to store.
    for c in [*messages[200 - REMEMBERED : 200], messages[199], messages[150]]:
        assert detector.feed(c.ts, c.hz, c.xyz) == []
        assert detector.checkpoint() is None
    decisions += feed(detector, messages[200:])
    assert same(decisions, reference)
    # The same repeats around a glitch: the glitch chunk sent again, and chunks from before it.
    detector = FallDetector(shipped)
    at = GLITCH_S * 2
    bad = glitched(messages, at, HOUR)
    decisions = feed(detector, bad[: at + 1])
    assert detector.checkpoint() is not None
    for c in [bad[at], bad[at - 1], bad[at], *bad[at - 10 : at + 1]]:
        assert detector.feed(c.ts, c.hz, c.xyz) == []
        assert detector.end_ts == bad[at].ts + 500  # the stream is still the glitch's
    decisions += feed(detector, bad[at + 1 :])
    assert same(decisions, feed(FallDetector(shipped), messages[at + 1 :]))

    # Another chunk at a time already seen (other samples): not a repeat but a clock that jumped back 10 s.
    detector = FallDetector(shipped)
    feed(detector, messages[:200])
    back = m.AccelSamples(dev=DEV, ts=messages[180].ts, hz=50, xyz=messages[190].xyz)
    detector.feed(back.ts, back.hz, back.xyz)
    assert detector.end_ts == back.ts + 500
    point = detector.checkpoint()
    assert point is not None
    assert (point.stream, point.first) == (back.ts, 0)


def test_the_first_chunk_of_a_long_stream_sent_again_does_not_start_a_stream_of_the_same_name(
    dataset: data.Dataset, shipped: model.FallModel
) -> None:
    """It is no longer remembered; a new stream starting there would have the stream's name (its start), and
    the store would mix the samples of the two."""
    messages = chunks(walk_then_fall(dataset))
    detector = FallDetector(shipped)
    feed(detector, messages[: REMEMBERED + 10])
    assert detector.checkpoint() is not None
    end = detector.end_ts
    first = messages[0]
    assert detector.feed(first.ts, first.hz, first.xyz) == []
    assert detector.end_ts == end
    assert detector.checkpoint() is None


def restarted(path: Path, shipped: model.FallModel) -> tuple[Store, FallService]:
    store = Store(path, max_bytes=8 * MIB)
    service = FallService(shipped, suppress_s=10, saved=store.detector_states())
    assert service.restored == 1
    return store, service


@pytest.mark.parametrize("shift_ms", [HOUR, -DAY], ids=["hour-ahead", "day-behind"])
def test_a_restart_after_the_glitch_resumes_the_detector_and_knows_what_is_sent_again(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path, shift_ms: int
) -> None:
    messages = chunks(walk_then_fall(dataset))
    at = GLITCH_S * 2
    bad = glitched(messages, at, shift_ms)
    never_stopped = FallService(shipped, suppress_s=10)
    reference = [f for c in bad for f in never_stopped.feed(c)]
    assert len(reference) == 1

    # The gateway stops right after the glitch chunk; the home broker sends the last 20 chunks again.
    path = tmp_path / "glitch.db"
    store = Store(path, max_bytes=8 * MIB)
    assert feed_and_store(FallService(shipped, suppress_s=10), store, bad[: at + 1]) == []
    store.close()
    store, service = restarted(path, shipped)
    for c in bad[at - 19 : at + 1]:
        assert service.feed(c) == []
        assert service.checkpoint(DEV) is None  # a repeat: nothing to store
    assert feed_and_store(service, store, bad[at + 1 :]) == reference
    store.close()

    # Stopped again just after the impact, before the decision: the chunk with the impact and the one after it,
    # sent again, are repeats (they start up to 1 s before where the stream ended), not a clock that jumped
    # back, so the fall is decided on the window the restart resumed. (Taken as a new stream, the chunk with the
    # impact would have lost the 5 s before it.)
    impact = next(i for i, c in enumerate(messages) if c.ts > reference[0].ts) - 1
    path = tmp_path / "impact.db"
    store = Store(path, max_bytes=8 * MIB)
    assert feed_and_store(FallService(shipped, suppress_s=10), store, bad[: impact + 2]) == []
    store.close()
    store, service = restarted(path, shipped)
    for c in bad[impact : impact + 2]:
        assert service.feed(c) == []
        assert service.checkpoint(DEV) is None
    assert feed_and_store(service, store, bad[impact + 2 :]) == reference
    store.close()


def test_through_the_gateway_a_fall_after_a_clock_glitch_is_stored(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    """The wearable posts one chunk stamped an hour ahead, retries it (the answer was lost), then posts the right
    times; the fall 47 s later reaches the store as an alarm."""
    messages = chunks(walk_then_fall(dataset))
    at = GLITCH_S * 2
    bad = glitched(messages, at, HOUR)
    path = tmp_path / "store.db"
    assert asyncio.run(gateway_run(path, shipped, [*bad[: at + 1], bad[at], *bad[at + 1 :]])) == 1
    with sqlite3.connect(path) as db:
        stored = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q")]
    walk = next(t for t in dataset.trials if t.name == "D01_SA07_R01")
    fall = next(t for t in dataset.trials if t.name == "F01_SA07_R01")
    impact_ts = T0 + (len(walk.counts) + fall.impact_index()) * 1000 // ft.HZ
    assert [(a["t"], a["dev"], a["source"], a["ts"]) for a in stored] == [("fall", DEV, "wearable", impact_ts)]
