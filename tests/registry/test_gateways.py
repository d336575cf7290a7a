"""Gateways: issuing credentials provisions the real broker; revoking locks the gateway out at once (its live
MQTT connection is dropped and it cannot reconnect); a re-issued password replaces the old one."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.registry.support import World

from eldercare.platform.api.errors import Problem
from eldercare.platform.registry import service
from eldercare.platform.stack import broker_auth
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.model import StackInfo


@dataclass
class Gateway:
    """A real MQTT connection as the gateway (TLS, its own login)."""

    stack: StackInfo
    username: str
    password: str
    connected: threading.Event = field(default_factory=threading.Event)
    dropped: threading.Event = field(default_factory=threading.Event)
    refused: list[str] = field(default_factory=list)

    def connect(self, timeout: float = 5.0) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{self.username}", protocol=mqtt.MQTTv5)
        client.username_pw_set(self.username, self.password)
        client.tls_set(ca_certs=str(self.stack.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                self.refused.append(str(reason))
            else:
                self.connected.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
            self.dropped.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.connect(self.stack.mqtt_host, self.stack.ports.mqtt_tls, keepalive=30)
        client.loop_start()
        deadline = time.monotonic() + timeout
        while not (self.connected.is_set() or self.refused or self.dropped.is_set()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return client


def test_issue_use_revoke_and_reissue(world: World, stack: StackInfo) -> None:
    head = world.users["head_a"]
    creds = head.ok("POST", f"/api/v1/institutions/{world.a.id}/gateways", 201, json={"gateway_id": "GW-A-live"})
    assert creds["topic_prefix"] == f"eldercare/v1/{world.a.code}/GW-A-live"
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute("SELECT password_hash FROM gateways WHERE id = %s", (creds["gateway"]["id"],)).fetchone()
    assert row is not None and row[0].startswith("$7$")
    assert broker_auth.verify_password(creds["password"], row[0])
    assert creds["password"] not in head.get(f"/api/v1/gateways/{creds['gateway']['id']}").text

    live = Gateway(stack, creds["username"], creds["password"])
    client = live.connect()
    try:
        assert live.connected.is_set(), live.refused
        info = client.publish(f"{creds['topic_prefix']}/status", b'{"v":1}', qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

        assert world.users["staff_a"].post(f"/api/v1/gateways/{creds['gateway']['id']}/revoke").status_code == 403
        started = time.monotonic()
        revoked = head.ok("POST", f"/api/v1/gateways/{creds['gateway']['id']}/revoke")
        assert revoked["revoked_at"] is not None and revoked["has_credentials"] is False
        assert live.dropped.wait(5), "the broker did not drop the revoked gateway"
        print(f"revoked gateway dropped {time.monotonic() - started:.3f} s after the revoke request was sent")
    finally:
        client.loop_stop()
        client.disconnect()

    retry = Gateway(stack, creds["username"], creds["password"])
    again = retry.connect()
    again.loop_stop()
    assert not retry.connected.is_set() and retry.refused, "a revoked gateway could log in again"
    twice = head.post(f"/api/v1/gateways/{creds['gateway']['id']}/revoke")
    assert twice.status_code == 409 and twice.json()["errors"][0]["field"] == "path.gateway_pk"

    fresh = head.ok("POST", f"/api/v1/gateways/{creds['gateway']['id']}/credentials", 201)
    assert fresh["password"] != creds["password"] and fresh["gateway"]["revoked_at"] is None
    new_login = Gateway(stack, fresh["username"], fresh["password"])
    ok = new_login.connect()
    ok.loop_stop()
    ok.disconnect()
    assert new_login.connected.is_set(), new_login.refused
    old_login = Gateway(stack, creds["username"], creds["password"])
    old = old_login.connect()
    old.loop_stop()
    assert not old_login.connected.is_set()


def test_gateway_ids_are_checked(world: World) -> None:
    head = world.users["head_a"]
    for bad in ("platform", "GW/../x", "GW+#", ""):
        reply = head.post(f"/api/v1/institutions/{world.a.id}/gateways", json={"gateway_id": bad})
        assert reply.status_code == 422, bad
    taken = world.a.gateway["gateway"]["gateway_id"]
    reply = head.post(f"/api/v1/institutions/{world.a.id}/gateways", json={"gateway_id": taken})
    assert reply.status_code == 409
    listed = world.users["reg_4205"].ok("GET", f"/api/v1/institutions/{world.a.id}/gateways")
    assert taken in {g["gateway_id"] for g in listed}


class _BrokerThatDoesNotReload:
    def provision(self, *, institution: str, gateway: str, password: str) -> None:
        raise StackError("mosquitto", "sent SIGHUP to pid 1 but it did not log a reload within 5.0 s")

    def revoke(self, *, gateway: str) -> None:
        raise StackError("mosquitto", "sent SIGHUP to pid 1 but it did not log a reload within 5.0 s")


def test_a_broker_that_does_not_take_the_change_is_a_503_not_a_500() -> None:
    """The caller's transaction is rolled back with it: the gateway is not registered without its login."""
    broker = _BrokerThatDoesNotReload()
    for call in (
        service.provision(broker, institution="524205024154895658", gateway="GW-1", password="pw-1234567890"),
        service.revoke(broker, gateway="GW-1"),
    ):
        with pytest.raises(Problem) as caught:
            asyncio.run(call)
        assert caught.value.status == 503 and "try again" in caught.value.detail
