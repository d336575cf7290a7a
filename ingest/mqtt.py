"""A lean MQTT 5 connection in a thread of its own: the hot path of ingest.

Why not paho-mqtt here (it remains the client of the simulators and the stack's health check): measured on
this 2-core machine by ``bench/ingest_client.py`` (also the last phase of ``bench/ingest_throughput.py``),
paho-mqtt 2.1 with manual acknowledgements spends about 90 µs of CPU per received and acknowledged QoS 1
message (it reads each packet header byte by byte, one ``select`` per packet, one PUBACK per call) and tops
out near 10,000 messages/s on one core before ingest has decoded or stored anything; this client, 4-6 µs
(9-14 µs for 5 KB frames of 50 readings). It reads up to 256 KiB per system call, parses every packet in
it, and writes a whole batch of PUBACKs at once.

One thread owns the socket (TLS objects must not be used from two threads at once); other threads hand it
acknowledgements and publishes through a queue and wake it with a socket pair. It reconnects with
exponential backoff and full jitter. Every successful CONNACK starts a new *generation*: a message is
acknowledged only on the connection it arrived on, because after a reconnect the broker resends it
(with DUP set) and that copy is the one to acknowledge.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eldercare.ingest import mqtt_codec as codec
from eldercare.ingest.errors import ConnectRefusedError, MqttError, ProtocolError
from eldercare.platform.config import BrokerSettings

log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    ca_file: Path | None
    username: str
    password: str

    @classmethod
    def from_settings(cls, broker: BrokerSettings) -> Endpoint:
        return cls(
            broker.mqtt_host,
            broker.mqtt_port,
            broker.mqtt_tls,
            broker.mqtt_ca_file,
            broker.mqtt_username,
            broker.mqtt_password.get_secret_value(),
        )


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    packet_id: int  # 0 at QoS 0
    qos: int
    dup: bool
    generation: int
    arrived: float  # time.monotonic()
    arrived_wall: float  # time.time()


@dataclass(frozen=True, slots=True)
class Connected:
    generation: int
    session_present: bool


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform between half and all of the exponential step, capped."""
        step = min(self.max_s, self.first_s * 2**attempt)
        return random.uniform(step / 2, step)  # noqa: S311 - jitter, not crypto


