"""An MQTT 5 session over TLS for tests of the broker's logins and ACL (paho on its own network thread)."""

from __future__ import annotations

import queue
import secrets
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

WAIT = 5.0


class Session:
    """A paho MQTT 5 client on its own network thread, recording what the tests wait for."""

    def __init__(self, host: str, port: int, username: str, password: str, *, ca_file: Path) -> None:
        self.address = (host, port)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{secrets.token_hex(6)}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a refused or dropped session stays down, as the tests expect
        )
        self.client.username_pw_set(username, password)
        self.client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.unsubacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._pubacks: dict[int, ReasonCode] = {}
        self._puback = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_unsubscribe = self._on_unsubscribe

    def connect(self) -> ReasonCode:
        self.client.connect(*self.address, keepalive=30)
        self.client.loop_start()
        return self.connacks.get(timeout=WAIT)

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._puback:
            if not self._puback.wait_for(lambda: info.mid in self._pubacks, timeout=WAIT):
                raise AssertionError(f"no PUBACK for {topic}")
            return self._pubacks.pop(info.mid)

    def subscribe(self, topic: str) -> ReasonCode:
        self.client.subscribe(topic, qos=1)
        (code,) = self.subacks.get(timeout=WAIT)
        return code

    def unsubscribe(self, topics: list[str]) -> None:
        self.client.unsubscribe(topics)
        self.unsubacks.get(timeout=WAIT)

    def next_message(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        self.connacks.put(code)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        self.disconnects.put(code)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self.subacks.put(codes)

    def _on_unsubscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self.unsubacks.put(codes)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        with self._puback:
            self._pubacks[mid] = code
            self._puback.notify_all()
