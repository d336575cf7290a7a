"""A simulated gateway's uplink: speaks contract v1 to the platform's broker as a real gateway would.

Frames are numbered per epoch; birth is published retained on connect and the last will marks the
gateway dead if the connection drops; :meth:`SimUplink.heartbeat` says it is alive (the platform counts a
gateway silent when no status message came for a while). After a lost connection it reconnects by itself
within seconds. Used by the demo, the tests and the world simulator's direct mode.

Like the gateway, it loses nothing to a broker with nobody to give a frame to: a PUBACK with MQTT 5 reason 16
("no matching subscribers", ingest not subscribed yet) is not an acknowledgement; the frame is published again
after :data:`RESEND_AFTER_S` until the broker takes it for someone. Retained status messages are kept by the
broker anyway and are not sent again.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.gateway.mqtt import NO_MATCHING_SUBSCRIBERS
from eldercare.gateway.uplink import WILL_DELAY_S

RESEND_AFTER_S = 1.0
SESSION_EXPIRY_S = 3600


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Sent:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class SimUplink:
    def __init__(
        self,
        *,
        institution: str,
        gateway: str,
        password: str,
        host: str,
        port: int,
        ca_file: Path | None,
        epoch: int | None = None,
    ) -> None:
        self.institution = institution
        self.gateway = gateway
        self.epoch = epoch if epoch is not None else now_ms()
        self.seq = 0
        self._host, self._port = host, port
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{gateway}", protocol=mqtt.MQTTv5)
        self._client.username_pw_set(gateway, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        status = topics.uplink(institution, gateway, topics.Channel.STATUS)
        # As the gateway's (gateway/uplink.py): the will held back WILL_DELAY_S, dropped if the session comes back
        will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will_props.WillDelayInterval = WILL_DELAY_S
        self._client.will_set(status, m.encode(m.Death(ts=now_ms())), qos=1, retain=True, properties=will_props)
        self._client.max_inflight_messages_set(1000)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self.published = 0  # messages handed to the client (frames and status)
        self.acknowledged = 0  # acknowledged by the broker (QoS 1), or sent (QoS 0)
        self.resent = 0  # frames published again after a PUBACK with reason 16
        # Messages in flight by id, to publish a frame again on reason 16.
        self._in_flight: dict[int, _Sent] = {}
        self._early: dict[int, bool] = {}  # answered before publish() returned: refused (reason 16)?
        self._closing = False

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: ConnectFlags, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            return
        birth = m.Birth(ts=now_ms(), epoch=self.epoch, software="eldercare-sim")
        self._publish(topics.uplink(self.institution, self.gateway, topics.Channel.STATUS), m.encode(birth), 1, True)
        self._connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: Properties) -> None:
        # Runs with paho's outgoing-message lock held: publishing again happens later, on a timer thread. The
        # answer may come before publish() has returned the message's id: then _track settles it.
        refused = reason.value == NO_MATCHING_SUBSCRIBERS
        with self._lock:
            if mid not in self._in_flight:
                self._early[mid] = refused
                return
            sent = self._in_flight.pop(mid)
        self._settle(sent, refused=refused)

    def _track(self, sent: _Sent, info: mqtt.MQTTMessageInfo) -> None:
        """After publish() returned: remember the message until the broker answers, or settle its answer."""
        if sent.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            return  # not sent, and never answered
        with self._lock:
            if info.mid not in self._early:
                self._in_flight[info.mid] = sent
                return
            refused = self._early.pop(info.mid)
        self._settle(sent, refused=refused)

    def _settle(self, sent: _Sent, *, refused: bool) -> None:
        if refused and sent.qos == 1 and not sent.retain:
            if not self._closing:
                timer = threading.Timer(RESEND_AFTER_S, self._resend, (sent,))
                timer.daemon = True
                timer.start()
            return
        with self._lock:
            self.acknowledged += 1

    def _resend(self, sent: _Sent) -> None:
        if self._closing:
            return
        with self._lock:
            self.resent += 1
        self._track(sent, self._client.publish(sent.topic, sent.payload, sent.qos, sent.retain))

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def unacknowledged(self) -> int:
        """Messages published and not yet acknowledged by the broker (or not yet sent)."""
        with self._lock:
            return self.published - self.acknowledged

    def heartbeat(self, *, queued_alarm: int = 0, queued_telemetry: int = 0) -> None:
        """A heartbeat status message (QoS 0, as a gateway's periodic statistics)."""
        message = m.Heartbeat(ts=now_ms(), queue=m.QueueDepth(alarm=queued_alarm, telemetry=queued_telemetry))
        self._publish(topics.uplink(self.institution, self.gateway, topics.Channel.STATUS), m.encode(message), 0, False)

    def connect(self, timeout: float = 10.0) -> None:
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = SESSION_EXPIRY_S  # kept across a reconnection: the delayed will is dropped
        self._client.connect_async(self._host, self._port, keepalive=30, properties=session)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise TimeoutError(f"gateway {self.gateway} could not connect to {self._host}:{self._port}")

    def close(self) -> None:
        self._closing = True
        death = m.Death(ts=now_ms(), clean=True)
        info = self._publish(
            topics.uplink(self.institution, self.gateway, topics.Channel.STATUS), m.encode(death), 1, True
        )
        if self._client.is_connected():
            info.wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()

    def frame(self, messages: Sequence[m.DeviceMessage]) -> m.Frame:
        seq, self.seq = self.seq, self.seq + 1  # the contract: seq starts at 0 in an epoch
        return m.Frame(v=1, epoch=self.epoch, seq=seq, sent=now_ms(), msgs=list(messages))

    def send(self, messages: Sequence[m.DeviceMessage], *, alarm: bool) -> mqtt.MQTTMessageInfo:
        return self.send_raw(m.encode(self.frame(messages)), alarm=alarm)

    def send_raw(self, payload: bytes, *, alarm: bool) -> mqtt.MQTTMessageInfo:
        channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
        return self._publish(topics.uplink(self.institution, self.gateway, channel), payload, 1, False)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        with self._lock:
            self.published += 1
        info = self._client.publish(topic, payload, qos, retain)  # not under self._lock: see _on_publish
        self._track(_Sent(topic, payload, qos, retain), info)
        return info