class _Lost(Exception):  # noqa: N818 - control flow inside the I/O thread, never escapes it
    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Connection:
    def __init__(
        self,
        *,
        endpoint: Endpoint,
        client_id: str,
        session_expiry_s: int,
        receive_maximum: int = 65_535,
        keepalive_s: int = 30,
        subscribe: Sequence[str] = (),
        on_message: Callable[[Message], None] | None = None,
        on_connected: Callable[[Connected], None] | None = None,
        on_lost: Callable[[str, int | None], None] | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._keepalive_s = keepalive_s
        self._topics = list(subscribe)
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._out: collections.deque[bytes] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._woken = False
        self._final_expiry: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{client_id}", daemon=True)
        self._state = threading.Condition()
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()
        self.taken_over = False  # MQTT 5 brokers that say so; Mosquitto 2.0.11 just closes the socket
        self.ended = threading.Event()  # the I/O thread is done: stopped, or lost and told not to reconnect
        self.last_error = ""
        self.connects = 0
        self.received = 0
        # publishing side (load generator)
        self._next_id = 0
        self._inflight: set[int] = set()
        self._send_quota = 65_535
        self.confirmed = 0
        self.puback_reasons: collections.Counter[int] = collections.Counter()  # non-success reason -> count
        self._pending_acks: dict[int, threading.Event] = {}

    # --- life cycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, session_expiry_s: int | None = None, timeout: float = 10.0) -> None:
        """Disconnect (optionally changing the session expiry, 0 ends the session) and end the thread."""
        self._final_expiry = session_expiry_s
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    def wait_connected(self, timeout: float) -> bool:
        with self._state:
            return self._state.wait_for(lambda: self.connected, timeout)

    # --- called from other threads --------------------------------------------------------------------

    def ack(self, messages: Iterable[Message]) -> int:
        """PUBACK the QoS 1 messages that arrived on the current connection; return how many."""
        generation = self.generation
        ids = [m.packet_id for m in messages if m.qos and m.generation == generation]
        if ids:
            self._out.append(codec.pubacks(ids))
            self._wake()
        return len(ids)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout: float = 10.0) -> bool:
        """Queue a PUBLISH; at QoS 1 wait while the broker's receive window is full. False on timeout."""
        packet_id = 0
        if qos:
            with self._state:
                if not self._state.wait_for(lambda: self.connected and len(self._inflight) < self._send_quota, timeout):
                    return False
                packet_id = self._allocate_id()
        self._out.append(codec.publish(topic, payload, packet_id=packet_id, qos=qos))
        self._wake()
        return True

    def inflight(self) -> int:
        return len(self._inflight)

    def unsubscribe(self, topics: Sequence[str], *, timeout: float = 10.0) -> bool:
        """UNSUBSCRIBE and wait for the UNSUBACK; the session keeps what was already queued for it."""
        with self._state:
            packet_id = self._allocate_id()
            done = threading.Event()
            self._pending_acks[packet_id] = done
        self._out.append(codec.unsubscribe(packet_id, topics))
        self._wake()
        return done.wait(timeout)

    def _allocate_id(self) -> int:
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._inflight and self._next_id not in self._pending_acks:
                self._inflight.add(self._next_id)
                return self._next_id
        raise ProtocolError(client_id=self.client_id, detail="no free packet identifier")

    def _wake(self) -> None:
        """Wake the I/O thread, unless a wake-up is already on its way (each costs a thread switch)."""
        if self._woken:
            return
        self._woken = True
        with contextlib.suppress(OSError):  # buffer full (woken anyway), or closing
            self._wake_w.send(b"\0")

    # --- the I/O thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect_loop()
        finally:
            self.ended.set()

    def _connect_loop(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                sock, reader, connack = self._open()
            except (OSError, MqttError) as exc:
                self.last_error = str(exc)
                log.warning("mqtt %s: cannot connect to %s:%d: %s", self.client_id, *self._where(), exc)
                if not self._reconnect or self._stopping.wait(self._backoff.delay(attempt)):
                    return
                attempt += 1
                continue
            attempt = 0
            try:
                self._serve(sock, reader, connack)
            except _Lost as lost:
                self._lost(lost.reason, lost.code)
            finally:
                self._close(sock)
            if not self._reconnect:
                return
            if self._stopping.wait(self._backoff.delay(0)):
                return

    def _where(self) -> tuple[str, int]:
        return self.endpoint.host, self.endpoint.port

    def _open(self) -> tuple[socket.socket, codec.PacketReader, codec.ConnAck]:
        raw = socket.create_connection(self._where(), timeout=_CONNECT_TIMEOUT_S)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        try:
            if self.endpoint.tls:
                context = ssl.create_default_context(
                    cafile=str(self.endpoint.ca_file) if self.endpoint.ca_file else None
                )
                sock = context.wrap_socket(raw, server_hostname=self.endpoint.host)
            reader = codec.PacketReader()
            return sock, reader, self._handshake(sock, reader)
        except BaseException:
            self._close(sock)
            raise

    def _handshake(self, sock: socket.socket, reader: codec.PacketReader) -> codec.ConnAck:
        props = {codec.PROP_SESSION_EXPIRY: self._session_expiry_s, codec.PROP_RECEIVE_MAXIMUM: self._receive_maximum}
        sock.sendall(
            codec.connect(
                client_id=self.client_id,
                username=self.endpoint.username,
                password=self.endpoint.password,
                keepalive_s=self._keepalive_s,
                clean_start=False,
                props=props,
            )
        )
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            data = sock.recv(_READ_SIZE)
            if not data:
                raise ProtocolError(client_id=self.client_id, detail="connection closed before CONNACK")
            reader.feed(data)
            for packet in reader.packets():
                if packet.kind != codec.CONNACK:
                    raise ProtocolError(client_id=self.client_id, detail=f"expected CONNACK, got {packet.kind:#x}")
                connack = codec.parse_connack(packet.body)
                if connack.reason_code >= 0x80:
                    raise ConnectRefusedError(
                        client_id=self.client_id,
                        reason_code=connack.reason_code,
                        reason=codec.reason_text(connack.reason_code),
                    )
                return connack
        raise ProtocolError(client_id=self.client_id, detail="no CONNACK in time")

    def _serve(self, sock: socket.socket, reader: codec.PacketReader, connack: codec.ConnAck) -> None:
        server_keepalive = connack.properties.get(codec.PROP_SERVER_KEEP_ALIVE)
        keepalive = int(server_keepalive) if isinstance(server_keepalive, int) else self._keepalive_s
        self._started(connack)
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        pending = b""
        last_in = last_out = time.monotonic()
        try:
            self._dispatch_all(reader)
            while not self._stopping.is_set():
                # Reset before looking at the queue: whatever is queued after this wakes the select below.
                self._woken = False
                if self._out or pending:
                    pending = self._write(sock, pending)
                    last_out = time.monotonic()
                    selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0))
                tls_buffered = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
                events = [] if tls_buffered else selector.select(timeout=1.0)
                readable = tls_buffered or any(key.fileobj is sock and ev & selectors.EVENT_READ for key, ev in events)
                if any(key.fileobj is self._wake_r for key, _ in events):
                    self._drain_wake()
                if readable and self._read(sock, reader):
                    last_in = time.monotonic()
                    self._dispatch_all(reader)
                now = time.monotonic()
                if now - last_out > keepalive / 2 and not self._out and not pending:
                    self._out.append(codec.PINGREQ_PACKET)
                if now - last_in > keepalive * 1.5:
                    raise _Lost("no traffic from the broker within 1.5 keep-alive periods")
            self._goodbye(sock, pending)
        finally:
            selector.close()

    def _started(self, connack: codec.ConnAck) -> None:
        quota = connack.properties.get(codec.PROP_RECEIVE_MAXIMUM)
        with self._state:
            self.generation += 1
            self.connects += 1
            self.connected = True
            self.taken_over = False
            self._send_quota = min(int(quota) if isinstance(quota, int) else 65_535, 65_000)
            self._inflight.clear()
            self._out.clear()
            self._state.notify_all()
        log.info(
            "mqtt %s: connected (generation %d, session present %s)",
            self.client_id,
            self.generation,
            connack.session_present,
        )
        if self._on_connected is not None:
            self._on_connected(Connected(self.generation, connack.session_present))
        # Subscribe again on every connection, session present or not, as the first thing written on it:
        # Mosquitto 2.0.11 does not route to a shared subscription restored from its persistence file after a
        # restart (QoS 1 publishes meanwhile get PUBACK reason 0x10, "no matching subscribers", and are dropped)
        # until the member subscribes again.
        if self._topics:
            with self._state:
                sub_id = self._allocate_id()
            self._out.append(codec.subscribe(sub_id, self._topics))

    def _read(self, sock: socket.socket, reader: codec.PacketReader) -> bool:
        got = False
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return got
            except OSError as exc:
                raise _Lost(f"read failed: {exc}") from exc
            if not data:
                self._dispatch_all(reader)  # what came before the close, e.g. a DISCONNECT with its reason
                raise _Lost("the broker closed the connection")
            reader.feed(data)
            got = True
            if len(data) < _READ_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return got

    def _write(self, sock: socket.socket, pending: bytes) -> bytes:
        chunks = [pending] if pending else []
        while self._out:
            chunks.append(self._out.popleft())
        data = b"".join(chunks)
        try:
            sent = sock.send(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return data
        except OSError as exc:
            raise _Lost(f"write failed: {exc}") from exc
        return data[sent:]

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            return

    def _dispatch_all(self, reader: codec.PacketReader) -> None:
        try:
            for packet in reader.packets():
                self._dispatch(packet)
        except (codec.MalformedPacketError, IndexError, UnicodeDecodeError) as exc:
            raise _Lost(f"malformed packet from the broker: {exc}") from exc

    def _dispatch(self, packet: codec.Packet) -> None:
        kind = packet.kind
        if kind == codec.PUBLISH:
            topic, payload, packet_id, qos, dup = codec.parse_publish(packet.first_byte, packet.body)
            self.received += 1
            if self._on_message is not None:
                message = Message(topic, payload, packet_id, qos, dup, self.generation, time.monotonic(), time.time())
                self._on_message(message)
        elif kind == codec.PUBACK:
            body = packet.body
            packet_id = (body[0] << 8) | body[1]
            with self._state:
                if packet_id in self._inflight:
                    self._inflight.discard(packet_id)
                    self.confirmed += 1
                    if len(body) > 2 and body[2]:  # e.g. 0x10: no matching subscribers, the broker dropped it
                        self.puback_reasons[body[2]] += 1
                    self._state.notify_all()
        elif kind in (codec.SUBACK, codec.UNSUBACK):
            packet_id, reasons = codec.parse_ack_reasons(packet.body)
            with self._state:
                self._inflight.discard(packet_id)
                waiter = self._pending_acks.pop(packet_id, None)
            failed = [codec.reason_text(r) for r in reasons if r >= 0x80]
            if failed:
                self.last_error = f"{'subscription' if kind == codec.SUBACK else 'unsubscribe'} refused: {failed}"
                log.error("mqtt %s: %s", self.client_id, self.last_error)
            elif kind == codec.SUBACK:
                log.info("mqtt %s: subscribed (generation %d)", self.client_id, self.generation)
                self.subscribed.set()
            if waiter is not None:
                waiter.set()
        elif kind == codec.DISCONNECT:
            code, text = codec.parse_disconnect(packet.body)
            if code == codec.SESSION_TAKEN_OVER:
                self.taken_over = True
            raise _Lost(f"the broker disconnected us: {codec.reason_text(code)} {text}".strip(), code)
        elif kind != codec.PINGRESP:
            raise _Lost(f"unexpected packet type {kind:#x}")

    def _goodbye(self, sock: socket.socket, pending: bytes) -> None:
        sock.setblocking(True)
        sock.settimeout(2.0)
        try:
            while self._out:
                pending += self._out.popleft()
            sock.sendall(pending + codec.disconnect(session_expiry_s=self._final_expiry))
        except OSError as exc:
            log.debug("mqtt %s: goodbye not delivered: %s", self.client_id, exc)
        with self._state:
            self.connected = False
            self._state.notify_all()

    def _lost(self, reason: str, code: int | None) -> None:
        with self._state:
            self.connected = False
            self.subscribed.clear()
            self._state.notify_all()
        self.last_error = reason
        log.warning("mqtt %s: connection lost: %s", self.client_id, reason)
        if self._on_lost is not None:
            self._on_lost(reason, code)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.close()
        except OSError:
            return
