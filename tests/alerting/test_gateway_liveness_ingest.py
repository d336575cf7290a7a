"""A gateway's liveness as the alarm path sees it, through the real broker, an ingest and the alarm engine's ticker.

Liveness is when the platform heard from the gateway (the database's clock at ingest), never the gateway's own
clock: a gateway whose clock is slow is not offline, one whose clock is fast is not alive until real time catches
up. The gateway's clock still orders its statuses: a last will that the broker delivers after the gateway has
connected again (and sent its birth) does not mark it dead, while the will of its current connection does.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tests.alerting.conftest import alarms_of, process, set_rule, tick
from tests.ingest.conftest import broker_settings
from tests.platform_procs import TEST_SESSION_EXPIRY_S

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.mqtt import Connection, Endpoint, Message
from eldercare.ingest.service import Ingest, build
from eldercare.ingest.settings import IngestSettings
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import SeededHome

T = TypeVar("T")
MINUTE_MS = 60_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _wait(check: Callable[[], T], *, what: str, timeout: float = 15) -> T:
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(0.05)
        value = check()
    return value


@contextmanager
def _ingest(stack: StackInfo, db: str, vault: Vault) -> Iterator[Ingest]:
    """An ingest in this process, in a shared-subscription group of the test's own."""
    settings = IngestSettings(
        ingest_name="a",
        ingest_group=f"t{uuid.uuid4().hex[:10]}",
        ingest_maintain=False,
        ingest_metrics_port=None,
        ingest_session_expiry_s=TEST_SESSION_EXPIRY_S,
    )
    ingest = build(settings=settings, broker=broker_settings(stack), database_url=db, vault=vault)
    ingest.start()
    try:
        assert ingest.wait_subscribed(20), "ingest did not subscribe"
        yield ingest
    finally:
        ingest.stop()


class _Gateway:
    """The home's gateway on one MQTT connection of its own login (TLS, QoS 1), with a clock ``skew_ms`` off."""

    def __init__(self, stack: StackInfo, home: SeededHome, *, skew_ms: int = 0, name: str = "gw") -> None:
        self.home, self.skew_ms = home, skew_ms
        self.epoch, self.seq = _now_ms(), 0
        endpoint = Endpoint(
            stack.mqtt_host, stack.ports.mqtt_tls, True, stack.ca_file, home.gateway.username, home.gateway.password
        )
        self.link = Connection(endpoint=endpoint, client_id=f"{name}-{uuid.uuid4().hex[:8]}", session_expiry_s=0)
        self.link.start()
        assert self.link.wait_connected(15), self.link.last_error

    def clock(self) -> int:
        return _now_ms() + self.skew_ms

    def status(self, message: m.StatusMessage) -> None:
        self._publish(topics.Channel.STATUS, m.encode(message))

    def heartbeat(self) -> int:
        ts = self.clock()
        self.status(m.Heartbeat(ts=ts, queue=m.QueueDepth(alarm=0, telemetry=0)))
        return ts

    def fault(self, device: str) -> None:
        """A device fault on the alarm lane; once it is in the inbox, every status sent before it is stored."""
        ts = self.clock()
        fault = m.DeviceFault(dev=device, ts=ts, fault=m.FaultKind.OFFLINE, active=True)
        frame = m.Frame(v=1, epoch=self.epoch, seq=self.seq, sent=ts, msgs=[fault])
        self.seq += 1
        self._publish(topics.Channel.ALARM, m.encode(frame))

    def _publish(self, channel: topics.Channel, payload: bytes) -> None:
        topic = topics.uplink(self.home.institution_code, self.home.gateway.gateway_id, channel)
        assert self.link.publish(topic, payload)
        _wait(lambda: self.link.inflight() == 0, what="the broker to acknowledge the publish")

    def close(self) -> None:
        self.link.stop()


def _sensor(home: SeededHome) -> str:
    return next(d.code for d in home.devices if d.kind == "bed_sensor")


def _inbox(db: str, home: SeededHome) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM alarm_inbox WHERE institution_id = %s", (home.institution_id,))
        return int(row.fetchone()[0])  # type: ignore[index]


def _gateway_row(db: str, home: SeededHome) -> dict[str, Any]:
    with psycopg.connect(db) as conn:
        cur = conn.execute(
            "SELECT last_status, last_seen_at, now() AS db_now, (last_heartbeat->>'ts')::bigint AS heartbeat_ts"
            " FROM gateways WHERE gateway_id = %s",
            (home.gateway.gateway_id,),
        )
        names = [c.name for c in cur.description or []]
        row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def _kinds(db: str, home: SeededHome) -> list[tuple[str, str, bool]]:
    """(kind, state, held back) of the home's alarms, oldest first."""
    return [(a["kind"], a["state"], a["held_by"] is not None) for a in alarms_of(db, home)]


def test_a_gateway_whose_clock_is_slow_is_online_and_its_faults_reach_staff(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome
) -> None:
    with _ingest(stack, db, vault):
        gateway = _Gateway(stack, home, skew_ms=-10 * MINUTE_MS)  # ten minutes slow
        try:
            gateway.status(m.Birth(ts=gateway.clock(), epoch=gateway.epoch, software="t"))
            gateway.heartbeat()
            tick(db, vault)
            gateway.fault(_sensor(home))
            _wait(lambda: _inbox(db, home) == 1, what="the fault in the alarm inbox")
            process(db, vault)
            for _ in range(3):  # it keeps its heartbeats, on time by its own clock
                sent = gateway.heartbeat()
                _wait(lambda: _gateway_row(db, home)["heartbeat_ts"] == sent, what="the heartbeat stored")  # noqa: B023
                tick(db, vault)
        finally:
            gateway.close()
    assert _kinds(db, home) == [("device_offline", "raised", False)]  # told to staff, no gateway_offline
    row = _gateway_row(db, home)
    assert abs((row["db_now"] - row["last_seen_at"]).total_seconds()) < 5, row  # when it was heard, not its clock


