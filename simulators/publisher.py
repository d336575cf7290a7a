"""Many gateways' MQTT connections driven from one thread: the load generator's publisher.

``eldercare.ingest.mqtt.Connection`` gives each connection an I/O thread of its own; with fifty gateways
at 10,000 messages a second that is fifty threads woken 2,500 times a second, and on this 2-core machine
the generator then spent more CPU than the ingest it was measuring (70 µs a message). Here one selector
serves every socket from the generator's own loop: it queues PUBLISH packets per connection, writes them
when the socket takes them, and reads the PUBACKs to count what the broker acknowledged (QoS 1). It only
publishes; there is no reconnect (a lost connection fails the run, which is what a benchmark wants).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import time
from dataclasses import dataclass, field

from eldercare.ingest import mqtt_codec as codec
from eldercare.ingest.mqtt import Endpoint

_READ_SIZE = 256 * 1024


class PublisherError(RuntimeError):
    def __init__(self, *, client_id: str, reason: str) -> None:
        super().__init__(f"{client_id}: {reason}")
        self.client_id = client_id
        self.reason = reason


@dataclass(slots=True)
class _Link:
    client_id: str
    sock: socket.socket
    reader: codec.PacketReader = field(default_factory=codec.PacketReader)
    out: bytearray = field(default_factory=bytearray)
    next_id: int = 0
    inflight: set[int] = field(default_factory=set)
    quota: int = 65_000
    confirmed: int = 0


class Publisher:
    """QoS 1 publishing over many connections, pumped by the caller (``pump``)."""

    def __init__(self) -> None:
        self._links: list[_Link] = []
        self._selector = selectors.DefaultSelector()

    def connect(self, endpoint: Endpoint, *, client_id: str, timeout: float = 15.0) -> int:
        """Open a connection (blocking until CONNACK); returns its index for :meth:`queue`."""
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        if endpoint.tls:
            context = ssl.create_default_context(cafile=str(endpoint.ca_file) if endpoint.ca_file else None)
            sock = context.wrap_socket(raw, server_hostname=endpoint.host)
        props = {codec.PROP_SESSION_EXPIRY: 0}
        sock.sendall(
            codec.connect(
                client_id=client_id,
                username=endpoint.username,
                password=endpoint.password,
                keepalive_s=0,  # no keep-alive: a run is short, and the loop never idles long
                clean_start=True,
                props=props,
            )
        )
        link = _Link(client_id, sock)
        deadline = time.monotonic() + timeout
        connack: codec.ConnAck | None = None
        while connack is None:
            if time.monotonic() > deadline:
                raise PublisherError(client_id=client_id, reason="no CONNACK in time")
            data = sock.recv(_READ_SIZE)
            if not data:
                raise PublisherError(client_id=client_id, reason="the broker closed the connection")
            link.reader.feed(data)
            for packet in link.reader.packets():
                connack = codec.parse_connack(packet.body)
        if connack.reason_code >= 0x80:
            raise PublisherError(client_id=client_id, reason=codec.reason_text(connack.reason_code))
        quota = connack.properties.get(codec.PROP_RECEIVE_MAXIMUM)
        link.quota = min(int(quota) if isinstance(quota, int) else 65_535, 65_000)
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, len(self._links))
        self._links.append(link)
        return len(self._links) - 1

    def queue(self, index: int, topic: str, payload: bytes) -> bool:
        """Queue a QoS 1 PUBLISH; False if the broker's receive window of that connection is full."""
        link = self._links[index]
        if len(link.inflight) >= link.quota:
            return False
        link.next_id = link.next_id % 65_535 + 1
        while link.next_id in link.inflight:
            link.next_id = link.next_id % 65_535 + 1
        link.inflight.add(link.next_id)
        link.out += codec.publish(topic, payload, packet_id=link.next_id)
        return True

    def pump(self, timeout: float) -> None:
        """Write what is queued and read acknowledgements, waiting at most ``timeout`` for either."""
        for index, link in enumerate(self._links):
            if link.out:
                self._write(index, link)
        for key, events in self._selector.select(timeout=max(timeout, 0.0)):
            index = int(key.data)
            link = self._links[index]
            if events & selectors.EVENT_READ:
                self._read(link)
            if events & selectors.EVENT_WRITE and link.out:
                self._write(index, link)

    def _write(self, index: int, link: _Link) -> None:
        try:
            sent = link.sock.send(link.out)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            raise PublisherError(client_id=link.client_id, reason=f"write failed: {exc}") from exc
        del link.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.out else 0)
        self._selector.modify(link.sock, events, index)

    def _read(self, link: _Link) -> None:
        while True:
            try:
                data = link.sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as exc:
                raise PublisherError(client_id=link.client_id, reason=f"read failed: {exc}") from exc
            if not data:
                raise PublisherError(client_id=link.client_id, reason="the broker closed the connection")
            link.reader.feed(data)
            if len(data) < _READ_SIZE and not (isinstance(link.sock, ssl.SSLSocket) and link.sock.pending()):
                break
        for packet in link.reader.packets():
            if packet.kind == codec.PUBACK:
                packet_id = (packet.body[0] << 8) | packet.body[1]
                if packet_id in link.inflight:
                    link.inflight.discard(packet_id)
                    link.confirmed += 1
            elif packet.kind == codec.DISCONNECT:
                reason, text = codec.parse_disconnect(packet.body)
                raise PublisherError(
                    client_id=link.client_id, reason=f"disconnected: {codec.reason_text(reason)} {text}"
                )

    def inflight(self) -> int:
        return sum(len(link.inflight) for link in self._links)

    def confirmed(self) -> int:
        return sum(link.confirmed for link in self._links)

    def close(self) -> None:
        for link in self._links:
            with contextlib.suppress(OSError):  # closing anyway; what was not acknowledged is reported
                link.sock.setblocking(True)
                link.sock.settimeout(2.0)
                link.sock.sendall(bytes(link.out) + codec.disconnect())
            link.sock.close()
        self._selector.close()
