"""A simulated gateway's uplink: speaks contract v1 to the platform's broker as a real gateway would.

Frames are numbered per epoch; birth is published retained on connect and the last will marks the
gateway dead if the connection drops. Used by the demo, the tests and the load generator.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eldercare.devices import messages as m
from eldercare.devices import topics


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self._client.will_set(status, m.encode(m.Death(ts=now_ms())), qos=1, retain=True)
        self._client.max_inflight_messages_set(1000)
        self._client.on_connect = self._on_connect

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: ConnectFlags, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            return
        birth = m.Birth(ts=now_ms(), epoch=self.epoch, software="eldercare-sim")
        client.publish(topics.uplink(self.institution, self.gateway, topics.Channel.STATUS), m.encode(birth), 1, True)
        self._connected.set()

    def connect(self, timeout: float = 10.0) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise TimeoutError(f"gateway {self.gateway} could not connect to {self._host}:{self._port}")

    def close(self) -> None:
        death = m.Death(ts=now_ms(), clean=True)
        self._client.publish(
            topics.uplink(self.institution, self.gateway, topics.Channel.STATUS), m.encode(death), 1, True
        ).wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()

    def frame(self, messages: Sequence[m.DeviceMessage]) -> m.Frame:
        self.seq += 1
        return m.Frame(v=1, epoch=self.epoch, seq=self.seq, sent=now_ms(), msgs=list(messages))

    def send(self, messages: Sequence[m.DeviceMessage], *, alarm: bool) -> mqtt.MQTTMessageInfo:
        return self.send_raw(m.encode(self.frame(messages)), alarm=alarm)

    def send_raw(self, payload: bytes, *, alarm: bool) -> mqtt.MQTTMessageInfo:
        channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
        return self._client.publish(topics.uplink(self.institution, self.gateway, channel), payload, qos=1)
