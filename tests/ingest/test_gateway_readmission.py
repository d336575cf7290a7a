"""A gateway revoked and re-admitted through the API is stored again at once, without restarting ingest.

Ingest looks a gateway up while it is revoked when it stores what the gateway sent before the revocation (here:
a press queued in ingest's persistent session while ingest was away) and quarantines it. Re-admitted (new
credentials, ``POST .../credentials``), the gateway's next press must reach the alarm inbox, from the same
running ingest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from tests.registry.support import Server, data_key, login

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.mqtt import Connection, Endpoint
from eldercare.platform.auth.service import hash_password
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadGateway, LoadWorld

from .helpers import now_ms, scalar, wait_until

_PASSWORD = "admin-password-1"
_INBOX = (
    "SELECT count(*) FROM alarm_inbox i JOIN devices d ON d.id = i.device_id WHERE d.code = %s AND i.kind = 'button'"
)


def _admin(db: str) -> str:
    username = f"admin-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, 'admin')",
            (username, hash_password(_PASSWORD)),
        )
    return username


def _press(stack: StackInfo, world: LoadWorld, gateway: LoadGateway, password: str, *, seq: int) -> None:
    """The gateway connects with ``password``, sends one press on its alarm lane, and goes."""
    endpoint = Endpoint(stack.mqtt_host, stack.ports.mqtt_tls, True, stack.ca_file, gateway.gateway_id, password)
    link = Connection(endpoint=endpoint, client_id=f"gw-{uuid.uuid4().hex[:8]}", session_expiry_s=0)
    link.start()
    try:
        assert link.wait_connected(15), link.last_error
        sent = now_ms()
        press = m.Button(dev=gateway.button, ts=sent, action=m.ButtonAction.PRESS)
        frame = m.Frame(v=1, epoch=1, seq=seq, sent=sent, msgs=[press])
        assert link.publish(
            topics.uplink(world.institution_code, gateway.gateway_id, topics.Channel.ALARM), m.encode(frame)
        )
        wait_until(lambda: link.inflight() == 0, timeout=15, what="the broker to acknowledge the press")
    finally:
        link.stop()


def _quarantined(db: str, gateway: LoadGateway) -> list[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT reason FROM parked_messages WHERE gateway = %s ORDER BY id", (gateway.gateway_id,))
        return [str(r[0]) for r in rows.fetchall()]


def test_a_readmitted_gateway_is_stored_again_without_restarting_ingest(
    stack: StackInfo, db: str, world: LoadWorld, run_ingest: Callable[..., Any]
) -> None:
    gateway = world.gateways[0]
    pk = int(scalar(db, "SELECT id FROM gateways WHERE gateway_id = %s", (gateway.gateway_id,)))
    with Server(database_url=db, key=data_key(stack), state_dir=stack.state_dir) as api:
        admin = login(api.base, _admin(db), _PASSWORD)
        with run_ingest(name="a"):
            pass  # its sessions stay on the broker and queue what comes while it is away
        _press(stack, world, gateway, gateway.password, seq=0)
        admin.ok("POST", f"/api/v1/gateways/{pk}/revoke")
        with run_ingest(name="a"):  # back: stores the queued press while the gateway is revoked
            wait_until(lambda: _quarantined(db, gateway) == ["revoked gateway"], timeout=15, what="the press parked")
            fresh = admin.ok("POST", f"/api/v1/gateways/{pk}/credentials", 201)  # re-admitted
            _press(stack, world, gateway, fresh["password"], seq=1)
            wait_until(
                lambda: scalar(db, _INBOX, (gateway.button,)) == 1 or len(_quarantined(db, gateway)) > 1,
                timeout=15,
                what="the second press stored or quarantined",
            )
    try:
        assert _quarantined(db, gateway) == ["revoked gateway"], "the re-admitted gateway's press was quarantined"
        assert scalar(db, _INBOX, (gateway.button,)) == 1
        events = "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.code = %s"
        assert scalar(db, events, (gateway.button,)) == 1
    finally:  # no alarm engine runs here: leave no inbox row for the engine passes of later tests
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "DELETE FROM alarm_inbox WHERE device_id IN (SELECT id FROM devices WHERE code = %s)", (gateway.button,)
            )
