"""The streaming fall detector: one per wearable, fed the accelerometer chunks as the device sends them.

The gateway, the training and ``eldercare models eval-fall`` all run this class, so what is scored is what
runs. A chunk is ``(ts, hz, counts)`` as in :class:`eldercare.devices.messages.AccelSamples`. Rates that are
a multiple of 50 Hz are averaged down to 50 Hz in runs, as the training recordings were made; other rates
raise :class:`UnsupportedRateError`. A chunk that starts where the last ended (within a tolerance) continues
the stream. A chunk seen before (the same time, rate and samples as one of the last :data:`REMEMBERED` taken: a
device retrying, the home broker redelivering) is a repeat and is skipped. Any other chunk begins a new stream,
which loses the context: one that starts later (a gap), and one that starts earlier (a clock that jumped back).
So one chunk stamped far ahead or far behind (a clock glitch) costs what a gap costs: the stream starts again at
the chunk after it. Before, every chunk that started earlier than the stream's end was skipped as a repeat, and a
wearable that sent one chunk stamped an hour ahead had its falls go undetected for that hour (a test checks it).

Results depend on the samples only, never on how they were cut into chunks (a test checks it).

Restarts. The gateway keeps each detector's state in its store, in the same commit as the chunk that changed
it (:meth:`FallDetector.checkpoint`: the few numbers of its state and the 50 Hz samples it took since the
last checkpoint; the store forgets samples the window no longer needs). After a restart
:meth:`FallDetector.restore` rebuilds the detector exactly as it was after the last stored chunk, so a fall
whose impact came before the restart and whose decision comes after it is decided as if the gateway had
never stopped (a test checks it), provided the device or the home broker sends again what the gateway had not
acknowledged, which both do. The digests of the chunks taken last are in the checkpoint, so what is sent again
after a restart is still skipped as a repeat. A chunk that does not continue the stream starts a new stream,
restored or not. When the store refuses the commit of a checkpoint, the caller says so
(:meth:`FallDetector.not_stored`) and the next checkpoint holds that chunk's samples again, so the stored
window has no hole.
"""

from __future__ import annotations

import base64
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
# 64 chunks are 32 s of 0.5 s chunks; their digests take 684 bytes of the checkpoint's state (base64).
REMEMBERED: Final = 64
DIGEST_BYTES: Final = 8


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


class FallDetector:
    """The state of one device's stream. Not thread-safe; the gateway keeps one per wearable.

    Without a model (training) every candidate is returned with its features and no alarm.
    """

    def __init__(self, model: FallModel | None, *, suppress_s: float = 10.0, tolerance_ms: int = 200) -> None:
        self._model = model
        self._suppress = round(suppress_s * ft.HZ)
        self._tolerance_ms = tolerance_ms
        self._seen: deque[bytes] = deque(maxlen=REMEMBERED)  # digests of the last chunks taken, of any stream
        self._reset(None)

    def _reset(self, start_ts: float | None) -> None:
        self._t0: float | None = start_ts  # ms of stream sample 0
        self._xyz: NDArray[np.float32] = np.empty((0, 3), dtype=np.float32)
        self._mag: NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._start = 0  # stream index of self._xyz[0]
        self._count = 0  # samples seen in this stream (at 50 Hz)
        self._raw_next_ts: float | None = None  # where the next raw chunk should start
        self._carry: NDArray[np.float32] = np.empty((0, 3), dtype=np.float32)  # raw samples not yet averaged
        self._scan_from = 0
        self._crossing: int | None = None
        self._peak: int | None = None
        self._quiet_until = 0  # no alarm for peaks before this stream index
        self._saved = 0  # samples before this stream index are in the last checkpoint
        self._changed = False  # since the last checkpoint

    def feed(self, ts: int, hz: int, counts: NDArray[np.integer[Any]] | list[tuple[int, int, int]]) -> list[Decision]:
        """Take one chunk; return the decisions it completed (alarms and, for training, the rest)."""
        if hz % ft.HZ:
            raise UnsupportedRateError(hz)
        factor = hz // ft.HZ
        raw = np.asarray(counts, dtype=np.float32).reshape(-1, 3) / np.float32(COUNTS_PER_G)
        raw_ms = 1000.0 / hz
        last_ts = int(ts + (len(raw) - 1) * raw_ms)
        digest = _digest(ts, hz, raw)
        if digest in self._seen:
            return []  # a repeat of what was already taken
        if self._raw_next_ts is None or abs(ts - self._raw_next_ts) > self._tolerance_ms:
            if self._t0 is not None and ts == round(self._t0):
                # The stream's first chunk again, no longer remembered. (Not a new stream: it would have the same
                # name, and the store would mix the two streams' samples.)
                return []
            self._reset(float(ts))  # a gap, or a clock that jumped back: a new stream
        self._seen.append(digest)
        self._changed = True
        self._raw_next_ts = ts + len(raw) * raw_ms
        if factor > 1:
            raw = np.concatenate([self._carry, raw])
            whole = len(raw) // factor * factor
            self._carry = raw[whole:]
            raw = raw[:whole].reshape(-1, factor, 3).mean(axis=1, dtype=np.float32)
        if len(raw) == 0:
            return []
        self._append(raw)
        decisions = self._scan(decided_ts=last_ts)
        self._trim()
        return decisions

    @property
    def end_ts(self) -> float | None:
        """Where the stream taken so far ends (ms): the time the next chunk should start at; None before any."""
        return self._raw_next_ts

    def checkpoint(self) -> Checkpoint | None:
        """The state to store with the chunk just fed; None if that chunk changed nothing (a repeat)."""
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
