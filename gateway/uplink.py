"""The uplink: the store's frames to the platform's broker, over TLS, with the gateway's own login.

On every connect: the last will (a retained ``death``) is registered, the ``birth`` is published (retained),
then the frames the store still holds are sent again byte for byte (alarm lane first), then new frames.
QoS 1 and one connection keep each lane in order. A frame is deleted from the store only after its PUBACK.

Alarms before telemetry, always: telemetry frames are cut only while no alarm is waiting or unacknowledged,
and at most ``telemetry_window`` telemetry frames are in flight, so a new alarm waits behind a few hundred
kilobytes at most, never behind a backlog.

Nothing is lost to a broker with nobody to give it to: a PUBACK with MQTT 5 reason 16 ("no matching
subscribers", which Mosquitto sends when it dropped the message, e.g. right after a restart, before the
platform's ingest has subscribed again: Mosquitto 2.0 does not keep shared subscriptions over a restart)
leaves the frame in the store; it is sent again, in order, a second later.

A store that cannot be read or written (a failing disk) does not end the gateway: the uplink says so (the
heartbeat's ``last_error``), keeps its connection, and tries again every :data:`STORE_RETRY_S`. Alarms that reach
the gateway meanwhile are shown on the local page (:mod:`eldercare.gateway.local`) and wait with their devices.

Telemetry is batched: a frame is cut when ``telemetry_frame_msgs`` messages are waiting or the oldest has
waited ``telemetry_linger_ms``. A ``heartbeat`` with the gateway's statistics goes out every
``heartbeat_s``. After a lost connection the uplink reconnects after a random delay between
``reconnect_min_s`` and an exponentially growing ceiling (``reconnect_max_s`` at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from bisect import insort
from collections.abc import Callable
from typing import Final

import paho.mqtt.client as mqtt

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.gateway.config import GatewayConfig
from eldercare.gateway.errors import StoreError
from eldercare.gateway.local import AlarmHub
from eldercare.gateway.mqtt import NO_MATCHING_SUBSCRIBERS, Endpoint, LinkError, MqttLink
from eldercare.gateway.pipeline import now_ms
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Lane, OutFrame
from eldercare.gateway.worker import StoreWorker

log = logging.getLogger(__name__)

STABLE_S: Final = 30.0  # a connection that lasted this long resets the back-off
GOODBYE_TIMEOUT_S: Final = 5.0
NO_SUBSCRIBER_WAIT_S: Final = 1.0
STORE_RETRY_S: Final = 1.0  # after the store failed to give frames, try again this soon
# The broker publishes the last will this long after the connection is lost, and not at all if the gateway has
# taken its session back by then: a reconnection (a router's blip, a half-open connection taken over) marks no
# live gateway dead, which raised a gateway_offline alarm and held back its devices' faults until the next birth.
# A gateway really gone is marked dead this much later; its silence raises the alarm after 60 s anyway.
WILL_DELAY_S: Final = 10


class Backoff:
    """Full jitter: a uniform delay up to a ceiling that doubles per failure (AWS architecture blog)."""

    def __init__(self, low: float, high: float, rng: random.Random | None = None) -> None:
        self._low, self._high = low, high
        self._failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def next(self) -> float:
        ceiling = min(self._high, self._low * 2**self._failures)
        self._failures = min(self._failures + 1, 30)
        return self._rng.uniform(self._low, max(self._low, ceiling))

    def reset(self) -> None:
        self._failures = 0


class Uplink:
    def __init__(
        self,
        *,
        config: GatewayConfig,
        worker: StoreWorker,
        stats: Stats,
        hub: AlarmHub,
        devices: Callable[[], list[str]],
    ) -> None:
        self._config = config
        self._up = config.uplink
        self._worker = worker
        self._store = worker.store
        self._stats = stats
        self._hub = hub
        self._devices = devices
        self._wake = asyncio.Event()
        self._backoff = Backoff(self._up.reconnect_min_s, self._up.reconnect_max_s)
        self._link: MqttLink | None = None
        self._inflight: dict[Lane, dict[int, OutFrame]] = {Lane.ALARM: {}, Lane.TELEMETRY: {}}
        self._telemetry_since: float | None = None
        self._resend: dict[Lane, list[OutFrame]] = {Lane.ALARM: [], Lane.TELEMETRY: []}
        self._hold_until = 0.0
        self.connects = 0
        self.frames_sent = 0
        self.frames_acked = 0
        self._topic = {
            Lane.ALARM: topics.uplink(config.institution, config.gateway, topics.Channel.ALARM),
            Lane.TELEMETRY: topics.uplink(config.institution, config.gateway, topics.Channel.TELEMETRY),
        }
        self._status_topic = topics.uplink(config.institution, config.gateway, topics.Channel.STATUS)
        self._command_topic = topics.command(config.institution, config.gateway, "+")

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed.done()

    def wake(self) -> None:
        self._wake.set()

    # --- connection life cycle ------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                link = self._new_link()
                await link.connect(self._up.connect_timeout_s)
            except (LinkError, ssl.SSLError, ValueError) as exc:
                self._stats.error(f"uplink: {getattr(exc, 'reason', exc)}")
                await asyncio.sleep(self._backoff.next())
                continue
            started = time.monotonic()
            self.connects += 1
            log.info("uplink: connected to %s:%d", self._up.host, self._up.port)
            self._link = link
            self._hub.set_uplink(True)
            try:
                await self._session(link)
            finally:
                self._link = None
                self._hub.set_uplink(False)
                for lane in Lane:
                    self._inflight[lane].clear()
                if not link.closed.done():
                    link.disconnect()
            reason = link.closed.result() if link.closed.done() else "closed"
            self._stats.error(f"uplink: connection lost ({reason})")
            if time.monotonic() - started >= STABLE_S:
                self._backoff.reset()
            await asyncio.sleep(self._backoff.next())

    def _new_link(self) -> MqttLink:
        return MqttLink(
            Endpoint(
                host=self._up.host,
                port=self._up.port,
                client_id=self._up.client_id or self._config.gateway,
                username=self._config.username,
                password=self._up.secret(),
                ca_file=self._up.ca_file,
                keepalive_s=self._up.keepalive_s,
                clean_start=False,
                session_expiry_s=24 * 3600,
            ),
            will=(self._status_topic, m.encode(m.Death(ts=now_ms(), clean=False))),
            will_delay_s=WILL_DELAY_S,
            on_message=self._on_command,
        )

    async def close(self) -> None:
        """Say goodbye (a retained clean ``death``) if connected; the store keeps what is unsent."""
        link = self._link
        if link is None or link.closed.done():
            return
        death = link.publish(self._status_topic, m.encode(m.Death(ts=now_ms(), clean=True)), retain=True)
        with contextlib.suppress(LinkError, TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await death
        link.disconnect()

    def _subscribed(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._stats.error(f"uplink: commands: {future.exception()}")

    @staticmethod
    def _on_command(link: MqttLink, message: mqtt.MQTTMessage) -> None:
        log.info("uplink: command on %s ignored (contract v1 defines none)", message.topic)
        link.ack(message.mid, message.qos)

    # --- one connection ---------------------------------------------------------------------------

    async def _session(self, link: MqttLink) -> None:
        link.closed.add_done_callback(lambda _: self._wake.set())
        birth = m.Birth(ts=now_ms(), epoch=self._store.epoch, software=self._config.software, devices=self._devices())
        link.publish(self._status_topic, m.encode(birth), retain=True)
        link.subscribe([(self._command_topic, 1)]).add_done_callback(self._subscribed)
        self._resend = {Lane.ALARM: [], Lane.TELEMETRY: []}
        self._hold_until = 0.0
        heartbeat = asyncio.create_task(self._heartbeats(link), name="uplink-heartbeat")
        try:
            unacked = await self._from_store(link, self._store.unacked)  # sent again first, in order
            if unacked is None:
                return
            for frame in unacked:
                self._resend[frame.lane].append(frame)
            while not link.closed.done():
                self._wake.clear()
                try:
                    await self._pump(link)
                except StoreError as exc:
                    self._store_failed(exc)
                    await asyncio.sleep(STORE_RETRY_S)
                    continue
                if link.closed.done():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sleep_for()):
                        await self._wake.wait()
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # (our own cancellation, if any, still propagates)

    async def _from_store(self, link: MqttLink, read: Callable[[], list[OutFrame]]) -> list[OutFrame] | None:
        """``read`` on the store's thread, tried again while the store fails; None if the link closes first."""
        while not link.closed.done():
            try:
                return await self._worker.call(read)
            except StoreError as exc:
                self._store_failed(exc)
                await asyncio.sleep(STORE_RETRY_S)
        return None

    def _store_failed(self, exc: StoreError) -> None:
        self._stats.error(f"uplink: no frames from the store, trying again in {STORE_RETRY_S:g} s: {exc}")

    async def _pump(self, link: MqttLink) -> None:
        up = self._up
        holding = time.monotonic() < self._hold_until  # the broker had nobody to give frames to: wait a bit
        alarms_back = self._resend[Lane.ALARM]
        while alarms_back and not holding:
            self._send(link, alarms_back.pop(0))
        while not alarms_back and self._store.queued(Lane.ALARM) and not link.closed.done():
            frame = await self._worker.call(
                lambda: self._store.cut_frame(
                    Lane.ALARM, max_msgs=up.alarm_frame_msgs, max_bytes=up.telemetry_frame_bytes, sent=now_ms()
                )
            )
            if frame is None:
                break
            self._send(link, frame)

        def telemetry_may_go() -> bool:
            return (
                not self._inflight[Lane.ALARM]
                and not self._resend[Lane.ALARM]
                and not self._store.queued(Lane.ALARM)
                and len(self._inflight[Lane.TELEMETRY]) < up.telemetry_window
                and not link.closed.done()
            )

        telemetry_back = self._resend[Lane.TELEMETRY]
        while telemetry_back and not holding and telemetry_may_go():
            self._send(link, telemetry_back.pop(0))
        while not telemetry_back and telemetry_may_go() and self._telemetry_due():
            frame = await self._worker.call(
                lambda: self._store.cut_frame(
                    Lane.TELEMETRY,
                    max_msgs=up.telemetry_frame_msgs,
                    max_bytes=up.telemetry_frame_bytes,
                    sent=now_ms(),
                )
            )
            if frame is None:
                break
            self._send(link, frame)
            self._telemetry_since = None

    def _sleep_for(self) -> float | None:
        linger = self._linger_left()
        if any(self._resend.values()):
            hold = max(0.0, self._hold_until - time.monotonic())
            return hold if linger is None else min(hold, linger)
        return linger

    def _telemetry_due(self) -> bool:
        waiting = self._store.queued(Lane.TELEMETRY)
        if waiting == 0:
            self._telemetry_since = None
            return False
        if waiting >= self._up.telemetry_frame_msgs:
            return True
        if self._telemetry_since is None:
            self._telemetry_since = time.monotonic()
        return time.monotonic() - self._telemetry_since >= self._up.telemetry_linger_ms / 1000

    def _linger_left(self) -> float | None:
        if self._telemetry_since is None:
            return None if not self._store.queued(Lane.TELEMETRY) else self._up.telemetry_linger_ms / 1000
        return max(0.0, self._telemetry_since + self._up.telemetry_linger_ms / 1000 - time.monotonic())

    def _send(self, link: MqttLink, frame: OutFrame) -> None:
        self._inflight[frame.lane][frame.seq] = frame
        self.frames_sent += 1
        future = link.publish(self._topic[frame.lane], frame.body)
        future.add_done_callback(lambda f: self._acked(frame, f))

    def _acked(self, frame: OutFrame, future: asyncio.Future[int]) -> None:
        self._inflight[frame.lane].pop(frame.seq, None)
        exc = future.exception()
        if exc is None and future.result() == NO_MATCHING_SUBSCRIBERS:
            # The broker took it and dropped it: nobody subscribes (the platform's ingest is not connected,
            # e.g. just after a broker restart). Keep the frame and send it again, in order, shortly.
            self._stats.error(
                f"uplink: no subscriber for frame {frame.seq}; kept, sent again in {NO_SUBSCRIBER_WAIT_S} s"
            )
            insort(self._resend[frame.lane], frame, key=lambda f: f.seq)
            self._hold_until = time.monotonic() + NO_SUBSCRIBER_WAIT_S
        elif exc is None:
            self.frames_acked += 1
            self._worker.ack(frame.seq)
        elif self._link is not None and not self._link.closed.done():
            # The broker refused it (MQTT 5 reason code): keep it, start again on a new connection.
            self._stats.error(f"uplink: frame {frame.seq} refused: {exc}")
            self._link.disconnect()
        self._wake.set()

    async def _heartbeats(self, link: MqttLink) -> None:
        while not link.closed.done():
            await asyncio.sleep(self._up.heartbeat_s)
            depth = self._store.depth()
            beat = m.Heartbeat(
                ts=now_ms(),
                queue=m.QueueDepth(alarm=depth.alarm, telemetry=depth.telemetry),
                dropped=self._store.dropped,
                unmapped=self._stats.unmapped,
                devices_seen=len(self._stats.devices_seen),
                last_error=self._stats.last_error,
            )
            link.publish(self._status_topic, m.encode(beat))
