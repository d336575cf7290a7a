"""Faults against a stack of this module's own (never the session's): the database stops, the broker stops.

Database down: ingest keeps receiving until the broker's in-flight window is full, acknowledges nothing,
retries, and stores everything once the database is back; killed while the database is down, nothing is
lost either, because the broker still holds every unacknowledged message. Broker down: ingest reconnects
with jittered backoff and resumes its session.
"""

from __future__ import annotations

import itertools
import re
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager

import httpx
import psycopg
import pytest

from eldercare.ingest import gaps
from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack import broker, postgres, service
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from ..conftest import free_ports, free_stack_ports, remove_stack, short_state_dir, start_stack
from ..platform_procs import Proc, run_eldercare, stack_env
from .conftest import new_world
from .helpers import Gateway, duplicate_readings, explained, stored_frames, stored_readings, wait_until


@pytest.fixture(scope="module")
def own_stack() -> Iterator[StackInfo]:
    state_dir = short_state_dir("ingest-faults")
    info = start_stack(state_dir, free_stack_ports())
    migrate(info.database_url)
    yield info
    remove_stack(state_dir)


def _metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )


def _ingest(stack: StackInfo, name: str, port: int) -> AbstractContextManager[Proc]:
    """`eldercare ingest` in a group of its name: sessions left by other tests' processes stay out of it."""
    env = stack_env(stack, ELDERCARE_INGEST_GROUP=f"faults-{name}", ELDERCARE_INGEST_MAINTAIN="false")
    return run_eldercare(name, ["ingest", "--name", name, "--metrics-port", str(port)], env)


def _send(gateway: Gateway, frames: int, *, alarms: int = 0) -> None:
    for _ in range(frames):
        gateway.send(gateway.frame(gateway.beds(5)))
    for _ in range(alarms):
        gateway.send(gateway.frame([gateway.press()]), alarm=True)
    gateway.flush(timeout=30)


def _check(db: str, world: LoadWorld, *, frames: int, readings: int, timeout: float) -> None:
    wait_until(lambda: stored_frames(db, world) >= frames, timeout=timeout, what=f"{frames} frames stored")
    assert stored_frames(db, world) == frames
    assert stored_readings(db, world) == readings
    assert duplicate_readings(db, world) == 0


def test_database_down_nothing_is_acknowledged_and_everything_is_stored_once_it_is_back(own_stack: StackInfo) -> None:
    db = own_stack.database_url
    world = new_world(own_stack, db, beds=10)
    port = free_ports(1)[0]
    gateway = Gateway(own_stack, world)
    try:
        with _ingest(own_stack, "db-fault", port) as ingest:
            ingest.wait_for("subscribed, storing", timeout=30)
            _send(gateway, 20)
            _check(db, world, frames=20, readings=100, timeout=20)
            acked_before = _metric(port, "eldercare_ingest_acked_total")

            postgres.stop(own_stack.state_dir)
            _send(gateway, 40, alarms=3)  # the broker takes them; ingest cannot store them
            wait_until(lambda: _metric(port, "eldercare_ingest_db_errors_total") >= 2, timeout=30, what="retries")
            wait_until(
                lambda: _metric(port, "eldercare_ingest_queue_messages") >= 43, timeout=20, what="43 messages held"
            )
            assert _metric(port, "eldercare_ingest_acked_total") == acked_before  # nothing acknowledged

            service.up(own_stack.state_dir, own_stack.ports)  # starts what is not running: the database
            _check(db, world, frames=63, readings=300, timeout=60)
            wait_until(
                lambda: _metric(port, "eldercare_ingest_acked_total") == acked_before + 43, timeout=20, what="acks"
            )
    finally:
        gateway.close()


def test_killed_while_the_database_is_down_the_broker_still_has_everything(own_stack: StackInfo) -> None:
    db = own_stack.database_url
    world = new_world(own_stack, db, beds=10)
    gateway = Gateway(own_stack, world)
    try:
        with _ingest(own_stack, "db-kill", free_ports(1)[0]) as ingest:
            ingest.wait_for("subscribed, storing", timeout=30)
            _send(gateway, 10)
            _check(db, world, frames=10, readings=50, timeout=20)
            postgres.stop(own_stack.state_dir)
            _send(gateway, 30, alarms=2)
            ingest.wait_for("database unavailable", timeout=20)
            ingest.popen.send_signal(signal.SIGKILL)
            ingest.popen.wait(10)
        service.up(own_stack.state_dir, own_stack.ports)
        with _ingest(own_stack, "db-kill", free_ports(1)[0]) as again:
            again.wait_for("subscribed, storing", timeout=30)
            _check(db, world, frames=42, readings=200, timeout=60)
    finally:
        gateway.close()


