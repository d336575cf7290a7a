"""A lane: one MQTT session, one queue, one writer thread, one database connection.

Ingest runs two lanes, alarm and telemetry, each with its own MQTT session. A telemetry backlog therefore
never fills the alarm lane's in-flight window at the broker, and alarm frames are committed one small
transaction at a time while telemetry is batched: a batch closes when it holds ``max_frames`` frames or
``max_rows`` messages, or ``max_wait_s`` (200 ms by default) after its first message arrived.

Threads, not asyncio: the MQTT connection's I/O thread hands messages over a queue to the writer thread,
whose synchronous psycopg COPY is the fast path; acknowledgements go back after the commit.

Acknowledgements carry the connection generation they were received on: a message that arrived before a
reconnect is stored (idempotently) but not acknowledged, because the broker resends it and the resent
copy is the one acknowledged. When the broker resumed the session, queued messages of older generations
are dropped unread for the same reason (the broker resends every unacknowledged one).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from eldercare.ingest.decode import Decoded, DecodedFrame, decode
from eldercare.ingest.metrics import IngestMetrics
from eldercare.ingest.mqtt import Backoff, Connected, Connection, Endpoint, Message
from eldercare.ingest.registry import Conn
from eldercare.ingest.store import BatchStore, WriteResult

log = logging.getLogger(__name__)

# Reconnect soon after the broker is back: Mosquitto 2.0.11 does not route to the shared subscription of a
# session restored from its persistence file until that session reconnects and subscribes again (the
# connection does so on every connect; measured, see docs/ingest.md), so every second ingest is away after a
# broker restart is a second in which the broker drops frames (PUBACK reason 0x10, no matching subscribers).
MQTT_BACKOFF = Backoff(first_s=0.25, max_s=2.0)


@dataclass(frozen=True, slots=True)
class LaneConfig:
    kind: str  # "alarm" or "telemetry": the metrics label and the batching it gets
    client_id: str
    topics: tuple[str, ...]  # subscribed on every connect; empty for an adopted session (it has its own)
    max_wait_s: float
    max_frames: int
    max_rows: int
    session_expiry_s: int
    receive_maximum: int


class Lane:
    def __init__(
        self,
        *,
        config: LaneConfig,
        endpoint: Endpoint,
        database_url: str,
        store: BatchStore,
        metrics: IngestMetrics,
        adopted: bool = False,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._on_fatal = on_fatal
        self.kind = config.kind
        self._database_url = database_url
        self._store = store
        self._metrics = metrics
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._discard_before = 0
        self._stopping = threading.Event()
        self._conn: Conn | None = None
        self._in_hand = 0
        self.session_present: bool | None = None
        self.last_activity = time.monotonic()
        self.mqtt = Connection(
            endpoint=endpoint,
            client_id=config.client_id,
            session_expiry_s=config.session_expiry_s,
            receive_maximum=config.receive_maximum,
            subscribe=config.topics,
            on_message=self._on_message,
            on_connected=self._on_connected,
            reconnect=not adopted,  # an adopted session is let go when its connection ends (see adopt.py)
            backoff=MQTT_BACKOFF,
        )
        self._writer = threading.Thread(target=self._write_loop, name=f"ingest-{config.client_id}", daemon=True)
        metrics.queue.set_function(self.outstanding, lane=config.kind, client=config.client_id)

    # --- the MQTT I/O thread ----------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        self._queue.put(message)
        self.last_activity = message.arrived

    def _on_connected(self, info: Connected) -> None:
        self._metrics.connects.inc(lane=self.kind)
        self.session_present = info.session_present
        if info.session_present:
            self._discard_before = info.generation

    # --- life cycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()
        self.mqtt.start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self.mqtt.subscribed.wait(timeout)

    def outstanding(self) -> int:
        """Messages received and not yet committed (queued or in the batch being written)."""
        return self._queue.qsize() + self._in_hand

    def stop(self, *, session_expiry_s: int | None = None) -> None:
        """Finish the batch in hand, then disconnect; what was not committed stays with the broker."""
        self._stopping.set()
        self._writer.join(timeout=30)
        self.mqtt.stop(session_expiry_s=session_expiry_s)
        if self._conn is not None:
            self._conn.close()

    # --- the writer thread ------------------------------------------------------------------------------

    def _collect(self) -> tuple[list[Message], list[Decoded]]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return [], []
        items: list[Message] = []
        decoded: list[Decoded] = []
        rows = 0
        deadline = first.arrived + self.config.max_wait_s
        item: Message | None = first
        while item is not None:
            self._count_received(item)
            if item.qos == 0 or item.generation >= self._discard_before:
                result = decode(item)
                items.append(item)
                decoded.append(result)
                rows += result.n_msgs if isinstance(result, DecodedFrame) else 1
                if len(items) >= self.config.max_frames or rows >= self.config.max_rows:
                    break
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
            except queue.Empty:
                item = None
        self._in_hand = len(items)
        return items, decoded

    def _count_received(self, item: Message) -> None:
        """Counted as the writer takes it (dropped old-generation copies too), off the I/O thread's path."""
        self._metrics.received.inc(lane=self.kind)
        if item.dup:
            self._metrics.redelivered.inc(lane=self.kind)

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._database_url, autocommit=True, connect_timeout=5)
        return self._conn

    def _write_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                items, decoded = self._collect()
                if items:
                    self._commit(items, decoded)
                self._in_hand = 0
        except Exception:
            # Not a bad message (decode and the store park those) but a bug: a writer that died quietly would
            # leave the lane subscribed and storing nothing, its messages held unacknowledged. The process is
            # told to stop, so that its supervisor starts it again and the broker hands the messages on.
            log.critical("lane %s: the writer failed; stopping ingest", self.config.client_id, exc_info=True)
            if self._on_fatal is not None:
                self._on_fatal(f"the {self.config.client_id} writer failed")

    def _commit(self, items: list[Message], decoded: list[Decoded]) -> None:
        attempt = 0
        backoff = Backoff(first_s=0.1, max_s=10.0)
        while True:
            started = time.perf_counter()
            try:
                result = self._store.write(self._connection(), items, decoded)
            except psycopg.Error as exc:
                self._metrics.db_errors.inc(lane=self.kind)
                delay = backoff.delay(attempt)
                log.warning("lane %s: database unavailable (%s); retrying in %.1f s", self.kind, exc, delay)
                if self._conn is not None:
                    self._conn.close()
                if self._stopping.wait(delay):
                    return  # not acknowledged: the broker keeps the messages
                attempt += 1
                continue
            break
        committed_at = time.time()
        acked = self.mqtt.ack(items)
        self.last_activity = time.monotonic()
        self._observe(items, result, acked, seconds=time.perf_counter() - started, committed_at=committed_at)

    def _observe(
        self, items: list[Message], result: WriteResult, acked: int, *, seconds: float, committed_at: float
    ) -> None:
        metrics, lane = self._metrics, self.kind
        metrics.acked.inc(acked, lane=lane)
        metrics.frames.inc(result.frames_new, lane=lane, outcome="stored")
        if result.frames_duplicate:
            metrics.frames.inc(result.frames_duplicate, lane=lane, outcome="duplicate")
        metrics.stored.inc(result.rows, lane=lane, kind="reading")
        if result.events:
            metrics.stored.inc(result.events, lane=lane, kind="event")
        if result.statuses:
            metrics.stored.inc(result.statuses, lane=lane, kind="status")
        for cause, count in result.rejected.items():
            metrics.rejected.inc(count, lane=lane, reason=cause)
        metrics.batch_frames.observe(len(items), lane=lane)
        metrics.batch_rows.observe(result.rows + result.events, lane=lane)
        metrics.commit_seconds.observe(seconds, lane=lane)
        if result.sent_ms:
            metrics.lag_seconds.observe_many((committed_at - sent / 1000 for sent in result.sent_ms), lane=lane)
            metrics.last_lag.set(committed_at - max(result.sent_ms) / 1000, lane=lane)
