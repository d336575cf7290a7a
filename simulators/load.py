"""``eldercare simulate load``: gateways publishing bed-sensor frames at a fixed rate, for the benchmarks.

A load world is one home with G gateways and N bed sensors (plus a button per gateway for alarm frames),
registered through the registry's services like any other home. Each gateway publishes over its own MQTT
login and connection (TLS, like a real gateway, unless told otherwise), frames of contract v1 whose
``sent`` is the time of publishing, ``seq`` counting from 0 in a new epoch per run and shared by both
lanes. The frames are built from pre-encoded pieces and published by ``publisher.Publisher``, every
connection served from this one thread (paho costs 40 µs a publish here, a thread per connection more),
so one process reaches 2,000 frames of 50 readings a second. It reports what it actually sent and what the
broker acknowledged.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eldercare.devices import codes, topics
from eldercare.ingest.mqtt import Endpoint
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry import service as registry
from eldercare.platform.registry.service import BrokerProvisioner
from eldercare.simulators.publisher import Publisher

_POOL = 1024
_TICK_S = 0.005


@dataclass(frozen=True, slots=True)
class LoadGateway:
    gateway_id: str
    password: str
    beds: list[str]
    button: str


@dataclass(frozen=True, slots=True)
class LoadWorld:
    institution_code: str
    institution_id: int
    gateways: list[LoadGateway]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        path.chmod(0o600)  # gateway passwords

    @classmethod
    def load(cls, path: Path) -> LoadWorld:
        document = json.loads(path.read_text())
        gateways = [LoadGateway(**g) for g in document["gateways"]]
        return cls(document["institution_code"], document["institution_id"], gateways)


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    tls: bool
    ca_file: Path | None


@dataclass(slots=True)
class LoadReport:
    institution_code: str
    gateways: int
    readings_per_frame: int
    target_rate: float  # telemetry frames per second asked for
    duration_s: float  # asked for
    elapsed_s: float = 0.0  # from the first publish to the last
    frames: int = 0
    readings: int = 0
    alarm_frames: int = 0
    acknowledged: int = 0  # PUBACKs from the broker, both lanes
    unacknowledged: int = 0
    max_behind_s: float = 0.0  # how far the schedule ever fell behind
    first_sent_ms: int = 0
    last_sent_ms: int = 0
    alarm_sent_ms: list[int] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s else 0.0

    def as_json(self) -> str:
        document = asdict(self)
        document["frames_per_s"] = round(self.frames_per_s, 1)
        document["readings_per_s"] = round(self.readings / self.elapsed_s, 1) if self.elapsed_s else 0.0
        return json.dumps(document)


async def create_world(
    conn: AsyncConn, *, broker: BrokerProvisioner, gateways: int, beds: int, rng: random.Random, region6: str = "420502"
) -> LoadWorld:
    code = codes.generate_uscc(rng, region6=region6)
    suffix = code[-6:]
    institution_id = await registry.create_institution(
        conn, code=code, name=f"负载测试养老院 {suffix}", kind="residential_home", region_code=region6, capacity=beds
    )
    made: list[LoadGateway] = []
    for g in range(gateways):
        credentials = await registry.create_gateway(
            conn, institution_id=institution_id, gateway_id=f"LD-{suffix}-{g:03d}", name=f"负载网关 {g}", broker=broker
        )
        share = range(g, beds, gateways)  # beds dealt round-robin over the gateways
        bed_codes = [f"LB-{suffix}-{b:05d}" for b in share]
        for bed_code in bed_codes:
            await registry.create_device(conn, institution_id=institution_id, code=bed_code, kind="bed_sensor")
        button = f"LT-{suffix}-{g:03d}"
        await registry.create_device(conn, institution_id=institution_id, code=button, kind="button", heartbeat_s=300)
        made.append(LoadGateway(credentials.gateway_id, credentials.password, bed_codes, button))
    return LoadWorld(code, institution_id, made)


class _Frames:
    """Builds one gateway's frames from pre-encoded pieces: only numbers are formatted per reading."""

    def __init__(self, world: LoadWorld, gateway: LoadGateway, *, epoch: int, rng: random.Random) -> None:
        self.seq = 0
        self.epoch = epoch
        self._beds = [b'{"t":"bed","dev":"%s","ts":' % code.encode() for code in gateway.beds]
        self._next_bed = 0
        self._last_ts = [0] * len(self._beds)
        self._button = b'{"t":"button","dev":"%s","ts":%%d,"action":"press"}' % gateway.button.encode()
        self._tails = [
            b',"presence":true,"hr":%.1f,"rr":%.1f,"move":%.2f}'
            % (rng.gauss(72, 8), rng.gauss(16, 2), rng.random() * 0.3)
            for _ in range(_POOL)
        ]
        self._tail = 0
        self.telemetry = topics.uplink(world.institution_code, gateway.gateway_id, topics.Channel.TELEMETRY)
        self.alarm = topics.uplink(world.institution_code, gateway.gateway_id, topics.Channel.ALARM)

    def _envelope(self, sent: int, body: bytes) -> bytes:
        seq, self.seq = self.seq, self.seq + 1
        return b'{"v":1,"epoch":%d,"seq":%d,"sent":%d,"msgs":[%s]}' % (self.epoch, seq, sent, body)

    def readings(self, count: int, sent: int) -> bytes:
        beds, n, last, tails = self._beds, len(self._beds), self._last_ts, self._tails
        start, tail = self._next_bed, self._tail
        self._next_bed, self._tail = (start + count) % n, (tail + count) % _POOL
        parts = []
        for j in range(count):
            bed = (start + j) % n
            ts = max(sent - j, last[bed] + 1)  # a bed never has two readings at the same instant
            last[bed] = ts
            parts.append(beds[bed] + b"%d" % ts + tails[(tail + j) % _POOL])
        return self._envelope(sent, b",".join(parts))

    def press(self, sent: int) -> bytes:
        return self._envelope(sent, self._button % sent)


