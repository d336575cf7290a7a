"""From a device's payload to messages on disk: map, check the device, supervise, detect falls, store.

Sources hand each payload to :meth:`Pipeline.submit` and acknowledge the device only when the returned
future completes (the commit holding the messages is on disk). Messages the gateway makes itself (falls
detected on a wearable's stream, device faults) are stored in the same commit as the data that caused
them. After the commit, alarms go to the local alarm page and command, and the uplink is woken.

Bad input never stops good input: a payload that cannot be mapped, or a message from a device the gateway
does not serve, is counted (``unmapped``) and reported, and the other messages of the same payload are
stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from eldercare.devices import messages as m
from eldercare.gateway.config import DeviceClass
from eldercare.gateway.errors import GatewayError, MappingError, UnknownDeviceError
from eldercare.gateway.fall.detector import FallDetector, UnsupportedRateError
from eldercare.gateway.fall.model import FallModel
from eldercare.gateway.local import AlarmHub
from eldercare.gateway.mapping import VendorMapping
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, DetectorState, Item, Lane, SavedSamples, Stored
from eldercare.gateway.supervision import DeviceBook, Supervisor
from eldercare.gateway.worker import StoreWorker

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Delivery:
    source: str
    vendor: str
    payload: bytes
    topic: str | None = None
    received_ms: int = field(default_factory=now_ms)


Problem = MappingError | UnknownDeviceError


SAMPLE_DTYPE = np.dtype("<f4")


class FallService:
    """One streaming detector per wearable, resumed from the store's checkpoints after a restart."""

    def __init__(
        self,
        model: FallModel,
        *,
        suppress_s: float,
        saved: Mapping[str, tuple[bytes, list[SavedSamples]]] | None = None,
    ) -> None:
        self.model = model
        self._suppress_s = suppress_s
        self._detectors: dict[str, FallDetector] = {}
        self._carried: dict[str, list[m.Fall]] = {}
        self.restored = 0
        for dev, (state, rows) in (saved or {}).items():
            samples = [(r.stream, r.first, np.frombuffer(r.samples, dtype=SAMPLE_DTYPE).reshape(-1, 3)) for r in rows]
            detector = FallDetector.restore(model, state, samples, suppress_s=suppress_s)
            if detector is None:
                log.warning("fall detector of %s: its stored state does not fit; starting afresh", dev)
                continue
            self._detectors[dev] = detector
            self.restored += 1

    def feed(self, message: m.AccelSamples) -> list[m.Fall]:
        """Falls completed by ``message``; see :meth:`checkpoint` for what to store with it."""
        detector = self._detectors.get(message.dev)
        if detector is None:
            detector = self._detectors[message.dev] = FallDetector(self.model, suppress_s=self._suppress_s)
        falls = []
        for decision in detector.feed(message.ts, message.hz, message.xyz):
            if decision.alarm:
                log.info("fall on %s at %d (p=%.2f)", message.dev, decision.peak_ts, decision.probability)
                falls.append(
                    m.Fall(
                        dev=message.dev,
                        ts=decision.peak_ts,
                        source="wearable",
                        confidence=round(decision.probability, 3),
                    )
                )
        return falls

    def carry(self, falls: Sequence[m.Fall]) -> None:
        """Falls whose commit the store refused: the detector has taken their samples and will not decide them
        again when the device sends the chunk once more, so they go with that device's next chunk instead."""
        for fall in falls:
            self._carried.setdefault(fall.dev, []).append(fall)

    def take_carried(self, dev: str) -> list[m.Fall]:
        return self._carried.pop(dev, [])

    def checkpoint(self, dev: str) -> DetectorState | None:
        """The device's detector state to store in the same commit as the chunk just fed."""
        detector = self._detectors.get(dev)
        point = detector.checkpoint() if detector is not None else None
        if point is None:
            return None
        return DetectorState(
            dev=dev,
            stream=point.stream,
            first=point.first,
            samples=point.samples.astype(SAMPLE_DTYPE).tobytes(),
            n_samples=len(point.samples),
            keep_from=point.keep_from,
            state=point.state,
        )


def _item(message: m.DeviceMessage) -> Item:
    lane = Lane.ALARM if m.is_alarm_class(message) else Lane.TELEMETRY
    return Item(lane, m.encode(message), message)


