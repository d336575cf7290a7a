"""A wearable's chunks out of order (its buffer flushed late, the wearable on two links), chunks sent again long
after they were taken, and a clock that jumps back: what the fall detector makes of them, alone and in the gateway.

A chunk that comes a little late is taken in its place: the decisions are exactly those of the chunks in order, and
the fall is raised. One that comes later than the reorder window costs the gap it left and no more. An old chunk
sent again, no longer remembered, is dropped as stale (counted) and the stream keeps its context; a clock that
really jumped back that far is trusted once the chunks after it go on from it. Before, a chunk that came before the
one it follows reset the stream twice, and an old chunk sent again reset it: a fall in either case went undetected.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tests.gateway.test_fall_clock import chunks, feed, restarted, same, stamped, walk_then_fall
from tests.gateway.test_fall_forget import HOUR, Clock, Gateway, _forget_on_its_own
from tests.gateway.test_fall_restart import DEV, MIB, T0, feed_and_store, gateway_run

from eldercare.devices import messages as m
from eldercare.gateway.fall import data, model
from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.detector import REMEMBERED, REORDER_MS, FallDetector
from eldercare.gateway.pipeline import QUIET_RELEASE_S, Delivery, FallService
from eldercare.gateway.store import Lane, Store

RATES = pytest.mark.parametrize(("hz", "size"), [(50, 25), (200, 30)], ids=["50Hz-0.5s", "200Hz-0.15s"])


def impact_ts(dataset: data.Dataset) -> int:
    walk = next(t for t in dataset.trials if t.name == "D01_SA07_R01")
    fall = next(t for t in dataset.trials if t.name == "F01_SA07_R01")
    return T0 + (len(walk.counts) + fall.impact_index()) * 1000 // ft.HZ


def chunk_at(messages: list[m.AccelSamples], ts: int) -> int:
    """The index of the chunk holding time ``ts``."""
    return max(i for i, c in enumerate(messages) if c.ts <= ts)


def in_order(messages: list[m.AccelSamples], order: list[int]) -> list[m.AccelSamples]:
    assert sorted(order) == list(range(len(messages)))
    return [messages[i] for i in order]


def pairs_swapped(n: int) -> list[int]:
    """Every chunk after the first comes before the one it follows: a wearable sending on two links in turn."""
    return [0, *(j for i in range(1, n - 1, 2) for j in (i + 1, i)), *([n - 1] if n % 2 == 0 else [])]


def flushed_late(messages: list[m.AccelSamples], at: int) -> list[int]:
    """The chunks of the second before time ``at`` come after those of the second after it (a buffer flushed late,
    within the reorder window: the chunks waiting reach at most REORDER_MS past the hole)."""
    late = range(chunk_at(messages, at - REORDER_MS // 2), chunk_at(messages, at))
    early = range(late.stop, late.stop + len(late))
    return [*range(late.start), *early, *late, *range(early.stop, len(messages))]


@RATES
@pytest.mark.parametrize("shape", ["pairs-swapped", "flushed-late"])
def test_chunks_a_little_out_of_order_are_taken_in_their_place_and_the_fall_is_raised(
    dataset: data.Dataset, shipped: model.FallModel, hz: int, size: int, shape: str
) -> None:
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    reference = feed(FallDetector(shipped), messages)
    assert len([d for d in reference if d.alarm]) == 1
    # flushed-late: the chunks of the fall itself come late
    order = pairs_swapped(len(messages)) if shape == "pairs-swapped" else flushed_late(messages, impact_ts(dataset))
    detector = FallDetector(shipped)
    decisions = feed(detector, in_order(messages, order))
    # Every decision as in order: same candidates, same probabilities, same decided_ts. Before, each chunk that came
    # before the one it follows started a new stream, and the fall went undetected.
    assert same(decisions, reference)
    assert detector.stale == 0


@RATES
def test_a_chunk_later_than_the_reorder_window_costs_the_gap_it_left_and_no_more(
    dataset: data.Dataset, shipped: model.FallModel, hz: int, size: int
) -> None:
    """The chunk from 7 s before the impact comes 4 s late: the chunks after it waited for it, then went on without
    it (a gap at 50 Hz in 0.5 s chunks, a hole within the tolerance, bridged, at 200 Hz in 0.15 s chunks). When it
    comes, it is stale: dropped, without starting a stream of its own (before, it did, and the chunk after it
    another one, 2.5 s before the impact: the fall was judged without what came before it)."""
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    late = chunk_at(messages, impact_ts(dataset) - 7000)
    after = chunk_at(messages, messages[late].ts + 4000)
    order = [*range(late), *range(late + 1, after + 1), late, *range(after + 1, len(messages))]
    detector = FallDetector(shipped)
    decisions = feed(detector, in_order(messages, order))
    lost = feed(FallDetector(shipped), messages[:late] + messages[late + 1 :])
    assert same(decisions, lost)
    assert detector.stale == 1
    alarms = [d for d in decisions if d.alarm]
    assert len(alarms) == 1
    assert abs(alarms[0].peak_ts - impact_ts(dataset)) <= 200  # bridged, the stream's times are up to 150 ms off


def test_chunks_waiting_for_a_late_one_are_kept_across_a_restart(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    """The chunk holding the impact comes after the two after it, and the gateway stops while those wait. Restarted,
    it takes the late chunk in its place and raises the fall as if nothing had happened."""
    messages = chunks(walk_then_fall(dataset))
    never_stopped = FallService(shipped, suppress_s=10)
    reference = [f for c in messages for f in never_stopped.feed(c)]
    assert len(reference) == 1
    impact = chunk_at(messages, impact_ts(dataset))
    path = tmp_path / "store.db"
    store = Store(path, max_bytes=8 * MIB)
    service = FallService(shipped, suppress_s=10)
    assert feed_and_store(service, store, [*messages[:impact], messages[impact + 1], messages[impact + 2]]) == []
    store.close()

    store, service = restarted(path, shipped)
    for c in messages[impact + 1 : impact + 3]:  # the home broker sends again what may not have been acknowledged
        assert service.feed(c) == []
        assert service.checkpoint(DEV) is None  # repeats of chunks waiting
    assert feed_and_store(service, store, [messages[impact], *messages[impact + 3 :]]) == reference
    store.close()


def test_through_the_gateway_a_fall_whose_chunks_come_out_of_order_is_stored(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    messages = chunks(walk_then_fall(dataset))
    path = tmp_path / "store.db"
    assert asyncio.run(gateway_run(path, shipped, in_order(messages, pairs_swapped(len(messages))))) == 1
    with sqlite3.connect(path) as db:
        stored = [json.loads(body) for (body,) in db.execute("SELECT body FROM alarm_q")]
    assert [(a["t"], a["dev"], a["source"], a["ts"]) for a in stored] == [("fall", DEV, "wearable", impact_ts(dataset))]


def shuffled(messages: list[m.AccelSamples], rng: random.Random) -> tuple[list[m.AccelSamples], int]:
    """The chunks with, at random: a chunk swapped with the next (not overlapping), the chunk before sent again (a
    repeat), an old chunk sent again (no longer remembered: stale); and how many old ones were sent again."""
    order = list(range(len(messages)))
    for i in range(1, len(order) - 1, 2):
        if rng.random() < 0.3:
            order[i], order[i + 1] = order[i + 1], order[i]
    sent: list[m.AccelSamples] = []
    old: set[int] = set()  # each once (sent a second time soon after, it is remembered: a repeat)
    for position, i in enumerate(order):
        sent.append(messages[i])
        if rng.random() < 0.05:
            sent.append(messages[order[position - 1]])
        if rng.random() < 0.05 and i > 3 * REMEMBERED and (k := rng.randrange(i - 2 * REMEMBERED)) not in old:
            sent.append(messages[k])
            old.add(k)
    return sent, len(old)


@RATES
@pytest.mark.parametrize("seed", range(3))
def test_chunks_shuffled_a_little_sent_again_and_stale_decide_as_in_order_across_a_restart(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path, hz: int, size: int, seed: int
) -> None:
    rng = random.Random(seed)
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    reference = feed(FallDetector(shipped), messages)
    sent, old = shuffled(messages, rng)
    detector = FallDetector(shipped)
    assert same(feed(detector, sent), reference)
    assert detector.stale == old

    never_stopped = FallService(shipped, suppress_s=10)
    falls = [f for c in messages for f in never_stopped.feed(c)]
    assert len(falls) == 1
    cut = rng.randrange(len(sent))
    path = tmp_path / "store.db"
    store = Store(path, max_bytes=8 * MIB)
    raised = feed_and_store(FallService(shipped, suppress_s=10), store, sent[:cut])
    store.close()
    store, service = restarted(path, shipped)
    assert raised + feed_and_store(service, store, sent[cut:]) == falls
    store.close()


@RATES
def test_after_a_chunk_stamped_an_hour_ahead_the_right_times_out_of_order_are_trusted(
    dataset: data.Dataset, shipped: model.FallModel, hz: int, size: int
) -> None:
    """The chunks after the glitch start before its stream, and come out of order: they are taken as a clock that
    jumped back once they go on from one another for REORDER_MS, in any order, and the fall 47 s later is raised.
    (Taken as a run that had to come in order, each chunk out of order made the run stale: blind until in order.)"""
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    at = chunk_at(messages, T0 + 60_000)
    order = [*range(at + 1), *(at + 1 + i for i in pairs_swapped(len(messages) - at - 1))]
    arrived = in_order([stamped(c, 3_600_000) if i == at else c for i, c in enumerate(messages)], order)
    detector = FallDetector(shipped)
    decisions = feed(detector, arrived)
    assert same(decisions, feed(FallDetector(shipped), messages[at + 1 :]))
    assert len([d for d in decisions if d.alarm]) == 1
    assert detector.stale == 0


def sent_again_before_the_impact(messages: list[m.AccelSamples], impact: int) -> list[m.AccelSamples]:
    """In order, but 2 s before the impact come again: a chunk from 50 s before, a run of three from 40 s before,
    and the stream's first chunk (all taken long ago, and no longer remembered)."""
    at = chunk_at(messages, messages[impact].ts - 2000)
    old = chunk_at(messages, messages[at].ts - 50_000)
    run = chunk_at(messages, messages[at].ts - 40_000)
    assert messages[at].ts - messages[run + 2].ts > REMEMBERED * (messages[1].ts - messages[0].ts)
    return [*messages[:at], messages[old], *messages[run : run + 3], messages[0], *messages[at:]]