def test_a_gateway_whose_clock_is_fast_is_missed_once_it_falls_silent(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome
) -> None:
    set_rule(db, rule="gateway_offline", params={"silence_s": 2}, institution_id=home.institution_id)
    with _ingest(stack, db, vault):
        gateway = _Gateway(stack, home, skew_ms=10 * MINUTE_MS)  # ten minutes fast
        try:
            sent = gateway.heartbeat()
            _wait(lambda: _gateway_row(db, home)["heartbeat_ts"] == sent, what="the heartbeat stored")
        finally:
            gateway.close()  # and silent from now on
    row = _gateway_row(db, home)
    assert row["last_seen_at"] <= row["db_now"], row  # not pinned in the future by its clock
    tick(db, vault)
    assert _kinds(db, home) == []
    time.sleep(2.5)
    tick(db, vault)
    assert _kinds(db, home) == [("gateway_offline", "raised", False)]  # silent 2 s: missed now, not in 10 minutes


class _Watcher:
    """The platform's login watching a gateway's status topic: tells when the broker has published its will."""

    def __init__(self, stack: StackInfo, topic: str) -> None:
        self.wills: list[m.Death] = []
        self._seen = threading.Event()
        endpoint = Endpoint(
            stack.mqtt_host, stack.ports.mqtt_tls, True, stack.ca_file, stack.platform_username,
            stack.platform_password,
        )  # fmt: skip
        self.link = Connection(
            endpoint=endpoint,
            client_id=f"watch-{uuid.uuid4().hex[:8]}",
            session_expiry_s=0,
            subscribe=[topic],
            on_message=self._message,
        )
        self.link.start()
        assert self.link.subscribed.wait(15), self.link.last_error

    def _message(self, message: Message) -> None:
        status = m.decode_status(message.payload)
        if isinstance(status, m.Death) and not status.clean:
            self.wills.append(status)
            self._seen.set()
        self.link.ack([message])

    def wait_will(self, timeout: float = 15) -> m.Death:
        assert self._seen.wait(timeout), "the broker published no will"
        return self.wills[-1]

    def close(self) -> None:
        self.link.stop()


def _connect_with_will(stack: StackInfo, home: SeededHome, will: m.Death, *, delay_s: int) -> paho.Client:
    """The gateway's first connection, whose will the broker publishes ``delay_s`` after losing it (MQTT 5)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"first-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
    client.username_pw_set(home.gateway.username, home.gateway.password)
    client.tls_set(ca_certs=str(stack.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
    will_props.WillDelayInterval = delay_s
    topic = topics.uplink(home.institution_code, home.gateway.gateway_id, topics.Channel.STATUS)
    client.will_set(topic, m.encode(will), qos=1, retain=True, properties=will_props)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect_props.SessionExpiryInterval = 60  # the will waits its delay only while the session lives
    client.connect(stack.mqtt_host, stack.ports.mqtt_tls, keepalive=30, properties=connect_props)
    client.loop_start()
    assert connected.wait(15), "the gateway's first connection failed"
    return client


def _publish(client: paho.Client, topic: str, payloads: Sequence[bytes]) -> None:
    for payload in payloads:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()


def test_a_last_will_the_broker_delivers_after_the_gateway_reconnected_does_not_mark_it_dead(
    stack: StackInfo, db: str, vault: Vault, home: SeededHome
) -> None:
    status_topic = topics.uplink(home.institution_code, home.gateway.gateway_id, topics.Channel.STATUS)
    watcher = _Watcher(stack, status_topic)
    try:
        with _ingest(stack, db, vault):
            will_ts = _now_ms()  # a will carries the time it was registered, at connect
            first = _connect_with_will(stack, home, m.Death(ts=will_ts, clean=False), delay_s=2)
            _publish(first, status_topic, [m.encode(m.Birth(ts=_now_ms(), epoch=1, software="t"))])
            _wait(lambda: _gateway_row(db, home)["last_status"] == "birth", what="the first birth stored")
            # the connection is lost; the gateway is back on a new one at once, and the broker publishes the
            # lost connection's will two seconds later, after the new birth
            first.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
            first.loop_stop()
            again = _Gateway(stack, home, name="again")
            try:
                born = again.clock()
                again.status(m.Birth(ts=born, epoch=1, software="t"))
                assert watcher.wait_will().ts == will_ts
                again.fault(_sensor(home))  # behind the will in the alarm lane: stored after it
                _wait(lambda: _inbox(db, home) == 1, what="the fault in the alarm inbox")
                assert _gateway_row(db, home)["last_status"] == "birth"
                process(db, vault)
                tick(db, vault)
                assert _kinds(db, home) == [("device_offline", "raised", False)]

                # the new connection is lost in turn: its own will (registered when it connected) counts, at once
                again.status(m.Death(ts=born - 1, clean=False))
                _wait(lambda: _gateway_row(db, home)["last_status"] == "death", what="the current will stored")
            finally:
                again.close()
        tick(db, vault)
        assert ("gateway_offline", "raised", False) in _kinds(db, home)
    finally:
        watcher.close()