class Pipeline:
    def __init__(
        self,
        *,
        mappings: Mapping[str, VendorMapping],
        book: DeviceBook,
        supervisor: Supervisor,
        falls: FallService | None,
        forward_samples: bool,
        worker: StoreWorker,
        stats: Stats,
        hub: AlarmHub,
        on_stored: Callable[[], None],
    ) -> None:
        self._mappings = mappings
        self._book = book
        self._supervisor = supervisor
        self._falls = falls
        self._forward_samples = forward_samples
        self._worker = worker
        self._stats = stats
        self._hub = hub
        self._on_stored = on_stored

    def prepare(self, delivery: Delivery) -> tuple[Batch, list[Problem]]:
        """Map the payload and derive what follows from it; nothing is stored yet."""
        self._stats.deliveries += 1
        mapping = self._mappings.get(delivery.vendor)
        if mapping is None:
            problem = MappingError(delivery.vendor, "no mapping for this vendor")
            self._count([problem])
            return Batch(), [problem]
        result = mapping.map(delivery.payload, received_ms=delivery.received_ms, topic=delivery.topic)
        problems: list[Problem] = list(result.problems)
        batch = Batch()
        now = time.monotonic()
        for mapped in result.messages:
            message = mapped.message
            device_class, new = self._book.resolve(message, mapped.device_class)
            if device_class is None:
                problems.append(UnknownDeviceError(message.dev))
                continue
            if new:
                batch.devices.append((message.dev, device_class.value))
            self._stats.devices_seen.add(message.dev)
            out: list[m.DeviceMessage] = [message]
            if isinstance(message, m.AccelSamples):
                out = self._accel(message, device_class, batch)
            out.extend(self._supervisor.observe(message, device_class, source=delivery.source, now=now))
            self._add(batch, out)
        self._count(problems)
        return batch, problems

    def _accel(self, message: m.AccelSamples, device_class: DeviceClass, batch: Batch) -> list[m.DeviceMessage]:
        out: list[m.DeviceMessage] = [message] if self._forward_samples else []
        if self._falls is None:
            return out
        try:
            falls = self._falls.feed(message)
        except UnsupportedRateError as exc:
            self._stats.error(f"{message.dev} ({device_class.value}): {exc}")
            return out
        state = self._falls.checkpoint(message.dev)
        if state is not None:
            batch.detectors.append(state)
        self._stats.falls += len(falls)
        return out + self._falls.take_carried(message.dev) + list(falls)

    @staticmethod
    def _add(batch: Batch, messages: list[m.DeviceMessage]) -> None:
        for message in messages:
            batch.items.append(_item(message))
            if isinstance(message, m.DeviceFault):
                batch.faults.append((message.dev, message.fault.value, message.active))

    def _count(self, problems: list[Problem]) -> None:
        if problems:
            self._stats.unmapped += len(problems)
            self._stats.error(str(problems[-1]))

    def submit_batch(self, batch: Batch) -> asyncio.Future[Stored]:
        future = self._worker.submit(batch)
        future.add_done_callback(partial(self._after_commit, batch))
        return future

    def submit(self, delivery: Delivery) -> tuple[asyncio.Future[Stored], list[Problem]]:
        batch, problems = self.prepare(delivery)
        return self.submit_batch(batch), problems

    def submit_own(self, messages: list[m.DeviceMessage]) -> asyncio.Future[Stored]:
        """Store messages the gateway made itself (supervision)."""
        batch = Batch()
        self._add(batch, messages)
        return self.submit_batch(batch)

    def _after_commit(self, batch: Batch, future: asyncio.Future[Stored]) -> None:
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            if self._falls is not None:  # the device sends its chunk again; the fall goes with it then
                self._falls.carry([i.message for i in batch.items if isinstance(i.message, m.Fall)])
            if exc is not None:
                self._stats.refused += 1
                if isinstance(exc, GatewayError | OSError):
                    self._stats.error(f"not stored, left with the device: {exc}")
            return
        stored = future.result()
        self._stats.accepted += len(stored.accepted)
        self._stats.repeats += stored.repeats
        alarms = [i.message for i in stored.accepted if i.lane is Lane.ALARM and i.message is not None]
        if alarms:
            self._hub.publish(alarms)
        if stored.accepted:
            self._on_stored()