def run_load(
    world: LoadWorld,
    *,
    target: Target,
    rate: float,
    duration: float,
    readings: int = 50,
    alarm_rate: float = 0.0,
    seed: int = 1,
) -> LoadReport:
    """Publish ``rate`` telemetry frames a second (round-robin over the gateways) for ``duration`` seconds."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    report = LoadReport(world.institution_code, len(world.gateways), readings, rate, duration)
    epoch = time.time_ns() // 1_000_000
    frames = [_Frames(world, g, epoch=epoch, rng=rng) for g in world.gateways]
    publisher = Publisher()
    try:
        for g in world.gateways:
            endpoint = Endpoint(target.host, target.port, target.tls, target.ca_file, g.gateway_id, g.password)
            publisher.connect(endpoint, client_id=f"load-{g.gateway_id}")
        _publish(report, frames, publisher, rate=rate, duration=duration, readings=readings, alarm_rate=alarm_rate)
        deadline = time.monotonic() + 30
        while publisher.inflight() and time.monotonic() < deadline:
            publisher.pump(0.05)
    finally:
        report.acknowledged = publisher.confirmed()
        report.unacknowledged = publisher.inflight()
        publisher.close()
    return report


def _publish(
    report: LoadReport,
    frames: list[_Frames],
    publisher: Publisher,
    *,
    rate: float,
    duration: float,
    readings: int,
    alarm_rate: float,
) -> None:
    total = int(rate * duration)
    alarm_every = 1.0 / alarm_rate if alarm_rate > 0 else float("inf")
    started = time.perf_counter()
    next_alarm = started + alarm_every / 2
    done = 0
    gateways = len(frames)
    next_tick = started
    while done < total:
        now = time.perf_counter()
        if now < next_tick:
            publisher.pump(next_tick - now)  # acknowledgements only, until the next tick
            continue
        # Frames go out in ticks of 5 ms, a few per write to each gateway's socket (a send costs 5-15 µs,
        # measured); each frame still carries the time it was sent.
        next_tick = now + _TICK_S
        due = min(total, int((now - started) * rate) + 1)
        if due <= done:
            continue
        report.max_behind_s = max(report.max_behind_s, now - (started + done / rate))
        sent = time.time_ns() // 1_000_000
        while done < due:
            index = done % gateways
            payload = frames[index].readings(readings, sent)
            while not publisher.queue(index, frames[index].telemetry, payload):
                publisher.pump(0.01)  # that gateway's window at the broker is full
            done += 1
        report.first_sent_ms = report.first_sent_ms or sent
        report.last_sent_ms = sent
        if now >= next_alarm:
            index = report.alarm_frames % gateways
            while not publisher.queue(index, frames[index].alarm, frames[index].press(sent)):
                publisher.pump(0.01)
            report.alarm_frames += 1
            report.alarm_sent_ms.append(sent)
            next_alarm += alarm_every
        publisher.pump(0.0)
    report.elapsed_s = time.perf_counter() - started
    report.frames = done
    report.readings = done * readings