def _connect_attempts(log: str) -> list[float]:
    """Seconds of the day of each failed connection attempt of the telemetry lane."""
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d),(\d{3}) WARNING .*broker-fault-telemetry: cannot connect", log)
    return [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in stamps]


def test_broker_down_ingest_reconnects_with_jittered_backoff_and_resumes_its_session(own_stack: StackInfo) -> None:
    db = own_stack.database_url
    world = new_world(own_stack, db, beds=10)
    port = free_ports(1)[0]
    gateway = Gateway(own_stack, world)
    try:
        with _ingest(own_stack, "broker-fault", port) as ingest, explained(ingest):
            ingest.wait_for("subscribed, storing", timeout=30)
            _send(gateway, 15)
            _check(db, world, frames=15, readings=75, timeout=20)

            broker.stop(own_stack.state_dir)  # SIGTERM: the broker saves its sessions
            wait_until(lambda: len(_connect_attempts(ingest.log())) >= 4, timeout=30, what="four reconnect attempts")
            attempts = _connect_attempts(ingest.log())
            waits = [b - a for a, b in itertools.pairwise(attempts)]
            # MQTT_BACKOFF: waits of 0.125-0.25 s, 0.25-0.5 s, 0.5-1 s (each plus a refused connect), ...
            assert 0.1 <= waits[0] <= 0.45, waits
            assert 0.25 <= waits[1] <= 0.7, waits
            assert 0.5 <= waits[2] <= 1.2, waits

            service.up(own_stack.state_dir, own_stack.ports)
            for lane in ("alarm", "telemetry"):
                ingest.wait_for(f"-broker-fault-{lane}: connected (generation 2, session present True)", 10)
                # Mosquitto 2.0.11 routes to the restored shared subscription only once it is subscribed again
                ingest.wait_for(f"-broker-fault-{lane}: subscribed (generation 2)", 10)
            _send(gateway, 25, alarms=2)  # the gateway's own link has reconnected too
            assert gateway.link.puback_reasons == {}  # none "no matching subscribers" (0x10): all were routed
            _check(db, world, frames=42, readings=200, timeout=60)
            assert _metric(port, "eldercare_ingest_mqtt_connects_total") == 4  # two lanes, twice each
    finally:
        gateway.close()


def test_frames_sent_after_a_broker_restart_before_ingest_is_back_are_lost_by_mosquitto_and_seen_as_a_gap(
    own_stack: StackInfo,
) -> None:
    """Mosquitto 2.0.11, measured: a shared subscription restored from the persistence file is not routed to
    until its session reconnects, so the broker acknowledges these frames to the gateway and drops them.
    Ingest cannot prevent it (it reconnects within about 2 s); the gap scan makes it visible."""
    db = own_stack.database_url
    world = new_world(own_stack, db, beds=10)
    gateway = Gateway(own_stack, world)
    try:
        with _ingest(own_stack, "restart-gap", free_ports(1)[0]) as ingest:
            ingest.wait_for("subscribed, storing", timeout=30)
            _send(gateway, 10)  # seq 0..9
            _check(db, world, frames=10, readings=50, timeout=20)
        broker.stop(own_stack.state_dir)
        service.up(own_stack.state_dir, own_stack.ports)
        _send(gateway, 5)  # seq 10..14: acknowledged by the broker, and no ingest session is routed to
        assert gateway.link.puback_reasons == {0x10: 5}  # "no matching subscribers": the broker dropped them
        with _ingest(own_stack, "restart-gap", free_ports(1)[0]) as again:
            again.wait_for("subscribed, storing", timeout=30)
            _send(gateway, 5)  # seq 15..19
            assert gateway.link.puback_reasons == {0x10: 5}  # these were routed: ingest subscribed again
            _check(db, world, frames=15, readings=75, timeout=30)
        with psycopg.connect(db, autocommit=True) as conn:
            scan = gaps.scan(conn, grace_s=0, lookback_s=3600)
            found = gaps.list_gaps(conn, gateway=world.gateways[0].gateway_id)
        assert scan.gaps_found >= 1
        assert [(g.first_seq, g.last_seq, g.missing) for g in found] == [(10, 14, 5)]
    finally:
        gateway.close()
