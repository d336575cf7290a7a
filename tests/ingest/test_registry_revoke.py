"""Revoking a gateway (``POST /gateways/{id}/revoke``) never holds the gateway's row while the broker reloads.

The broker takes up to its reload timeout (10 s) to confirm. Ingest updates the gateway's row with every status the
gateway sends, in the alarm lane, whose batch may carry other gateways' alarms: a revocation that locked the row
before telling the broker held that batch, and those alarms, as long. The broker here is the real one (the test
stack's) behind a provisioner that takes the login away and then waits until the test lets it confirm, as the
production broker's files are written and then their reload waited for.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import errors
from tests.registry.support import Client, Server, data_key, login, new_uscc

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.decode import Received
from eldercare.ingest.registry import Registry
from eldercare.ingest.store import BatchStore
from eldercare.platform.auth.service import hash_password
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack import broker_auth
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.layout import broker_paths
from eldercare.platform.stack.model import StackInfo

from .helpers import now_ms, scalar

PASSWORD = "admin-password-1"
WAITED_S = 2.0  # what a status write may wait for a lock here; the broker is held far longer


@dataclass
class _SlowBroker:
    """The test stack's broker, slow to confirm a revocation: it takes the login away, then waits for ``confirm``."""

    real: LocalBroker
    confirm: threading.Event = field(default_factory=threading.Event)
    waiting: threading.Event = field(default_factory=threading.Event)
    calls: list[str] = field(default_factory=list)

    def provision(self, *, institution: str, gateway: str, password: str) -> None:
        self.real.provision(institution=institution, gateway=gateway, password=password)
        self.calls.append("provision")

    def revoke(self, *, gateway: str) -> None:
        self.real.revoke(gateway=gateway)
        self.calls.append("revoke")
        self.waiting.set()
        if not self.confirm.wait(30):
            raise StackError("mosquitto", "the test never let the broker confirm")


class _DownBroker:
    def provision(self, *, institution: str, gateway: str, password: str) -> None:
        raise StackError("mosquitto", "the broker did not acknowledge reload 7 within 10 s")

    def revoke(self, *, gateway: str) -> None:
        raise StackError("mosquitto", "the broker did not acknowledge reload 7 within 10 s")


@dataclass(frozen=True, slots=True)
class _Home:
    admin: Client
    institution_id: int
    institution_code: str
    gateway_pk: int
    gateway_id: str


@pytest.fixture(scope="module")
def api(stack: StackInfo, db: str) -> Iterator[Server]:
    with Server(database_url=db, key=data_key(stack), state_dir=stack.state_dir) as server:
        yield server


@pytest.fixture
def home(api: Server, db: str) -> _Home:
    """An admin of the API, a home and a gateway registered through it (its login on the real broker)."""
    username = f"admin-{secrets.token_hex(4)}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, 'admin')",
            (username, hash_password(PASSWORD)),
        )
    admin = login(api.base, username, PASSWORD)
    body = {"code": new_uscc("420502"), "name": "撤销院", "kind": "residential_home", "region_code": "420502"}
    institution = admin.ok("POST", "/api/v1/institutions", 201, json=body)
    gateway_id = f"GW-R-{secrets.token_hex(4)}"
    creds = admin.ok("POST", f"/api/v1/institutions/{institution['id']}/gateways", 201, json={"gateway_id": gateway_id})
    return _Home(admin, institution["id"], institution["code"], creds["gateway"]["id"], gateway_id)


@pytest.fixture
def slow(api: Server, stack: StackInfo, home: _Home) -> Iterator[_SlowBroker]:
    broker = _SlowBroker(LocalBroker(stack.state_dir))
    before = api.app.state.broker
    api.app.state.broker = broker
    try:
        yield broker
    finally:
        broker.confirm.set()
        api.app.state.broker = before


def _in_background(client: Client, path: str) -> tuple[threading.Thread, list[httpx.Response]]:
    replies: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: replies.append(client.post(path)), name=f"POST {path}")
    thread.start()
    return thread, replies


