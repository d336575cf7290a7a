"""The streaming fall detector: one per wearable, fed the accelerometer chunks as the device sends them.

The gateway, the training and ``eldercare models eval-fall`` all run this class, so what is scored is what
runs. A chunk is ``(ts, hz, counts)`` as in :class:`eldercare.devices.messages.AccelSamples`. Rates that are
a multiple of 50 Hz are averaged down to 50 Hz in runs, as the training recordings were made; other rates
raise :class:`UnsupportedRateError`. A chunk that starts where the last ended (within a tolerance) continues
the stream; one that starts later begins a new stream (a gap loses the context); one that starts earlier
is a repeat and is skipped.

Results depend on the samples only, never on how they were cut into chunks (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.model import FallModel

COUNTS_PER_G: Final = 256.0
KEEP: Final = ft.CONTEXT + ft.PEAK_SEARCH + ft.POST + 1
SAMPLE_MS: Final = 1000.0 / ft.HZ


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


class FallDetector:
    """The state of one device's stream. Not thread-safe; the gateway keeps one per wearable.

    Without a model (training) every candidate is returned with its features and no alarm.
    """

    def __init__(self, model: FallModel | None, *, suppress_s: float = 10.0, tolerance_ms: int = 200) -> None:
        self._model = model
        self._suppress = round(suppress_s * ft.HZ)
        self._tolerance_ms = tolerance_ms
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

    def feed(self, ts: int, hz: int, counts: NDArray[np.integer[Any]] | list[tuple[int, int, int]]) -> list[Decision]:
        """Take one chunk; return the decisions it completed (alarms and, for training, the rest)."""
        if hz % ft.HZ:
            raise UnsupportedRateError(hz)
        factor = hz // ft.HZ
        raw = np.asarray(counts, dtype=np.float32).reshape(-1, 3) / np.float32(COUNTS_PER_G)
        raw_ms = 1000.0 / hz
        last_ts = int(ts + (len(raw) - 1) * raw_ms)
        if self._raw_next_ts is None or ts > self._raw_next_ts + self._tolerance_ms:
            self._reset(float(ts))
        elif ts < self._raw_next_ts - self._tolerance_ms:
            return []  # a repeat of what was already seen
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
