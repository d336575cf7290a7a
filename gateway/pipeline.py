"""From a device's payload to messages on disk: map, check the device, supervise, detect falls, store.

Sources hand each payload to :meth:`Pipeline.submit` and acknowledge the device only when the returned
future completes (the commit holding the messages is on disk). Messages the gateway makes itself (falls
detected on a wearable's stream, device faults) are stored in the same commit as the data that caused
them. After the commit, alarms go to the local alarm page and command, and the uplink is woken. An alarm the
store refuses, or has not taken within :data:`UNSTORED_AFTER_S`, goes to the local page and command at once, not
stored yet (the device sends it again until it is; the hub shows it once, see :mod:`eldercare.gateway.local`).

Bad input never stops good input: a payload that cannot be mapped, or a message from a device the gateway
does not serve, is counted (``unmapped``) and reported, and the other messages of the same payload are
stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Container, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import numpy as np

from eldercare.devices import messages as m
from eldercare.gateway.carried import CarriedFile
from eldercare.gateway.config import DeviceClass
from eldercare.gateway.errors import GatewayError, MappingError, UnknownDeviceError
from eldercare.gateway.fall.detector import Decision, FallDetector, UnsupportedRateError
from eldercare.gateway.fall.model import FallModel
from eldercare.gateway.local import AlarmHub, LocalAlarm
from eldercare.gateway.mapping import VendorMapping
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, DetectorState, Item, Lane, SavedSamples, Stored
from eldercare.gateway.supervision import DeviceBook, Supervisor
from eldercare.gateway.worker import StoreWorker

log = logging.getLogger(__name__)


QUIET_RELEASE_S: Final = 2.0  # a wearable quiet this long has the chunks it left waiting behind a hole decided


def _falls(dev: str, decisions: list[Decision]) -> list[m.Fall]:
    """The falls among a detector's decisions, as the messages the gateway stores."""
    falls = []
    for decision in decisions:
        if decision.alarm:
            log.info("fall on %s at %d (p=%.2f)", dev, decision.peak_ts, decision.probability)
            falls.append(
                m.Fall(dev=dev, ts=decision.peak_ts, source="wearable", confidence=round(decision.probability, 3))
            )
    return falls


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
PRUNE_EVERY_S: Final = 60.0  # how often FallService looks for detectors to forget (a pass over them all)
CARRIED_RETRY_S: Final = 1.0  # how soon what the gateway made in a refused commit is offered again on its own
# An alarm whose commit takes longer than this is shown locally before it is on disk. Commits take milliseconds
# on a good disk and up to a few hundred on a slow SD card (bench/gateway_load.py prints them); past this, the
# disk is in trouble and the nurse station must not wait for it.
UNSTORED_AFTER_S: Final = 0.5


