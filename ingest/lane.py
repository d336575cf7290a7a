"""A lane: one MQTT session, one queue, one writer thread, one database connection.

Ingest runs two lanes, alarm and telemetry, each with its own MQTT client. A telemetry backlog therefore
never fills the alarm lane's in-flight window at the broker, and alarm frames are committed one small
transaction at a time while telemetry is batched (at most ``max_wait_s``, 200 ms by default).

Threads, not asyncio: paho-mqtt's network loop is a thread, acknowledgements are sent with
``Client.ack`` after the commit (``manual_ack``), and psycopg's synchronous COPY is the fastest path.

Acknowledgements carry the connection generation they were received on: a message that arrived before a
reconnect is stored (idempotently) but not acknowledged, because the broker redelivers it with the same
packet id and the redelivered copy is the one acknowledged.
"""

from __future__ import annotations

import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.client import ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Conn
from eldercare.ingest.store import BatchStore, WriteResult
from eldercare.platform.config import BrokerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Item:
    received: Received
    generation: int


@dataclass(slots=True)
class LaneStats:
    received: int = 0
    frames_new: int = 0
    frames_duplicate: int = 0
    rows: int = 0
    events: int = 0
    parked: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    commit_seconds: float = 0.0
    db_errors: int = 0
    connects: int = 0

    def add(self, result: WriteResult, seconds: float) -> None:
        self.frames_new += result.frames_new
        self.frames_duplicate += result.frames_duplicate
        self.rows += result.rows
        self.events += result.events
        for kind, n in result.parked.items():
            self.parked[kind] = self.parked.get(kind, 0) + n
        self.batches += 1
        self.commit_seconds += seconds


def make_client(
    *, client_id: str, broker: BrokerSettings, session_expiry_s: int, receive_maximum: int, manual_ack: bool
) -> tuple[mqtt.Client, Properties]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    client.username_pw_set(broker.mqtt_username, broker.mqtt_password.get_secret_value())
    if broker.mqtt_tls:
        client.tls_set(
            ca_certs=str(broker.mqtt_ca_file) if broker.mqtt_ca_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = receive_maximum
    return client, props


class Lane:
    def __init__(
        self,
        *,
        name: str,
        client_id: str,
        topics: Sequence[str],
        broker: BrokerSettings,
        database_url: str,
        store: BatchStore,
        max_wait_s: float,
        max_frames: int,
        session_expiry_s: int,
        receive_maximum: int,
        on_commit: Callable[[str, WriteResult], None] | None = None,
    ) -> None:
        self.name = name
        self.stats = LaneStats()
        self._topics = list(topics)
        self._broker = broker
        self._database_url = database_url
        self._store = store
        self._max_wait_s = max_wait_s
        self._max_frames = max_frames
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._generation = 0
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._conn: Conn | None = None
        self._client, self._connect_props = make_client(
            client_id=client_id,
            broker=broker,
            session_expiry_s=session_expiry_s,
            receive_maximum=receive_maximum,
            manual_ack=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._writer = threading.Thread(target=self._write_loop, name=f"ingest-{name}-writer", daemon=True)

    # --- MQTT callbacks (paho's network thread) --------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("lane %s: broker refused the connection: %s", self.name, reason)
            return
        self._generation += 1
        self.stats.connects += 1
        log.info("lane %s: connected (generation %d)", self.name, self._generation)
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("lane %s: subscription refused: %s", self.name, failed)
        else:
            self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        item = Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time())
        self._queue.put(_Item(item, self._generation))

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()
        self._client.connect_async(
            self._broker.mqtt_host,
            self._broker.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=self._connect_props,
        )
        self._client.loop_start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect; what was not committed stays with the broker."""
        self._stopping.set()
        self._writer.join(timeout=30)
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()

    # --- writer thread -----------------------------------------------------------------------------

    def _collect(self) -> list[_Item]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = first.received.arrived + self._max_wait_s
        while len(batch) < self._max_frames:
            remaining = deadline - time.time()
            try:
                batch.append(self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._database_url, autocommit=True, application_name=f"ingest-{self.name}")
        return self._conn

    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            batch = self._collect()
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                result = self._store.write(self._connection(), [i.received for i in batch])
            except psycopg.OperationalError as exc:
                self.stats.db_errors += 1
                log.warning("lane %s: database unavailable (%s); retrying in %.1f s", self.name, exc, delay)
                if self._conn is not None:
                    self._conn.close()
                if self._stopping.wait(delay):
                    return  # not acknowledged: the broker keeps the messages
                delay = min(delay * 2, 10.0) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
                continue
            self.stats.add(result, time.perf_counter() - started)
            break
        generation = self._generation
        for item in batch:
            if item.generation == generation and item.received.qos > 0:
                self._client.ack(item.received.mid, item.received.qos)
        if self._on_commit is not None:
            self._on_commit(self.name, result)