def _registered(db: str, gateway_pk: int) -> tuple[bool, bool]:
    """Whether the registry has the gateway revoked, and whether it has a password."""
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT revoked_at IS NOT NULL, password_hash IS NOT NULL FROM gateways WHERE id = %s", (gateway_pk,)
        ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


def _logins(state_dir: Path) -> set[str]:
    return {user.username for user in broker_auth.load_users(broker_paths(state_dir).folder)}


def test_a_status_of_the_gateway_is_stored_while_the_broker_confirms_its_revocation(
    db: str, vault: Vault, home: _Home, slow: _SlowBroker
) -> None:
    revoking, replies = _in_background(home.admin, f"/api/v1/gateways/{home.gateway_pk}/revoke")
    try:
        assert slow.waiting.wait(15), "the revocation did not reach the broker"
        heartbeat = Received(
            topics.uplink(home.institution_code, home.gateway_id, topics.Channel.STATUS),
            m.encode(m.Heartbeat(ts=now_ms(), queue=m.QueueDepth(alarm=0, telemetry=0))),
        )
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"SET lock_timeout = '{WAITED_S:g}s'".encode())
            store = BatchStore(registry=Registry(retry_s=0), vault=vault)
            started = time.monotonic()
            try:
                result = store.write(conn, [heartbeat])  # the alarm lane's batch: pipelined
            except errors.LockNotAvailable:
                pytest.fail(f"the status waited over {WAITED_S} s for the gateway's row, held by the revocation")
            took = time.monotonic() - started
        assert result.statuses == 1
        assert took < WAITED_S
        assert revoking.is_alive(), "the revocation did not wait for the broker"
    finally:
        slow.confirm.set()
        revoking.join(30)
    assert replies and replies[0].status_code == 200, replies[0].text if replies else "no answer"
    revoked = replies[0].json()
    assert revoked["revoked_at"] is not None and revoked["has_credentials"] is False
    assert slow.calls == ["revoke"]
    assert home.gateway_id not in _logins(slow.real.state_dir)
    assert scalar(db, "SELECT last_status FROM gateways WHERE id = %s", (home.gateway_pk,)) == "heartbeat"


def test_a_new_password_asked_for_while_a_revocation_waits_for_the_broker_comes_after_it(
    db: str, home: _Home, slow: _SlowBroker
) -> None:
    """The two reach the broker and the registry in the same order: the gateway ends admitted, with its login."""
    revoking, revoked = _in_background(home.admin, f"/api/v1/gateways/{home.gateway_pk}/revoke")
    reissuing: threading.Thread | None = None
    try:
        assert slow.waiting.wait(15), "the revocation did not reach the broker"
        reissuing, reissued = _in_background(home.admin, f"/api/v1/gateways/{home.gateway_pk}/credentials")
        reissuing.join(1.0)
        assert reissuing.is_alive(), "the new password did not wait for the revocation"
        assert slow.calls == ["revoke"]
    finally:
        slow.confirm.set()
        revoking.join(30)
        if reissuing is not None:
            reissuing.join(30)
    assert revoked[0].status_code == 200, revoked[0].text
    assert reissued[0].status_code == 201, reissued[0].text
    assert slow.calls == ["revoke", "provision"]
    assert home.gateway_id in _logins(slow.real.state_dir)
    assert _registered(db, home.gateway_pk) == (False, True)


def test_a_revocation_the_broker_does_not_confirm_is_a_503_that_changes_nothing_and_can_be_sent_again(
    api: Server, db: str, home: _Home
) -> None:
    before = api.app.state.broker
    api.app.state.broker = _DownBroker()
    try:
        refused = home.admin.post(f"/api/v1/gateways/{home.gateway_pk}/revoke")
    finally:
        api.app.state.broker = before
    assert refused.status_code == 503 and "try again" in refused.json()["detail"], refused.text
    assert _registered(db, home.gateway_pk) == (False, True), "a revocation the broker did not take was committed"
    revoked = home.admin.ok("POST", f"/api/v1/gateways/{home.gateway_pk}/revoke")
    assert revoked["revoked_at"] is not None and revoked["has_credentials"] is False