class FallService:
    """One streaming detector per wearable, resumed from the store's checkpoints after a restart.

    A wearable's detector is forgotten (in memory, and in the store through :meth:`take_forgotten`) once the
    wearable has been silent for ``forget_after_s`` both in data time (its stream ends that long before the
    newest stream of any wearable held) and in the gateway's running time (no chunk from it that long, counted
    from its last chunk or from the gateway's start). Data time alone would let one wearable with a clock far
    ahead reset every other detector; running time alone would forget, after a long outage of the gateway or of
    a home broker, the detectors of wearables whose backlog is still to come and continues their streams. Data
    time is worked out afresh at each pass, from the streams as their detectors trust them
    (:attr:`FallDetector.trusted_end_ts`): kept as the newest ever seen, one chunk stamped far ahead (a clock
    glitch) moved it on for good, and left running time alone to decide until a restart.
    A stored detector is forgotten at start when it cannot be restored, or when its wearable is not among the
    ``served`` devices (no longer configured): nothing would ever feed it.
    """

    def __init__(
        self,
        model: FallModel,
        *,
        suppress_s: float,
        forget_after_s: float = 86_400.0,
        saved: Mapping[str, tuple[bytes, list[SavedSamples]]] | None = None,
        served: Container[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self._suppress_s = suppress_s
        self._forget_after_s = forget_after_s
        self._clock = clock
        self._detectors: dict[str, FallDetector] = {}
        self._fed: dict[str, float] = {}  # clock of each detector's last chunk (or of the start, if restored)
        self._forget: set[str] = set()  # wearables whose stored state is to be deleted
        self._next_prune = started = clock()
        self.restored = 0
        self.stale = 0  # chunks the detectors dropped as stale since the start (FallDetector.stale)
        for dev, (state, rows) in (saved or {}).items():
            if served is not None and dev not in served:
                log.info("fall detector of %s forgotten: the gateway no longer serves it", dev)
                self._forget.add(dev)
                continue
            samples = [(r.stream, r.first, np.frombuffer(r.samples, dtype=SAMPLE_DTYPE).reshape(-1, 3)) for r in rows]
            detector = FallDetector.restore(model, state, samples, suppress_s=suppress_s)
            if detector is None:
                log.warning("fall detector of %s: its stored state does not fit; starting afresh", dev)
                self._forget.add(dev)
                continue
            self._detectors[dev] = detector
            self._fed[dev] = started
            self.restored += 1

    @property
    def wearables(self) -> set[str]:
        """The wearables whose detectors are held."""
        return set(self._detectors)

    def feed(self, message: m.AccelSamples) -> list[m.Fall]:
        """Falls completed by ``message``; see :meth:`checkpoint` for what to store with it."""
        now = self._clock()
        detector = self._detectors.get(message.dev)
        if detector is None:
            detector = self._detectors[message.dev] = FallDetector(self.model, suppress_s=self._suppress_s)
        self._fed[message.dev] = now
        stale = detector.stale
        falls = _falls(message.dev, detector.feed(message.ts, message.hz, message.xyz))
        self.stale += detector.stale - stale
        if now >= self._next_prune:
            self._prune(now)
        return falls

    def release_quiet(self) -> dict[str, list[m.Fall]]:
        """Wearables quiet for :data:`QUIET_RELEASE_S` with chunks waiting behind a hole: the hole is taken for a gap
        and what the chunks complete is decided (:meth:`FallDetector.release`); the falls, by wearable (store each
        one's :meth:`checkpoint` with them)."""
        now = self._clock()
        return {
            dev: _falls(dev, detector.release())
            for dev, detector in self._detectors.items()
            if detector.waiting and now - self._fed[dev] >= QUIET_RELEASE_S
        }

    def tick(self) -> None:
        """Forget the detectors due (see the class) without waiting for a chunk: no wearable may send again."""
        now = self._clock()
        if now >= self._next_prune:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget the detectors of wearables silent for ``forget_after_s`` in data time and in running time."""
        self._next_prune = now + PRUNE_EVERY_S
        ends = {dev: detector.trusted_end_ts for dev, detector in self._detectors.items()}
        oldest_ts = max((end for end in ends.values() if end is not None), default=0.0) - self._forget_after_s * 1000
        for dev, end in ends.items():
            if (end is None or end < oldest_ts) and now - self._fed[dev] >= self._forget_after_s:
                del self._detectors[dev], self._fed[dev]
                self._forget.add(dev)
                log.info("fall detector of %s forgotten: nothing from it for %.0f s", dev, self._forget_after_s)

    def take_forgotten(self) -> list[str]:
        """Wearables whose stored detector state is to be deleted: in the commit of the chunk just fed, or in one of
        its own (:meth:`Pipeline.forget_detectors`)."""
        gone = sorted(dev for dev in self._forget if dev not in self._detectors)  # a new detector replaces it
        self._forget.clear()
        return gone

    def refused(self, batch: Batch) -> None:
        """The store refused ``batch`` (nothing of it was stored), and the device will send its chunk again.

        The detectors have taken the chunk and will take it again as a repeat, deciding nothing: its falls are
        carried by the pipeline (see :meth:`Pipeline.store_carried`), the next checkpoint holds the chunk's
        samples again (or the stored window would have a hole, and a restart would start the detector afresh),
        and the wearables it was to forget are forgotten in a later commit.
        """
        for state in batch.detectors:
            detector = self._detectors.get(state.dev)
            if detector is not None:
                detector.not_stored(stream=state.stream, first=state.first)
        self._forget.update(batch.forget)

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


def _origin(delivery: Delivery) -> bytes:
    """A digest naming the delivery's bytes and where they came from: the same for the same payload sent again."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (delivery.source.encode(), (delivery.topic or "").encode(), delivery.payload):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def _local_alarms(batch: Batch, delivery: Delivery | None) -> dict[int, LocalAlarm]:
    """The batch's alarms as the local page shows them, by ``id`` of their item. The alarms a device sent are told
    apart by their delivery's :func:`_origin` (worked out only for a batch with such an alarm) and their place among
    them; those the gateway made, by their bytes alone."""
    alarms: dict[int, LocalAlarm] = {}
    place = 0
    origin: bytes | None = None
    for item in batch.items:
        if item.lane is not Lane.ALARM or item.message is None:
            continue
        own = None
        if delivery is not None and not item.made:
            if origin is None:
                origin = _origin(delivery)
            own = origin + place.to_bytes(4, "big")
            place += 1
        alarms[id(item)] = LocalAlarm(item.message, item.body, own)
    return alarms


def _item(message: m.DeviceMessage, *, made: bool, spare: bool = False) -> Item:
    lane = Lane.ALARM if m.is_alarm_class(message) else Lane.TELEMETRY
    return Item(lane, m.encode(message), message, made, spare)


class Pipeline:
    """Deliveries in, commits out; see the module's text.

    Carried messages. A refused commit (store full of unsent alarms, or failing) stored nothing, and the device
    sends its payload again; but what the gateway made from it (a fall, a device fault) is not made again from a
    repeat, and the supervisor's faults come from no device at all. So the messages the gateway made in a
    refused commit are carried in memory, per device, and go with that device's next delivery, or on their own
    a second after the refusal and every second while the store keeps refusing, whichever comes first; a
    stopping gateway offers them a last time. A fault is a change of state, so a carried fault whose device has
    changed state again since (a later fault of the same kind was made, and went its own way) is dropped: stored
    after that later one, it would leave the platform with the wrong state.

    With a ``carried_file`` (:mod:`~eldercare.gateway.carried`), what is carried, and what has been taken from
    it into a commit not yet done, is also on disk while it waits: a gateway killed meanwhile takes it back at
    start (:meth:`resume_carried`), and the stale rule above sorts out the faults against the supervisor's
    state restored from the store.
    """

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
        carried_file: CarriedFile | None = None,
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
        self._carried: dict[str, list[m.DeviceMessage]] = {}  # per device, oldest first
        self._in_flight: list[m.DeviceMessage] = []  # taken from the carried into commits not yet done
        self._file = carried_file
        self._retry: asyncio.TimerHandle | None = None
        self._retry_logged = 0  # how many carried messages the retry last logged (it logs changes only)
        self._closed = False

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
            self._add(batch, self._take_carried(message.dev), made=True)  # older than what this message makes
            own: list[m.DeviceMessage] = [message]
            made: list[m.DeviceMessage] = []
            spare = False
            if isinstance(message, m.AccelSamples):
                own = [message] if self._forward_samples else []
                made = self._accel(message, device_class, batch)
                # Forwarded, the samples are a copy: a store full of alarms drops it rather than refuse the chunk,
                # or the wearable would send it again and again, its detector's checkpoint held back with it.
                spare = self._falls is not None
            made.extend(self._supervisor.observe(message, device_class, source=delivery.source, now=now))
            self._add(batch, own, made=False, spare=spare)
            self._add(batch, made, made=True)
        self._count(problems)
        return batch, problems

    def _accel(self, message: m.AccelSamples, device_class: DeviceClass, batch: Batch) -> list[m.DeviceMessage]:
        """Feed the wearable's fall detector: the falls it decided; its checkpoint goes into ``batch``."""
        if self._falls is None:
            return []
        try:
            falls = self._falls.feed(message)
        except UnsupportedRateError as exc:
            self._stats.error(f"{message.dev} ({device_class.value}): {exc}")
            return []
        batch.forget.extend(self._falls.take_forgotten())
        self._stats.fall_chunks_stale = self._falls.stale
        return self._decided(message.dev, falls, batch)

    def _decided(self, dev: str, falls: list[m.Fall], batch: Batch) -> list[m.DeviceMessage]:
        """The falls a wearable's detector decided, counted; its checkpoint goes into ``batch`` with them."""
        assert self._falls is not None
        state = self._falls.checkpoint(dev)
        if state is not None:
            batch.detectors.append(state)
        self._stats.falls += len(falls)
        return list(falls)

    @staticmethod
    def _add(batch: Batch, messages: list[m.DeviceMessage], *, made: bool, spare: bool = False) -> None:
        for message in messages:
            batch.items.append(_item(message, made=made, spare=spare))
            if isinstance(message, m.DeviceFault):
                batch.faults.append((message.dev, message.fault.value, message.active))

    def _count(self, problems: list[Problem]) -> None:
        if problems:
            self._stats.unmapped += len(problems)
            self._stats.error(str(problems[-1]))

    def submit_batch(self, batch: Batch, *, delivery: Delivery | None = None) -> asyncio.Future[Stored]:
        """Commit ``batch``, made from ``delivery`` (see :class:`eldercare.gateway.local.LocalAlarm`);
        its alarms are shown locally when stored, or before (refused, or not stored within :data:`UNSTORED_AFTER_S`)."""
        alarms = _local_alarms(batch, delivery)
        future = self._worker.submit(batch)
        timer = None
        if alarms and not future.done():
            timer = asyncio.get_running_loop().call_later(UNSTORED_AFTER_S, self._show_unstored, alarms)
        future.add_done_callback(partial(self._after_commit, batch, alarms, timer))
        return future

    def _show_unstored(self, alarms: dict[int, LocalAlarm]) -> None:
        """Show the alarms of a batch not on disk: refused, or its commit is slow (see the module's text)."""
        shown = self._hub.publish(list(alarms.values()), stored=False)
        if shown:
            self._stats.shown_unstored += shown
            log.warning("%d alarm(s) shown on the local page before they are stored", shown)

    def submit(self, delivery: Delivery) -> tuple[asyncio.Future[Stored], list[Problem]]:
        """Store what the delivery holds. Whatever goes wrong in preparing it is a problem of this delivery
        alone: raised into an MQTT source's callback, it would never be acknowledged, and a device that keeps
        sending such payloads would fill the broker's window and silence every device of the source."""
        try:
            batch, problems = self.prepare(delivery)
        except Exception as exc:  # a bug met by one payload must not stop the others
            log.exception("gateway error on a delivery from %s (%s)", delivery.source, delivery.topic)
            problems = [MappingError(delivery.vendor, f"gateway error: {type(exc).__name__}: {exc}")]
            self._count(problems)
            batch = Batch()
        return self.submit_batch(batch, delivery=delivery), problems

    def submit_own(self, messages: list[m.DeviceMessage]) -> asyncio.Future[Stored]:
        """Store messages the gateway made itself, from no delivery (supervision's faults, carried messages)."""
        batch = Batch()
        self._add(batch, messages, made=True)
        return self.submit_batch(batch)

    @property
    def carrying(self) -> bool:
        """Whether messages the gateway made in refused commits wait to be stored."""
        return bool(self._carried)

    def _take_carried(self, dev: str) -> list[m.DeviceMessage]:
        """The device's carried messages, less the faults its state has left behind since (see the class)."""
        carried = self._carried.pop(dev, None)
        if not carried:
            return []
        last: dict[m.FaultKind, bool] = {}
        for message in carried:
            if isinstance(message, m.DeviceFault):
                last[message.fault] = message.active
        stale = {fault for fault, active in last.items() if self._supervisor.active(dev, fault) != active}
        if stale:
            log.info("%s: carried %s fault(s) dropped, its state changed again since", dev, sorted(stale))
        taken = [x for x in carried if not (isinstance(x, m.DeviceFault) and x.fault in stale)]
        self._in_flight.extend(taken)
        if stale:
            self._save_carried()
        return taken

    def forget_detectors(self, gone: Collection[str] = ()) -> asyncio.Future[Stored] | None:
        """Delete, in a commit of its own, the stored state of fall detectors no longer held: ``gone`` (at start, with
        fall detection off) and those the fall service has forgotten (at start: those it could not restore or whose
        wearable is no longer served; then, once a second, those silent past its horizon). Left for the next
        accelerometer chunk of any wearable, which may never come, their rows kept taking room alarms need, and
        came back at the next start. In the same commit, the falls of wearables gone quiet with chunks waiting
        behind a hole (:meth:`FallService.release_quiet`), with their detectors' checkpoints. None when there is
        nothing to store."""
        forget = set(gone)
        batch = Batch()
        if self._falls is not None:
            self._falls.tick()
            for dev, falls in self._falls.release_quiet().items():
                self._add(batch, self._decided(dev, falls, batch), made=True)
            forget.update(self._falls.take_forgotten())
        batch.forget = sorted(forget)
        return self.submit_batch(batch) if batch.forget or batch.items or batch.detectors else None

    def resume_carried(self) -> None:
        """At start, with the store worker running: take back what the carried file held when the gateway
        stopped (it was killed while its store refused) and offer it to the store before anything else."""
        if self._file is None:
            return
        for message in self._file.load():
            self._carried.setdefault(message.dev, []).append(message)
        self.store_carried()

    def _save_carried(self) -> None:
        """Make the carried file hold what is carried and in flight (see the class)."""
        if self._file is None:
            return
        waiting = [x for messages in self._carried.values() for x in messages] + self._in_flight
        try:
            self._file.save(waiting)
        except OSError as exc:
            self._stats.error(f"carried messages kept in memory only, not in {self._file.path}: {exc}")

    def _landed(self, batch: Batch) -> bool:
        """Take the batch's messages out of those in flight; whether any were."""
        if not self._in_flight:
            return False
        mine = {id(i.message) for i in batch.items if i.made}
        kept = [x for x in self._in_flight if id(x) not in mine]
        landed = len(kept) != len(self._in_flight)
        self._in_flight = kept
        return landed

    def store_carried(self) -> None:
        """Offer the store, on their own, the carried messages that no delivery has taken since (see the class).

        A wearable may never send again (broken in the fall, battery gone), and an alarm must not wait for it.
        """
        self._retry = None
        carried = [x for dev in list(self._carried) for x in self._take_carried(dev)]
        if not carried:
            return
        if len(carried) != self._retry_logged:  # once, not every second while the store stays full
            log.info("storing %d alarm(s) of refused commits on their own", len(carried))
            self._retry_logged = len(carried)
        self.submit_own(carried)

    def close(self) -> None:
        """Before the store worker stops: offer the store the carried messages a last time, and retry no more."""
        if self._retry is not None:
            self._retry.cancel()
        self._closed = True
        self.store_carried()

    def _after_commit(
        self,
        batch: Batch,
        alarms: dict[int, LocalAlarm],
        timer: asyncio.TimerHandle | None,
        future: asyncio.Future[Stored],
    ) -> None:
        if timer is not None:
            timer.cancel()
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            if alarms:
                self._show_unstored(alarms)
            self._refused(batch, exc)
            return
        stored = future.result()
        self._retry_logged = 0
        if self._landed(batch):
            self._save_carried()
        self._stats.accepted += len(stored.accepted)
        self._stats.repeats += stored.repeats
        accepted = [alarms[id(i)] for i in stored.accepted if id(i) in alarms]  # repeats left out
        if accepted:
            self._hub.publish(accepted)
        if stored.accepted:
            self._on_stored()

    def _refused(self, batch: Batch, exc: BaseException | None) -> None:
        """Nothing of ``batch`` was stored: the device sends its own messages again; carry what the gateway made."""
        if self._falls is not None:
            self._falls.refused(batch)
        made = [i.message for i in batch.items if i.made and i.message is not None]
        self._landed(batch)  # back to the carried, below
        for message in made:
            self._carried.setdefault(message.dev, []).append(message)
        if made:
            self._save_carried()
        if self._retry is None and self._carried and not self._closed:
            self._retry = asyncio.get_running_loop().call_later(CARRIED_RETRY_S, self.store_carried)
        if exc is not None:
            self._stats.refused += 1
            if isinstance(exc, GatewayError | OSError) and not (batch.items or batch.detectors):
                self._stats.error(f"not stored (detector state of {len(batch.forget)} wearable(s) to delete): {exc}")
            elif isinstance(exc, GatewayError | OSError):
                left = ["left with the device to send again"] if len(batch.items) > len(made) or not made else []
                if made:
                    left.append(f"{len(made)} message(s) the gateway made carried to store again")
                self._stats.error(f"not stored ({', '.join(left)}): {exc}")
