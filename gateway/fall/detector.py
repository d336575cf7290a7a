"""The streaming fall detector: one per wearable, fed the accelerometer chunks as the device sends them.

The gateway, the training and ``eldercare models eval-fall`` all run this class, so what is scored is what
runs. A chunk is ``(ts, hz, counts)`` as in :class:`eldercare.devices.messages.AccelSamples`. Rates that are
a multiple of 50 Hz are averaged down to 50 Hz in runs, as the training recordings were made; other rates
raise :class:`UnsupportedRateError`.

Order. A chunk that starts where the stream taken so far ends (within a tolerance, and less than half its own
length after it) continues the stream. A chunk seen before (the same time, rate and samples as one of the last
:data:`REMEMBERED` received: a device retrying, the home broker redelivering) is a repeat and is skipped. Others:

- A chunk that starts after a hole waits, with the chunks after it, for the hole to be filled. So chunks that
  come out of order (a wearable's buffer flushed late, a wearable on two links) are taken in their place and
  decide exactly what they would have decided in order, up to :data:`REORDER_MS` later. Once the chunks waiting
  reach :data:`REORDER_MS` past where the stream ends, the hole is a gap: a new stream starts at the first of
  them, which loses the context (a hole within the tolerance is bridged, as it always was). A chunk further
  ahead than that (a gap, a clock glitch) starts a new stream at once.
- A chunk that starts earlier than where the stream ends, among the chunks remembered but not one of them, was
  not sent again: the clock jumped back, and a new stream starts at it.
- A chunk from before the stream's start, or from further back than the chunks remembered, may be one sent
  again but no longer remembered, one that came too late to be put in its place, or a clock that jumped back
  further. It waits. Once such chunks go on from one another for :data:`REORDER_MS` (in any order, with holes
  shorter than that), the clock jumped back: a new stream starts at the first of them. As soon as a chunk
  continues the stream or comes after it (the stream goes on), they were stale: they are dropped and counted
  (:attr:`FallDetector.stale`), and the stream keeps its context. The stream's first chunk sent again, and a
  chunk too late for a hole the stream bridged, are stale at once (a new stream at the first would have the
  stream's name, and the store would mix the two streams' samples).

So a chunk that comes a little late costs nothing, one that comes later than that costs the gap it left and no
more, and one stamped far ahead or far behind (a clock glitch) costs what losing it costs. One stamped ahead
starts a stream, and the chunks after it start the stream again (a gap). One stamped behind is stale and leaves
a hole. (Before, a chunk that came before the one it follows reset the stream twice, and an old chunk sent again
reset it; earlier still, every chunk that started before the stream's end was skipped as a repeat, and a
wearable that sent one chunk stamped an hour ahead had its falls go undetected for that hour. Tests check each.)
:attr:`FallDetector.trusted_end_ts` is where the wearable's time is, for the gateway: one chunk stamped far
ahead does not move it once the right times come after it.

Results depend on the samples only, never on how they were cut into chunks (a test checks it).

Restarts. The gateway keeps each detector's state in its store, in the same commit as the chunk that changed
it (:meth:`FallDetector.checkpoint`: the few numbers of its state and the 50 Hz samples it took since the
last checkpoint; the store forgets samples the window no longer needs). After a restart
:meth:`FallDetector.restore` rebuilds the detector exactly as it was after the last stored chunk, so a fall
whose impact came before the restart and whose decision comes after it is decided as if the gateway had
never stopped (a test checks it), provided the device or the home broker sends again what the gateway had not
acknowledged, which both do. The digests of the chunks received last, and the chunks waiting, are in the
checkpoint, so what is sent again after a restart is still skipped as a repeat, and a chunk that comes out of
order across a restart is still taken in its place. The order rules above hold, restored or not. When the
store refuses the commit of a checkpoint, the caller says so (:meth:`FallDetector.not_stored`) and the next
checkpoint holds that chunk's samples again, so the stored window has no hole.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.model import FallModel

COUNTS_PER_G: Final = 256.0
KEEP: Final = ft.CONTEXT + ft.PEAK_SEARCH + ft.POST + 1
SAMPLE_MS: Final = 1000.0 / ft.HZ
# Chunks remembered (by a digest of their time, rate and samples) to tell a chunk sent again from a clock that
# jumped back. What comes again is what the gateway took but had not acknowledged: the home broker's messages
# in flight (20 by default in Mosquitto, shared by every device of the home), or an HTTP device's last post.
# 64 chunks are 32 s of 0.5 s chunks; their digests take 684 bytes of the checkpoint's state (base64). A chunk
# found stale is forgotten (:meth:`FallDetector._forget`): old chunks sent again keep no place from recent ones.
REMEMBERED: Final = 64
DIGEST_BYTES: Final = 8
# How far out of order chunks may come and still be taken in their place (a wearable's buffer flushed late, a
# wearable on two links): chunks after a hole in the stream wait for it until they reach this far past where
# the stream ended; then the hole is a gap. And how long chunks from before the stream must go on from one another
# to be trusted as a clock that jumped back, not stale ones. 2 s are 4 chunks of 0.5 s; a decision that waits for
# a hole comes up to that much later (a fall's comes 1.2 s after the impact when nothing waits).
REORDER_MS: Final = 2000
WAITING: Final = 16  # and at most this many chunks wait, either way (many tiny ones: the state stays small)
HOLES: Final = 4  # holes of the stream within the tolerance, bridged, remembered to know a chunk too late for them


class UnsupportedRateError(ValueError):
    def __init__(self, hz: int) -> None:
        super().__init__(f"accelerometer at {hz} Hz: fall detection needs a multiple of {ft.HZ} Hz")
        self.hz = hz


@dataclass(frozen=True, slots=True)
class Decision:
    """The detector's verdict on one candidate peak."""

    peak_index: int  # sample number in the stream (at 50 Hz), from the stream's start
    peak_ts: int  # ms, the impact
    decided_ts: int  # ms, time of the last sample of the chunk that completed the candidate
    probability: float
    alarm: bool
    features: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a restart needs of a detector, as of the last chunk it took."""

    stream: int  # ms of the stream's sample 0, naming the stream; samples of an older stream are not needed
    first: int  # stream index of samples[0]
    samples: NDArray[np.float32]  # (n, 3) g at 50 Hz, taken since the previous checkpoint
    keep_from: int  # samples before this stream index are no longer needed
    state: bytes  # the rest of the state (JSON)


@dataclass(frozen=True, slots=True, eq=False)
class _Chunk:
    """A chunk as the device sent it: its samples in g at its own rate."""

    ts: int
    hz: int
    raw: NDArray[np.float32]  # (n, 3)
    digest: bytes

    @property
    def duration(self) -> float:
        return len(self.raw) * (1000.0 / self.hz)

    @property
    def end(self) -> float:
        """Where the next chunk should start (ms)."""
        return self.ts + self.duration

    @property
    def last_ts(self) -> int:
        """The time of its last sample (ms)."""
        return int(self.ts + (len(self.raw) - 1) * (1000.0 / self.hz))

    def encode(self) -> list[int | str]:
        return [self.ts, self.hz, base64.b64encode(self.raw.astype("<f4").tobytes()).decode()]

    @classmethod
    def decode(cls, row: list[Any]) -> _Chunk:
        ts, hz, data = row
        if not isinstance(ts, int) or not isinstance(hz, int) or hz <= 0 or hz % ft.HZ:
            raise ValueError(f"not a stored chunk: {ts!r}, {hz!r}")
        raw = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4").astype(np.float32).reshape(-1, 3)
        return cls(ts, hz, raw, _digest(ts, hz, raw))


class FallDetector:
    """The state of one device's stream. Not thread-safe; the gateway keeps one per wearable.

    Without a model (training) every candidate is returned with its features and no alarm.
    """

    def __init__(self, model: FallModel | None, *, suppress_s: float = 10.0, tolerance_ms: int = 200) -> None:
        self._model = model
        self._suppress = round(suppress_s * ft.HZ)
        self._tolerance_ms = tolerance_ms
        self._seen: deque[bytes] = deque(maxlen=REMEMBERED)  # digests of the last chunks received, of any stream
        self._ahead: list[_Chunk] = []  # chunks after a hole in the stream, waiting for it (by time)
        self._behind: list[_Chunk] = []  # chunks from before the stream (by time): stale, or a clock jumped back
        self._confirmed_end: float | None = None  # where the last stream a second chunk continued ends
        self.stale = 0  # chunks dropped as stale since the detector was made (not kept in the checkpoint)
        self._reset(None)

    def _reset(self, start_ts: float | None) -> None:
        self._t0: float | None = start_ts  # ms of stream sample 0
        self._xyz: NDArray[np.float32] = np.empty((0, 3), dtype=np.float32)
        self._mag: NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._start = 0  # stream index of self._xyz[0]
        self._count = 0  # samples seen in this stream (at 50 Hz)
        self._raw_next_ts: float | None = None  # where the next raw chunk should start
        self._holes: deque[tuple[float, float]] = deque(maxlen=HOLES)  # (from, to) ms, holes the stream bridged
        self._carry: NDArray[np.float32] = np.empty((0, 3), dtype=np.float32)  # raw samples not yet averaged
        self._scan_from = 0
        self._crossing: int | None = None
        self._peak: int | None = None
        self._quiet_until = 0  # no alarm for peaks before this stream index
        self._saved = 0  # samples before this stream index are in the last checkpoint
        self._changed = False  # since the last checkpoint

    def feed(self, ts: int, hz: int, counts: NDArray[np.integer[Any]] | list[tuple[int, int, int]]) -> list[Decision]:
        """Take one chunk; return the decisions it completed (alarms and, for training, the rest).

        A chunk that waits (see the module) decides nothing yet: the decisions of the chunks that waited come with
        the chunk that ends the wait, each with its own ``decided_ts``, exactly as if they had come in order.
        """
        if hz % ft.HZ:
            raise UnsupportedRateError(hz)
        raw = np.asarray(counts, dtype=np.float32).reshape(-1, 3) / np.float32(COUNTS_PER_G)
        if len(raw) == 0:
            return []  # nothing to take (the device contract has no such chunk)
        digest = _digest(ts, hz, raw)
        if digest in self._seen:
            return []  # a repeat of what was already received
        self._seen.append(digest)
        return self._arrive(_Chunk(ts, hz, raw, digest))

    def _arrive(self, chunk: _Chunk) -> list[Decision]:
        """Take ``chunk`` in its place, let it wait, or drop it as stale (see the module)."""
        end = self._raw_next_ts
        if end is None or self._t0 is None:
            return self._new_stream(chunk)
        if self._continues(chunk, end):
            self._drop_behind()  # the stream goes on
            return self._take(chunk) + self._retry_ahead()
        if chunk.ts > end:  # after a hole: it waits for the hole to be filled, or is a gap
            self._drop_behind()
            bisect.insort(self._ahead, chunk, key=lambda c: c.ts)
            self._changed = True
            if max(c.end for c in self._ahead) - end > REORDER_MS or len(self._ahead) > WAITING:
                return self._give_up()
            return []
        if chunk.ts == round(self._t0) or any(a - self._tolerance_ms <= chunk.ts < b for a, b in self._holes):
            # The stream's first chunk again, no longer remembered (never a new stream: it would have the stream's
            # name, and the store would mix the two streams' samples), or one that came too late for the hole the
            # stream bridged: stale.
            self.stale += 1
            self._forget([chunk])
            return []
        if chunk.ts > self._t0 and end - chunk.ts <= REMEMBERED * chunk.duration:
            # Within the chunks remembered and not one of them, so not sent again: the clock jumped back.
            self._drop_behind()
            return self._give_up() + self._new_stream(chunk)
        # Before the stream, or further back than the chunks remembered: stale, or a clock that jumped back.
        bisect.insort(self._behind, chunk, key=lambda c: c.ts)
        self._changed = True
        return self._settle_behind()

    def _continues(self, chunk: _Chunk, end: float) -> bool:
        """Whether ``chunk`` starts where a stream ending at ``end`` should go on: within the tolerance, and before
        half its own length (a hole that long is a chunk missing, not a clock's jitter: it waits to be filled)."""
        offset = chunk.ts - end
        return -self._tolerance_ms <= offset <= self._tolerance_ms and (offset <= 0 or offset < chunk.duration / 2)

    def _take(self, chunk: _Chunk) -> list[Decision]:
        """Append ``chunk``, which continues (or starts) the stream, and decide what it completes."""
        if self._raw_next_ts is not None:
            self._confirmed_end = chunk.end
        self._raw_next_ts = chunk.end
        self._changed = True
        raw = chunk.raw
        factor = chunk.hz // ft.HZ
        if factor > 1:
            raw = np.concatenate([self._carry, raw])
            whole = len(raw) // factor * factor
            self._carry = raw[whole:]
            raw = raw[:whole].reshape(-1, factor, 3).mean(axis=1, dtype=np.float32)
        if len(raw) == 0:
            return []
        self._append(raw)
        decisions = self._scan(decided_ts=chunk.last_ts)
        self._trim()
        return decisions

    def _new_stream(self, chunk: _Chunk) -> list[Decision]:
        self._reset(float(chunk.ts))
        return self._take(chunk)

    def _retry_ahead(self) -> list[Decision]:
        """After a chunk was taken: the chunks waiting that now continue the stream are taken, in their place."""
        waiting, self._ahead = self._ahead, []
        return [d for chunk in waiting for d in self._arrive(chunk)]

    def _give_up(self) -> list[Decision]:
        """The hole the chunks waiting are after is not filled in time: a gap, a new stream from the first of them
        (or, a hole within the tolerance, bridged as it always was)."""
        if not self._ahead:
            return []
        waiting, self._ahead = self._ahead, []
        first = waiting[0]
        assert self._raw_next_ts is not None
        bridged = abs(first.ts - self._raw_next_ts) <= self._tolerance_ms
        if bridged:
            self._holes.append((self._raw_next_ts, float(first.ts)))
        decisions = self._take(first) if bridged else self._new_stream(first)
        return decisions + [d for chunk in waiting[1:] for d in self._arrive(chunk)]

    @property
    def waiting(self) -> bool:
        """Whether chunks wait behind a hole in the stream (see :meth:`release`)."""
        return bool(self._ahead)

    def release(self) -> list[Decision]:
        """The wearable has gone quiet with chunks waiting behind a hole: the hole is a gap now, as if the chunks after
        them had come (:meth:`_give_up`), and what they complete is decided. Without this, a wearable that stops
        sending after the chunks of a fall (a motion-triggered one lying still, one broken in the fall) had them wait
        for good, and the fall, which a new stream at them decides, was never raised."""
        return self._give_up()

    def _settle_behind(self) -> list[Decision]:
        """The chunks from before the stream that go on from one another (holes up to :data:`REORDER_MS`, in any
        order), the latest of them, span :data:`REORDER_MS`: the clock jumped back, and a new stream starts at them
        (the others were stale). Too many waiting: the oldest are stale."""
        waiting = self._behind
        first = len(waiting) - 1
        while first > 0 and waiting[first].ts - max(c.end for c in waiting[:first]) <= REORDER_MS:
            first -= 1
        run = waiting[first:]
        if len(run) > 1 and (max(c.end for c in run) - run[0].ts >= REORDER_MS or len(run) > WAITING):
            self.stale += first
            self._forget(waiting[:first])
            self._behind = []
            decisions = self._give_up()  # what waited after a hole of the stream before the jump
            decisions += self._new_stream(run[0])
            return decisions + [d for chunk in run[1:] for d in self._arrive(chunk)]
        if len(waiting) > WAITING:
            self.stale += len(waiting) - WAITING
            self._forget(waiting[: len(waiting) - WAITING])
            del waiting[: len(waiting) - WAITING]
        return []

    def _drop_behind(self) -> None:
        """The stream goes on: the chunks from before it that wait were stale."""
        if self._behind:
            self.stale += len(self._behind)
            self._forget(self._behind)
            self._behind = []
            self._changed = True

    def _forget(self, stale: Sequence[_Chunk]) -> None:
        """Stale chunks' digests out of those remembered, which are for telling the recent chunks sent again from a
        clock that jumped back: a run of old chunks sent again had pushed them out, and a recent one sent again after
        it was taken for a clock that jumped back, which started the stream again (and lost a fall's context). A
        stale chunk sent again is stale again without its digest (it is as far behind as it was)."""
        gone = {chunk.digest for chunk in stale}
        self._seen = deque((d for d in self._seen if d not in gone), maxlen=REMEMBERED)

    @property
    def end_ts(self) -> float | None:
        """Where the stream taken so far ends (ms): the time the next chunk should start at; None before any."""
        return self._raw_next_ts

    @property
    def trusted_end_ts(self) -> float | None:
        """Where the wearable's time is, for the gateway (ms): where the stream ends, except while chunks from
        before the stream wait to be told stale from a clock that jumped back. The stream may then be one chunk
        stamped far ahead (a clock glitch, the right times coming after it), and its end is not trusted: this is
        where the last stream a second chunk continued ends. None before there is either."""
        return self._confirmed_end if self._behind else self._raw_next_ts

    def checkpoint(self) -> Checkpoint | None:
        """The state to store with the chunk just fed; None if that chunk changed nothing (a repeat, or a stale
        chunk dropped at once)."""
        if not self._changed or self._t0 is None:
            return None
        first = max(self._saved, self._start)
        samples = self._xyz[first - self._start :].copy()
        self._saved = self._count
        self._changed = False
        state = {
            "window": ft.window_spec(),
            "t0": self._t0,
            "start": self._start,
            "count": self._count,
            "raw_next_ts": self._raw_next_ts,
            "carry": self._carry.tolist(),
            "scan_from": self._scan_from,
            "crossing": self._crossing,
            "peak": self._peak,
            "quiet_until": self._quiet_until,
            "seen": base64.b64encode(b"".join(self._seen)).decode(),
            "ahead": [c.encode() for c in self._ahead],
            "behind": [c.encode() for c in self._behind],
            "confirmed_end": self._confirmed_end,
            "holes": list(self._holes),
        }
        return Checkpoint(round(self._t0), first, samples, self._start, json.dumps(state).encode())

    def not_stored(self, *, stream: int, first: int) -> None:
        """The checkpoint of ``stream`` from sample ``first`` was not stored (the store refused its commit): the
        next checkpoint holds those samples again, and is made even if the next chunk is a repeat (the device
        sending the refused chunk again)."""
        if self._t0 is not None and round(self._t0) == stream:
            self._saved = min(self._saved, first)
            self._changed = True

    @classmethod
    def restore(
        cls,
        model: FallModel | None,
        state: bytes,
        samples: Sequence[tuple[int, int, NDArray[np.float32]]],
        *,
        suppress_s: float = 10.0,
        tolerance_ms: int = 200,
    ) -> FallDetector | None:
        """A detector as it was at its last checkpoint, from the stored ``state`` and ``samples``.

        ``samples`` are the stored ``(stream, first, samples)`` of the device, in any order. None when they do
        not rebuild the window exactly (another stream, a hole, another window specification): the caller
        starts afresh, as after a gap.
        """
        try:
            saved = json.loads(state)
            if saved.get("window") != ft.window_spec():
                return None
            t0, start, count = float(saved["t0"]), int(saved["start"]), int(saved["count"])
            rows = sorted(((first, xyz) for stream, first, xyz in samples if stream == round(t0)), key=lambda r: r[0])
            parts, at = [], start
            for first, xyz in rows:
                if first + len(xyz) <= at:
                    continue
                if first > at:
                    return None  # a hole
                parts.append(xyz[at - first :])
                at = first + len(xyz)
            if at != count:
                return None
            detector = cls(model, suppress_s=suppress_s, tolerance_ms=tolerance_ms)
            detector._reset(t0)
            window = np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.float32)
            detector._xyz = window.astype(np.float32).reshape(-1, 3)
            detector._mag = ft.magnitude(detector._xyz)
            detector._start, detector._count, detector._saved = start, count, count
            detector._raw_next_ts = float(saved["raw_next_ts"])
            detector._carry = np.array(saved["carry"], dtype=np.float32).reshape(-1, 3)
            detector._scan_from = int(saved["scan_from"])
            detector._crossing = None if saved["crossing"] is None else int(saved["crossing"])
            detector._peak = None if saved["peak"] is None else int(saved["peak"])
            detector._quiet_until = int(saved["quiet_until"])
            seen = base64.b64decode(saved.get("seen", ""), validate=True)  # absent: a state from before it was kept
            if len(seen) % DIGEST_BYTES:
                return None
            detector._seen.extend(seen[i : i + DIGEST_BYTES] for i in range(0, len(seen), DIGEST_BYTES))
            # Absent: a state from before chunks waited, and before the confirmed end was kept (trusted then).
            detector._ahead = [_Chunk.decode(row) for row in saved.get("ahead", [])]
            detector._behind = [_Chunk.decode(row) for row in saved.get("behind", [])]
            confirmed = saved.get("confirmed_end", saved["raw_next_ts"])
            detector._confirmed_end = None if confirmed is None else float(confirmed)
            detector._holes.extend((float(a), float(b)) for a, b in saved.get("holes", []))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return detector

    def _append(self, samples: NDArray[np.float32]) -> None:
        self._xyz = np.concatenate([self._xyz, samples])
        self._mag = np.concatenate([self._mag, ft.magnitude(samples)])
        self._count += len(samples)

    def _trim(self) -> None:
        """Drop samples no future decision can look at (those before the next peak's context)."""
        pending = self._peak if self._peak is not None else self._crossing
        first_needed = (pending if pending is not None else min(self._scan_from, self._count)) - ft.CONTEXT
        excess = min(first_needed - self._start, len(self._xyz) - KEEP)
        if excess > 0:
            self._xyz = self._xyz[excess:]
            self._mag = self._mag[excess:]
            self._start += excess

    def _ts_of(self, index: int) -> int:
        assert self._t0 is not None
        return round(self._t0 + index * SAMPLE_MS)

    def _scan(self, *, decided_ts: int) -> list[Decision]:
        decisions: list[Decision] = []
        while True:
            if self._peak is None:
                if self._crossing is None:
                    begin = max(self._scan_from, self._start)
                    above = np.flatnonzero(self._mag[begin - self._start :] >= ft.TRIGGER_G)
                    if len(above) == 0:
                        self._scan_from = self._count
                        return decisions
                    self._crossing = begin + int(above[0])
                if self._count < self._crossing + ft.PEAK_SEARCH:
                    return decisions
                offset = self._crossing - self._start
                self._peak = self._crossing + int(np.argmax(self._mag[offset : offset + ft.PEAK_SEARCH]))
                self._crossing = None
            peak = self._peak
            if self._count < peak + ft.POST + 1:
                return decisions
            decisions.append(self._decide(peak, decided_ts))
            self._peak = None
            self._scan_from = peak + ft.REFRACTORY

    def _decide(self, peak: int, decided_ts: int) -> Decision:
        lo = max(self._start, peak - ft.CONTEXT) - self._start
        hi = peak + ft.POST + 1 - self._start
        x = ft.features(self._xyz[lo:hi], self._mag[lo:hi], peak - self._start - lo)
        if self._model is None:
            return Decision(peak, self._ts_of(peak), decided_ts, float("nan"), False, x)
        probability = self._model.probability(x)
        alarm = probability >= self._model.threshold and peak >= self._quiet_until
        if alarm:
            self._quiet_until = peak + self._suppress
        return Decision(peak, self._ts_of(peak), decided_ts, probability, alarm, x)


def _digest(ts: int, hz: int, raw: NDArray[np.float32]) -> bytes:
    """What tells a chunk sent again from another one: its time, its rate and its samples."""
    return hashlib.blake2b(
        struct.pack("<qq", ts, hz) + raw.astype("<f4", copy=False).tobytes(), digest_size=DIGEST_BYTES
    ).digest()


def feed_recording(
    detector: FallDetector, counts: NDArray[np.int16], *, chunk: int | None, hz: int = ft.HZ, t0: int = 0
) -> list[Decision]:
    """Stream a whole recording through ``detector`` in chunks of ``chunk`` samples (all at once if None)."""
    step = len(counts) if chunk is None else chunk
    decisions: list[Decision] = []
    for begin in range(0, len(counts), max(1, step)):
        ts = t0 + round(begin * 1000 / hz)
        decisions.extend(detector.feed(ts, hz, counts[begin : begin + step]))
    return decisions