@RATES
def test_old_chunks_sent_again_are_dropped_as_stale_and_the_stream_keeps_its_context(
    dataset: data.Dataset, shipped: model.FallModel, hz: int, size: int
) -> None:
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    reference = feed(FallDetector(shipped), messages)
    detector = FallDetector(shipped)
    decisions = feed(detector, sent_again_before_the_impact(messages, chunk_at(messages, impact_ts(dataset))))
    # Before, each started a new stream (a clock that jumped back) and the fall, 2 s later, went undetected.
    assert same(decisions, reference)
    assert detector.stale == 5


def test_old_chunks_sent_again_across_a_restart_are_still_stale(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    """The gateway stops while the old run sent again waits to be told stale from a clock that jumped back."""
    messages = chunks(walk_then_fall(dataset))
    never_stopped = FallService(shipped, suppress_s=10)
    reference = [f for c in messages for f in never_stopped.feed(c)]
    sent = sent_again_before_the_impact(messages, chunk_at(messages, impact_ts(dataset)))
    stop = max(i for i, c in enumerate(sent) if c == messages[0]) - 1  # after the run of three (before the first)
    path = tmp_path / "store.db"
    store = Store(path, max_bytes=8 * MIB)
    assert feed_and_store(FallService(shipped, suppress_s=10), store, sent[: stop + 1]) == []
    store.close()
    store, service = restarted(path, shipped)
    assert feed_and_store(service, store, sent[stop + 1 :]) == reference
    # Decided on the stream begun at T0, with its context (before, on one begun 2 s before the impact).
    assert {r.stream for r in store.detector_states()[DEV][1]} == {T0}
    store.close()


@RATES
def test_a_clock_that_jumps_back_further_than_remembered_is_trusted_once_its_chunks_go_on(
    dataset: data.Dataset, shipped: model.FallModel, hz: int, size: int
) -> None:
    """From 60 s in, the wearable's clock is 10 minutes behind, for good: its chunks are not stale, and the fall is
    raised (at its time by that clock), with every decision after the jump made, REORDER_MS late at most."""
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    at = chunk_at(messages, T0 + 60_000)
    behind = [stamped(c, -600_000) for c in messages[at:]]
    detector = FallDetector(shipped)
    decisions = feed(detector, messages[:at] + behind)
    assert same(decisions, feed(FallDetector(shipped), messages[:at]) + feed(FallDetector(shipped), behind))
    assert [d.peak_ts for d in decisions if d.alarm] == [impact_ts(dataset) - 600_000]
    assert detector.stale == 0
    assert detector.end_ts == behind[-1].ts + len(behind[-1].xyz) * 1000 / hz


def test_one_chunk_stamped_far_ahead_is_not_the_wearables_time_once_the_right_times_come(
    shipped: model.FallModel,
) -> None:
    """``trusted_end_ts``, the wearable's time for the gateway, is not that of a stream of one chunk stamped far ahead
    while the chunks after it (the right times) wait to be told stale from a clock that jumped back."""
    still = np.tile(np.array([[0, 0, 256]], dtype=np.int16), (25, 1))
    detector = FallDetector(shipped)
    for k in range(4):
        detector.feed(T0 + 500 * k, 50, still)
    assert detector.trusted_end_ts == T0 + 2000
    glitch = T0 + 2000 + 86_400_000
    detector.feed(glitch, 50, still)  # a day ahead: a stream of its own (a gap, or a clock set on)
    assert detector.trusted_end_ts == detector.end_ts == glitch + 500
    detector.feed(T0 + 2500, 50, still)  # the right time again: it waits
    assert detector.end_ts == glitch + 500
    assert detector.trusted_end_ts == T0 + 2000
    point = detector.checkpoint()  # and so after a restart
    assert point is not None
    resumed = FallDetector.restore(shipped, point.state, [(point.stream, point.first, point.samples)])
    assert resumed is not None
    assert resumed.trusted_end_ts == T0 + 2000
    for k in range(1, 5):  # the right times, trusted once they have gone on for REORDER_MS
        for d in (detector, resumed):
            d.feed(T0 + 2500 + 500 * k, 50, still)
    assert detector.trusted_end_ts == resumed.trusted_end_ts == detector.end_ts == T0 + 5000


def test_one_chunk_stamped_far_ahead_does_not_make_the_gateway_forget_the_other_wearables(
    shipped: model.FallModel, tmp_path: Path
) -> None:
    """WR-2 sends one chunk stamped two days ahead, then the right times; the home broker is down for two hours after
    its first right chunk, and again after the rest (a detector is forgotten after one hour): the backlog still to
    come continues the streams, so no detector may go. Before, the one chunk moved the gateway's data time two days
    on for good, and every wearable silent for the horizon in running time alone was forgotten, until a restart."""
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    gateway.send("WR-1", T0, 4)
    gateway.send("WR-2", T0, 4)
    gateway.send("WR-2", T0 + 2000 + 2 * 86_400_000)

    def two_hours_of_nothing() -> None:
        clock.now += 2 * HOUR
        gateway.falls.tick()
        assert gateway.falls.take_forgotten() == []
        assert gateway.falls.wearables == {"WR-1", "WR-2"}

    gateway.send("WR-2", T0 + 2500)  # the right time again (it waits to be told from a stale chunk)
    two_hours_of_nothing()
    gateway.send("WR-2", T0 + 3000, 4)  # the right times go on (trusted: WR-2's stream is there again)
    two_hours_of_nothing()
    gateway.send("WR-1", T0 + 2000)  # the backlog: it continues the stream
    assert gateway.streams()["WR-1"] == {T0}
    gateway.store.close()


def test_chunks_left_waiting_by_a_wearable_that_goes_quiet_are_decided_and_the_fall_raised(
    dataset: data.Dataset, shipped: model.FallModel
) -> None:
    """At 200 Hz in 0.15 s chunks, the chunk before the impact is lost, and the wearable sends the fall's chunks and
    then nothing (one that sends while it moves, the resident lying still; one broken in the fall). The chunks after
    the hole wait for it; once the wearable has been quiet for QUIET_RELEASE_S the hole is given up (bridged: within
    the tolerance) and the fall is raised. Without the release they waited for chunks that never came."""
    messages = chunks(walk_then_fall(dataset), hz=200, size=30)
    impact = impact_ts(dataset)
    lost, last = chunk_at(messages, impact) - 1, chunk_at(messages, impact + 1500)
    assert messages[last].ts + 150 - messages[lost].ts <= REORDER_MS  # what waits stays within the window
    service_in_order = FallService(shipped, suppress_s=10)
    reference = [fall for c in messages[: last + 1] for fall in service_in_order.feed(c)]
    assert len(reference) == 1  # in order, these chunks decide the fall

    clock = Clock()
    service = FallService(shipped, suppress_s=10, clock=clock)
    falls = [fall for c in [*messages[:lost], *messages[lost + 1 : last + 1]] for fall in service.feed(c)]
    assert falls == [] and service.release_quiet() == {}  # waiting for the lost chunk
    clock.now += QUIET_RELEASE_S
    [(dev, [fall])] = service.release_quiet().items()
    assert dev == DEV and abs(fall.ts - reference[0].ts) <= 200  # bridged: the stream's times are up to 150 ms off
    assert service.release_quiet() == {}  # once


def test_the_gateway_stores_the_fall_of_a_wearable_gone_quiet_once_a_second_without_a_chunk(
    dataset: data.Dataset, shipped: model.FallModel, tmp_path: Path
) -> None:
    """The same, through the gateway's pipeline and store: the once-a-second pass that forgets detectors stores the
    fall, with the detector's checkpoint, in a commit of its own."""
    messages = chunks(walk_then_fall(dataset), hz=200, size=30)
    impact = impact_ts(dataset)
    lost, last = chunk_at(messages, impact) - 1, chunk_at(messages, impact + 1500)
    clock = Clock()
    gateway = Gateway(tmp_path / "store.db", shipped, clock)
    for message in [*messages[:lost], *messages[lost + 1 : last + 1]]:
        batch, problems = gateway.pipeline.prepare(Delivery(source="lan", vendor="contract", payload=m.encode(message)))
        assert problems == []
        gateway.store.commit([batch])
    assert gateway.store.queued(Lane.ALARM) == 0
    clock.now += QUIET_RELEASE_S
    asyncio.run(_forget_on_its_own(gateway))
    assert gateway.store.queued(Lane.ALARM) == 1
    frame = gateway.store.cut_frame(Lane.ALARM, max_msgs=10, max_bytes=1 << 20, sent=0)
    assert frame is not None
    [fall] = json.loads(frame.body)["msgs"]
    assert (fall["t"], fall["dev"], fall["source"]) == ("fall", DEV, "wearable")
    assert abs(fall["ts"] - impact) <= 1000
    gateway.store.close()


def test_the_gateway_counts_the_stale_chunks_it_drops(shipped: model.FallModel, tmp_path: Path) -> None:
    """The first chunk of a stream sent again after more than the chunks remembered: dropped as stale, and counted
    where the gateway's status shows it (``stats.fall_chunks_stale``)."""
    gateway = Gateway(tmp_path / "store.db", shipped, Clock())
    gateway.send(DEV, T0, REMEMBERED + 6)
    assert gateway.falls.stale == 0
    gateway.send(DEV, T0)
    assert gateway.falls.stale == 1
    assert gateway.streams() == {DEV: {T0}}  # the stream keeps its context
    gateway.store.close()


@RATES
def test_old_chunks_sent_again_among_new_ones_do_not_make_a_recent_one_sent_again_look_like_a_clock_jump(
    dataset: data.Dataset, shipped: model.FallModel, hz: int, size: int
) -> None:
    """Old chunks sent again one by one between the stream's (a wearable's link replaying its backlog while it sends
    live), each stale, then a recent chunk sent again (the home broker resending what was in flight). Before, every
    stale chunk's digest took a place among those remembered, pushing the recent chunks' out, and the recent chunk
    sent again, no longer remembered, was taken for a clock that jumped back: the stream started again at it."""
    messages = chunks(walk_then_fall(dataset), hz=hz, size=size)
    reference = feed(FallDetector(shipped), messages)
    impact = chunk_at(messages, impact_ts(dataset))
    back = 2 * REMEMBERED  # further back than remembered: stale when the stream goes on
    sent: list[m.AccelSamples] = []
    old = 0
    for i, chunk in enumerate(messages):
        sent.append(chunk)
        if back <= i < impact - 10:
            sent.append(messages[i - back])
            old += 1
        if i == impact - 10:
            sent.append(messages[i - REMEMBERED // 2])  # recent: remembered, a repeat
    assert old > REMEMBERED
    detector = FallDetector(shipped)
    decisions = feed(detector, sent)
    assert same(decisions, reference)
    assert len([d for d in decisions if d.alarm]) == 1
    assert detector.stale == old
