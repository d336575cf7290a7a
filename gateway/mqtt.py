"""paho-mqtt driven by the asyncio loop: no network thread, futures for CONNACK and PUBACK.

paho's external-loop hooks (``on_socket_open``/``register_write``/...) put its socket on the asyncio loop,
as aiomqtt does; aiomqtt itself is not used because it cannot acknowledge a received message after the
gateway has stored it (``manual_ack``, aiomqtt issue #345), which the local MQTT source needs.

Only ``connect`` runs in a worker thread (name lookup, TCP and TLS handshakes block); paho calls the socket
hooks from that thread, so they hand over to the loop with ``call_soon_threadsafe``. One client object
serves one connection: after a disconnect the owner makes a new :class:`MqttLink`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason: accepted, and dropped, as nobody subscribes


class LinkError(Exception):
    """The connection could not be made or was lost; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublishRefusedError(LinkError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # TLS when given
    keepalive_s: int = 30
    clean_start: bool = True
    session_expiry_s: int = 0


Handler = Callable[["MqttLink", mqtt.MQTTMessage], None]  # (the link it came on, the message)


class MqttLink:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        will: tuple[str, bytes] | None = None,
        will_delay_s: int = 0,
        on_message: Handler | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=endpoint.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=on_message is not None,
        )
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.ca_file is not None:
            client.tls_set(ca_certs=str(endpoint.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if will is not None:
            will_props = None
            if will_delay_s:  # the broker holds the will back this long, and drops it if the session comes back
                will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
                will_props.WillDelayInterval = will_delay_s
            client.will_set(will[0], will[1], qos=1, retain=True, properties=will_props)
        client.max_inflight_messages_set(65535)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        if on_message is not None:
            client.on_message = lambda _c, _u, msg: on_message(self, msg)
        self._client = client
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self._pubacks: dict[int, asyncio.Future[int]] = {}
        self._subacks: dict[int, asyncio.Future[None]] = {}
        self._fd: int | None = None
        self._misc: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def connect(self, within_s: float) -> None:
        e = self.endpoint
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = e.session_expiry_s
        try:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a cancellation that arrives as
            # the awaited thing completes, and a task that ignores its cancellation hangs the shutdown.
            async with asyncio.timeout(within_s):
                await self._loop.run_in_executor(
                    None,
                    lambda: self._client.connect(
                        e.host, e.port, keepalive=e.keepalive_s, clean_start=e.clean_start, properties=props
                    ),
                )
                await asyncio.shield(self._connected)
        except (OSError, ssl.SSLError, mqtt.WebsocketConnectionError) as exc:
            self._close_now()
            raise LinkError(f"cannot connect to {e.host}:{e.port}: {exc}") from None
        except TimeoutError:
            self._close_now()
            raise LinkError(f"no answer from {e.host}:{e.port} within {within_s} s") from None

    def disconnect(self) -> None:
        self._client.disconnect()

    def _close_now(self) -> None:
        self._client.disconnect()
        sock = self._client.socket()
        if sock is not None:
            self._on_socket_close(self._client, None, sock)
            sock.close()
        self._finish("closed")

    def _finish(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        if not self._connected.done():
            self._connected.set_exception(LinkError(reason))
            self._connected.exception()  # retrieved: nobody may be waiting any more
        waiting: list[asyncio.Future[Any]] = [*self._pubacks.values(), *self._subacks.values()]
        for future in waiting:
            if not future.done():
                future.set_exception(LinkError(f"connection lost before the broker answered: {reason}"))
                future.exception()
        self._pubacks.clear()
        self._subacks.clear()

    # --- operations -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[int]:
        """Publish at QoS 1; the future is the PUBACK's reason code (MQTT 5: 0 success, 16 no matching
        subscribers), or fails with :class:`PublishRefusedError` (a failure code) or :class:`LinkError`."""
        future: asyncio.Future[int] = self._loop.create_future()
        if self.closed.done():
            future.set_exception(LinkError("not connected"))
            return future
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            future.set_exception(LinkError(f"publish failed: {mqtt.error_string(info.rc)}"))
            return future
        if not info.is_published():
            self._pubacks[info.mid] = future
        else:
            future.set_result(0)
        return future

    def subscribe(self, topics: list[tuple[str, int]]) -> asyncio.Future[None]:
        """Subscribe; the future completes at the SUBACK (fails if the broker refused a topic)."""
        future: asyncio.Future[None] = self._loop.create_future()
        result, mid = self._client.subscribe(topics)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            future.set_exception(LinkError(f"subscribe failed: {mqtt.error_string(result)}"))
        else:
            self._subacks[mid] = future
        return future

    def ack(self, mid: int, qos: int) -> None:
        if not self.closed.done() and qos > 0:
            self._client.ack(mid, qos)

    # --- paho callbacks (loop thread, except where noted) -------------------------------------------

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: ConnectFlags, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if self._connected.done():
            return
        if reason.is_failure:
            self._connected.set_exception(LinkError(f"broker refused the connection: {reason}"))
        else:
            self._connected.set_result(None)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: DisconnectFlags, reason: ReasonCode, _p: Properties | None
    ) -> None:
        self._finish(str(reason))

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: Properties) -> None:
        future = self._pubacks.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(PublishRefusedError(f"broker refused the message: {reason}"))
        else:
            future.set_result(int(reason.value))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        future = self._subacks.pop(mid, None)
        if future is None or future.done():
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            future.set_exception(LinkError(f"broker refused the subscription: {', '.join(refused)}"))
        else:
            future.set_result(None)

    def _on_socket_open(self, client: mqtt.Client, _u: object, sock: object) -> None:  # connect's thread
        fd = client.socket().fileno()  # type: ignore[union-attr]
        self._fd = fd

        def readable() -> None:
            try:
                while True:
                    client.loop_read()
                    pending = getattr(client.socket(), "pending", None)
                    if pending is None or pending() == 0:  # TLS may hold decrypted bytes select() cannot see
                        break
            except OSError as exc:
                self._finish(f"read failed: {exc}")

        def start() -> None:
            self._loop.add_reader(fd, readable)
            self._misc = self._loop.create_task(self._misc_loop(), name=f"mqtt-misc-{self.endpoint.client_id}")

        self._loop.call_soon_threadsafe(start)
        del sock

    def _on_socket_close(self, _c: mqtt.Client, _u: object, _sock: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        if self._misc is not None:
            self._misc.cancel()

    def _on_register_write(self, client: mqtt.Client, _u: object, _sock: object) -> None:  # any thread
        def writable() -> None:
            try:
                client.loop_write()
            except OSError as exc:
                self._finish(f"write failed: {exc}")

        def add() -> None:
            if self._fd is not None:
                self._loop.add_writer(self._fd, writable)

        self._loop.call_soon_threadsafe(add)

    def _on_unregister_write(self, _c: mqtt.Client, _u: object, _sock: object) -> None:  # any thread
        def remove() -> None:
            if self._fd is not None:
                self._loop.remove_writer(self._fd)

        self._loop.call_soon_threadsafe(remove)

    async def _misc_loop(self) -> None:
        while self._client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 - paho wants a periodic call
            await asyncio.sleep(1)
        self._finish("connection lost (keep-alive)")
