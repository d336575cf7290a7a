"""Helpers of the ingest tests: gateways that publish real frames over TLS, waiting, counting rows."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.ingest.mqtt import Connection, Endpoint
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadGateway, LoadWorld

from ..platform_procs import stack_env

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(every)
        value = check()
    return value


def ingest_cli(stack: StackInfo, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``eldercare ingest ARGS...`` run as an operator would, against the test stack (with ``env`` added)."""
    exe = Path(sys.executable).with_name("eldercare")
    return subprocess.run(
        [str(exe), "ingest", *args],
        env=stack_env(stack, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Gateway:
    """One gateway of a load world publishing contract frames over its own TLS login (QoS 1)."""

    def __init__(self, stack: StackInfo, world: LoadWorld, index: int = 0, *, epoch: int | None = None) -> None:
        self.world = world
        self.config: LoadGateway = world.gateways[index]
        self.epoch = epoch if epoch is not None else now_ms()
        self.seq = 0
        self._last_ts = 0
        endpoint = Endpoint(
            stack.mqtt_host, stack.ports.mqtt_tls, True, stack.ca_file, self.config.gateway_id, self.config.password
        )
        self.link = Connection(endpoint=endpoint, client_id=f"test-{self.config.gateway_id}", session_expiry_s=0)
        self.link.start()
        if not self.link.wait_connected(15):
            raise AssertionError(f"gateway {self.config.gateway_id} could not connect: {self.link.last_error}")

    def topic(self, *, alarm: bool) -> str:
        channel = topics.Channel.ALARM if alarm else topics.Channel.TELEMETRY
        return topics.uplink(self.world.institution_code, self.config.gateway_id, channel)

    def frame(self, messages: Sequence[m.DeviceMessage], *, seq: int | None = None, sent: int | None = None) -> m.Frame:
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        return m.Frame(v=1, epoch=self.epoch, seq=seq, sent=sent or now_ms(), msgs=list(messages))

    def send(self, frame: m.Frame | bytes, *, alarm: bool = False) -> None:
        payload = frame if isinstance(frame, bytes) else m.encode(frame)
        assert self.link.publish(self.topic(alarm=alarm), payload), "publish window stayed full"

    def beds(self, count: int, *, ts: int | None = None) -> list[m.DeviceMessage]:
        """``count`` bed samples; without ``ts``, instants never repeat for a device of this gateway."""
        if ts is None:
            ts = self._last_ts = max(now_ms(), self._last_ts + count)
        beds = self.config.beds
        return [
            m.BedSample(dev=beds[i % len(beds)], ts=ts - i, presence=True, hr=60.0 + i % 30, rr=14.0, move=0.1)
            for i in range(count)
        ]

    def press(self, *, ts: int | None = None) -> m.Button:
        return m.Button(dev=self.config.button, ts=ts or now_ms(), action=m.ButtonAction.PRESS)

    def flush(self, timeout: float = 15) -> None:
        wait_until(lambda: self.link.inflight() == 0, timeout=timeout, what="the broker to acknowledge every publish")

    def close(self) -> None:
        self.link.stop()


@contextmanager
def gateways(stack: StackInfo, world: LoadWorld) -> Iterator[list[Gateway]]:
    links = [Gateway(stack, world, i) for i in range(len(world.gateways))]
    try:
        yield links
    finally:
        for link in links:
            link.close()


def scalar(db: str, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    with psycopg.connect(db) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return row[0]


def stored_frames(db: str, world: LoadWorld) -> int:
    """Frames of the world's gateways in uplink_frames."""
    return int(
        scalar(
            db,
            "SELECT count(*) FROM uplink_frames f JOIN gateways g ON g.id = f.gateway_pk"
            " JOIN institutions i ON i.id = g.institution_id WHERE i.code = %s",
            (world.institution_code,),
        )
    )


def stored_readings(db: str, world: LoadWorld) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM bed_readings r JOIN devices d ON d.id = r.device_id WHERE d.institution_id = %s",
            (world.institution_id,),
        )
    )


def duplicate_readings(db: str, world: LoadWorld) -> int:
    """Readings stored more than once (same device and instant): must be 0."""
    return int(
        scalar(
            db,
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM bed_readings r"
            " JOIN devices d ON d.id = r.device_id WHERE d.institution_id = %s GROUP BY r.device_id, r.time) s",
            (world.institution_id,),
        )
    )


@contextmanager
def explained(*procs: Any) -> Iterator[None]:
    """On a failed assertion, add the last lines of each process's log (a ``Proc``) to the message."""
    try:
        yield
    except AssertionError as exc:
        logs = "\n".join(f"--- {p.name} ---\n" + "\n".join(p.lines[-60:]) for p in procs)
        raise AssertionError(f"{exc}\n{logs}") from exc


def forget_rates(db: str, world: LoadWorld) -> None:
    """Remove a test home's readings and roll-ups: their rates are health data, not to be left in the shared
    database after the test."""
    with psycopg.connect(db, autocommit=True) as conn:
        devices = "(SELECT id FROM devices WHERE institution_id = %s)"
        for table in ("bed_readings", "bed_hourly", "bed_daily"):
            conn.execute(f"DELETE FROM {table} WHERE device_id IN {devices}", (world.institution_id,))
