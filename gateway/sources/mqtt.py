"""The local MQTT source: devices publish their own formats to the home's broker; the gateway subscribes.

The gateway's session is persistent (``clean_start`` false, a session expiry) and acknowledges each message
only after the commit that stored it (``manual_ack``): a message the gateway had not stored when it died or
lost the broker is delivered again by the broker. A repeat of one that was stored is recognised by the store
and not kept twice. Acknowledgements go out in the order the messages came, as MQTT requires.

While the broker cannot be reached, supervision does not judge the devices behind it (a broker outage is
not one offline alarm per device), and it gives them a full grace period when the broker is back.

A message the store refuses (full of alarms, or failing) is not acknowledged, and MQTT has no other way to have it
sent again than a new connection: the source disconnects and connects again after :data:`REFUSED_RETRY_S`. That
is the store's trouble, not the broker's, so it does not grow the back-off: a button pressed meanwhile must not
wait half a minute behind a broker that never failed. (The refused alarm is on the local page already.)
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Final

import paho.mqtt.client as mqtt

from eldercare.gateway.config import MqttSource as MqttSourceConfig
from eldercare.gateway.mqtt import Endpoint, LinkError, MqttLink
from eldercare.gateway.pipeline import Delivery, Pipeline
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Stored
from eldercare.gateway.supervision import Supervisor
from eldercare.gateway.uplink import Backoff

log = logging.getLogger(__name__)

REFUSED_RETRY_S: Final = 1.0  # after disconnecting for a message the store refused, connect again this soon


class MqttSource:
    def __init__(
        self,
        config: MqttSourceConfig,
        *,
        gateway: str,
        pipeline: Pipeline,
        supervisor: Supervisor,
        stats: Stats,
    ) -> None:
        self.config = config
        self._client_id = config.client_id or f"{gateway}-{config.name}"
        self._pipeline = pipeline
        self._supervisor = supervisor
        self._stats = stats
        self._backoff = Backoff(0.5, 30.0)
        self.connected = False
        self.received = 0
        self.connects = 0
        self._refused: MqttLink | None = None  # the link this source closed for a refused message
        supervisor.source_down(config.name)  # until the first connection

    def _vendor(self, topic: str) -> str | None:
        for subscription in self.config.subscriptions:
            if mqtt.topic_matches_sub(subscription.topic, topic):
                return subscription.vendor
        return None

    async def run(self) -> None:
        c = self.config
        while True:
            link: MqttLink | None = None
            try:
                link = self._new_link()
                await link.connect(15.0)
                self.connects += 1
                async with asyncio.timeout(15.0):
                    await link.subscribe([(s.topic, 1) for s in c.subscriptions])
            except (LinkError, ssl.SSLError, ValueError, TimeoutError) as exc:
                # A refused message may close the link before the SUBACK: the broker sends what the session holds
                # at once. That is a refusal like any other (see the module's text), not the broker failing.
                if link is None or self._refused is not link:
                    self._stats.error(f"source {c.name}: {getattr(exc, 'reason', exc)}")
                if link is not None and not link.closed.done():
                    link.disconnect()
                await asyncio.sleep(self._pause(link, stable=False))
                continue
            log.info(
                "source %s: connected to %s:%d, subscribed to %d topic(s)", c.name, c.host, c.port, len(c.subscriptions)
            )
            self.connected = True
            self._supervisor.source_up(c.name, time.monotonic())
            started = time.monotonic()
            try:
                reason = await asyncio.shield(link.closed)
            finally:
                self.connected = False
                if self._refused is not link:  # the devices' messages came; only the broker's silence is not theirs
                    self._supervisor.source_down(c.name)
                if not link.closed.done():
                    link.disconnect()
            if self._refused is not link:
                self._stats.error(f"source {c.name}: connection lost ({reason})")
            await asyncio.sleep(self._pause(link, stable=time.monotonic() - started > 30))

    def _new_link(self) -> MqttLink:
        c = self.config
        return MqttLink(
            Endpoint(
                host=c.host,
                port=c.port,
                client_id=self._client_id,
                username=c.username,
                password=c.password.get_secret_value() if c.password else None,
                ca_file=c.ca_file,
                clean_start=False,
                session_expiry_s=c.session_expiry_s,
            ),
            on_message=self._on_message,
        )

    def _pause(self, link: MqttLink | None, *, stable: bool) -> float:
        """How long to wait before connecting again: :data:`REFUSED_RETRY_S` when this source closed ``link`` for
        a refused message (the broker is fine), else the back-off, reset after a connection that lasted."""
        if link is not None and self._refused is link:
            self._backoff.reset()
            return REFUSED_RETRY_S
        if stable:
            self._backoff.reset()
        return self._backoff.next()

    def _on_message(self, link: MqttLink, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        vendor = self._vendor(message.topic)
        delivery = Delivery(self.config.name, vendor or "", bytes(message.payload), message.topic)
        future, _problems = self._pipeline.submit(delivery)
        mid, qos = message.mid, message.qos
        future.add_done_callback(lambda f: self._stored(link, mid, qos, f))

    def _stored(self, link: MqttLink, mid: int, qos: int, future: asyncio.Future[Stored]) -> None:
        if future.cancelled() or future.exception() is not None:
            # Not on disk: do not acknowledge; reconnecting makes the broker deliver it again.
            if not link.closed.done():
                self._refused = link
                link.disconnect()
            return
        link.ack(mid, qos)
