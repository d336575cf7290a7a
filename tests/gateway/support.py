"""Helpers of the gateway tests and benchmarks: a home broker, a registered site, configuration files,
device fleets speaking the vendor formats, and what arrived on the platform."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.devices import codes
from eldercare.devices import messages as m
from eldercare.gateway import mapping_files, vendorsim
from eldercare.gateway import pipeline as gateway_pipeline
from eldercare.gateway.carried import CarriedFile
from eldercare.gateway.config import DevicesConfig, LocalConfig, SupervisionConfig
from eldercare.gateway.local import AlarmHub
from eldercare.gateway.pipeline import FallService, Pipeline
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, Item, Lane, Store, StoreFullError
from eldercare.gateway.supervision import DeviceBook, Supervisor
from eldercare.gateway.worker import StoreWorker
from eldercare.platform.registry import service as registry
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the home's own broker ----------------------------------------------------------------------------


@dataclass
class HomeBroker:
    """A real Mosquitto of the home, plain MQTT on 127.0.0.1, anonymous (the home's LAN)."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.folder}/\nmax_queued_messages 1000000\nmax_inflight_messages 0\n"
            "user root\n"
        )
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise AssertionError(f"home broker did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def home_broker() -> Iterator[HomeBroker]:
    folder = Path(tempfile.mkdtemp(prefix="ec-home-", dir="/tmp"))
    broker = HomeBroker(free_port(), folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


# --- the platform side ----------------------------------------------------------------------------------


@dataclass
class Site:
    institution: str
    institution_id: int
    gateway: str
    password: str
    devices: dict[str, str]  # code -> class


async def _register(url: str, state_dir: Path, rng: random.Random, devices: dict[str, str]) -> Site:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        code = codes.generate_uscc(rng, region6="420502")
        institution_id = await registry.create_institution(
            conn, code=code, name=f"网关测试养老院 {code[-6:]}", kind="residential_home", region_code="420502"
        )
        gateway = await registry.create_gateway(
            conn,
            institution_id=institution_id,
            gateway_id=f"GW-{code[-6:]}",
            name="测试网关",
            broker=LocalBroker(state_dir),
        )
        for device, kind in devices.items():
            await registry.create_device(conn, institution_id=institution_id, code=device, kind=kind)
    return Site(code, institution_id, gateway.gateway_id, gateway.password, devices)


_SEEDS_USED: set[tuple[str, int]] = set()  # (stack's database, seed): a seed makes the institution's code


def register_site(stack: StackInfo, *, seed: int, devices: dict[str, str]) -> Site:
    """An institution, its gateway (with broker credentials) and ``devices`` registered on the platform. ``seed``
    makes its codes: one seed twice on a stack would register the same institution again (a unique key), so it is
    refused here, naming the seed, rather than as a duplicate key far from the cause."""
    key = (stack.database_url, seed)
    assert key not in _SEEDS_USED, f"register_site: seed {seed} is taken on this stack by another test; pick another"
    _SEEDS_USED.add(key)
    return asyncio.run(_register(stack.database_url, stack.state_dir, random.Random(seed), devices))


def fleet(prefix: str, counts: dict[str, int]) -> dict[str, str]:
    """Device codes per class, e.g. ``{"bed_sensor": 3}`` -> ``{"BS-x-000": "bed_sensor", ...}``."""
    short = {"bed_sensor": "BS", "button": "BT", "wearable": "WR", "smoke": "SM", "fall_radar": "FR"}
    return {f"{short[k]}-{prefix}-{i:03d}": k for k, n in counts.items() for i in range(n)}


# --- configuration ------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml(document: dict[str, Any]) -> str:
    """A small TOML writer: top-level scalars, tables (inner tables inline) and arrays of tables."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in document.items():
        if isinstance(value, dict):  # a table; tables inside it are written inline
            tables.append(f"\n[{key}]")
            tables.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"\n[[{key}]]")
                tables.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


@dataclass
class GatewaySetup:
    config: Path
    store: Path
    local_port: int
    http_port: int | None


def write_config(
    folder: Path,
    *,
    site: Site,
    stack: StackInfo,
    home_port: int | None = None,
    http: bool = True,
    uplink: dict[str, Any] | None = None,
    **sections: Any,
) -> GatewaySetup:
    folder.mkdir(parents=True, exist_ok=True)
    local_port = free_port()
    http_port = free_port() if http else None
    sources: list[dict[str, Any]] = []
    if home_port is not None:
        sources.append(
            {
                "kind": "mqtt",
                "name": "home",
                "host": "127.0.0.1",
                "port": home_port,
                "subscriptions": [
                    {"topic": "acme/+/up", "vendor": "acme"},
                    {"topic": "lianke/up/+", "vendor": "lianke"},
                    {"topic": "contract/+", "vendor": "contract"},
                ],
            }
        )
    if http_port is not None:
        sources.append(
            {
                "kind": "http",
                "name": "lan",
                "host": "127.0.0.1",
                "port": http_port,
                "vendors": ["acme", "lianke", "contract"],
            }
        )
    document: dict[str, Any] = {
        "institution": site.institution,
        "gateway": site.gateway,
        "uplink": {
            "host": stack.mqtt_host,
            "port": stack.ports.mqtt_tls,
            "ca_file": str(stack.ca_file),
            "password": site.password,
            "heartbeat_s": 2.0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
            "telemetry_linger_ms": 200,
            **(uplink or {}),
        },
        "storage": {"path": str(folder / "store.db"), **sections.pop("storage", {})},
        "local": {"host": "127.0.0.1", "port": local_port, **sections.pop("local", {})},
        "devices": sections.pop("devices", {"known": [{"code": c, "class": k} for c, k in site.devices.items()]}),
        **sections,
    }
    if sources:
        document["sources"] = sources
    path = folder / "gateway.toml"
    path.write_text(toml(document))
    return GatewaySetup(path, folder / "store.db", local_port, http_port)


# --- devices ------------------------------------------------------------------------------------------


@dataclass
class Sent:
    """What devices had acknowledged (by the home broker's PUBACK or an HTTP 200), per device and type."""

    messages: list[m.DeviceMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: m.DeviceMessage) -> None:
        with self.lock:
            self.messages.append(message)

    def of_type(self, kind: type[m.DeviceMessage]) -> list[m.DeviceMessage]:
        with self.lock:
            return [x for x in self.messages if isinstance(x, kind)]


class MqttDevices:
    """Devices that publish their vendor's format to the home broker (one connection for all of them)."""

    def __init__(self, port: int, *, client_id: str = "devices") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, vendor: str, message: m.DeviceMessage) -> mqtt.MQTTMessageInfo:
        return self.client.publish(vendorsim.topic(vendor, message.dev), vendorsim.encode(vendor, message), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {result!r})")
        time.sleep(interval)


# --- what arrived on the platform -----------------------------------------------------------------------


def stored_bed_times(url: str, site: Site) -> dict[str, list[int]]:
    """Bed sample times (ms) per device code, in time order, with repeats (to count duplicates). Ordered in the
    query: without it the rows came in whatever order the plan gave (the (device, time DESC) index once the
    shared test database had grown), and a comparison with the times as sent failed now and then."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.code, (extract(epoch FROM b.time) * 1000)::bigint FROM bed_readings b"
            " JOIN devices d ON d.id = b.device_id WHERE d.institution_id = %s ORDER BY d.code, b.time",
            (site.institution_id,),
        ).fetchall()
    out: dict[str, list[int]] = {}
    for code, ms in rows:
        out.setdefault(code, []).append(int(ms))
    return out


def stored_events(url: str, site: Site) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(device, time ms, kind, detail) of every device event of the site."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.code, (extract(epoch FROM e.time) * 1000)::bigint, e.kind, e.detail FROM device_events e"
            " JOIN devices d ON d.id = e.device_id WHERE d.institution_id = %s ORDER BY e.time",
            (site.institution_id,),
        ).fetchall()
    return [(str(c), int(t), str(k), dict(d)) for c, t, k, d in rows]


def frames_received(url: str, site: Site) -> list[tuple[str, int, float]]:
    """(lane, seq, received_at epoch s) of the gateway's frames, in the order ingest stored them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT f.lane, f.seq, extract(epoch FROM f.received_at) FROM uplink_frames f"
            " JOIN gateways g ON g.id = f.gateway_pk WHERE g.gateway_id = %s ORDER BY f.received_at, f.seq",
            (site.gateway,),
        ).fetchall()
    return [(str(lane), int(seq), float(at)) for lane, seq, at in rows]


# --- a link that can be cut ---------------------------------------------------------------------------


class LinkCutter:
    """A TCP relay between the gateway and the platform's broker: ``cut()`` refuses and drops connections
    (the home's internet link is down), ``restore()`` lets them through again. TLS passes through untouched."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


# --- a fleet of devices sending at a steady rate ----------------------------------------------------------


class Fleet:
    """Bed sensors reporting every ``period_s`` and buttons pressed now and then, over the home broker (vendor
    A for beds, vendor B for buttons) and over HTTP. A message counts as acknowledged when the home broker
    sent its PUBACK or the gateway answered 200; HTTP messages not acknowledged are sent again next round,
    as a device would."""

    def __init__(
        self,
        *,
        mqtt_beds: list[str],
        http_beds: list[str],
        buttons: list[str],
        home_port: int | None,
        http_url: str | None,
        t0: int,
        period_s: float = 1.0,
        press_every: int = 3,
    ) -> None:
        self.mqtt_beds, self.http_beds, self.buttons = mqtt_beds, http_beds, buttons
        self.http_url = http_url
        self.t0, self.period_s, self.press_every = t0, period_s, press_every
        self.acked = Sent()
        self.http_failures = 0
        self.rounds = 0
        self._pending_mqtt: list[tuple[mqtt.MQTTMessageInfo, m.DeviceMessage]] = []
        self._retry: list[tuple[str, m.DeviceMessage]] = []
        self._devices = MqttDevices(home_port, client_id=f"fleet-{t0}") if home_port is not None else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Sent:
        self._stop.set()
        self._thread.join(60)
        if self._devices is not None:
            for info, message in self._pending_mqtt:
                info.wait_for_publish(30)
                if info.is_published():
                    self.acked.add(message)
            self._devices.close()
        return self.acked

    def _post(self, client: Any, vendor: str, message: m.DeviceMessage) -> bool:
        import httpx

        try:
            reply = client.post(f"{self.http_url}/{vendor}", content=vendorsim.encode(vendor, message), timeout=5)
        except httpx.HTTPError:
            self.http_failures += 1
            return False
        if reply.status_code == 200:
            self.acked.add(message)
            return True
        self.http_failures += 1
        return False

    def _run(self) -> None:
        import httpx

        with httpx.Client() as client:
            while not self._stop.is_set():
                started = time.monotonic()
                n = self.rounds
                ts = self.t0 + round(n * self.period_s * 1000)
                retry, self._retry = self._retry, []
                for vendor, message in retry:
                    if not self._post(client, vendor, message):
                        self._retry.append((vendor, message))
                for i, dev in enumerate(self.mqtt_beds):
                    sample = m.BedSample(dev=dev, ts=ts + i % 1000, presence=True, hr=60.0 + n % 40, rr=16.0)
                    assert self._devices is not None
                    self._pending_mqtt.append((self._devices.send("acme", sample), sample))
                for i, dev in enumerate(self.http_beds):
                    sample = m.BedSample(dev=dev, ts=ts + i % 1000, presence=True, hr=70.0, rr=15.0)
                    if not self._post(client, "acme", sample):
                        self._retry.append(("acme", sample))
                if self.buttons and n % self.press_every == 0:
                    dev = self.buttons[(n // self.press_every) % len(self.buttons)]
                    press = m.Button(dev=dev, ts=ts + 7, action=m.ButtonAction.PRESS)
                    if self._devices is not None:
                        self._pending_mqtt.append((self._devices.send("lianke", press), press))
                    elif not self._post(client, "lianke", press):
                        self._retry.append(("lianke", press))
                self._collect()
                self.rounds += 1
                self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def _collect(self) -> None:
        still: list[tuple[mqtt.MQTTMessageInfo, m.DeviceMessage]] = []
        for info, message in self._pending_mqtt:
            if info.is_published():
                self.acked.add(message)
            else:
                still.append((info, message))
        self._pending_mqtt = still


def expected_beds(sent: Sent) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for message in sent.of_type(m.BedSample):
        out.setdefault(message.dev, []).append(message.ts)
    return {dev: sorted(times) for dev, times in out.items()}


def sorted_stored_beds(url: str, site: Site) -> dict[str, list[int]]:
    return {dev: sorted(times) for dev, times in stored_bed_times(url, site).items()}


def bed_difference(expected: dict[str, list[int]], stored: dict[str, list[int]]) -> str:
    """What is missing and what is extra, for an assertion message."""
    missing = {d: sorted(set(t) - set(stored.get(d, []))) for d, t in expected.items()}
    extra = {d: sorted(Counter(t) - Counter(expected.get(d, []))) for d, t in stored.items()}
    missing = {d: t for d, t in missing.items() if t}
    extra = {d: t for d, t in extra.items() if t}
    n_missing, n_extra = sum(map(len, missing.values())), sum(map(len, extra.values()))
    return f"missing {n_missing} {list(missing.items())[:3]}; extra {n_extra} {list(extra.items())[:3]}"


# --- the pipeline over a store of its own, and a store full of alarms ---------------------------------------


def pipeline_over(
    store: Store,
    worker: StoreWorker,
    stats: Stats,
    falls: FallService | None,
    *,
    forward_samples: bool = False,
    supervisor: Supervisor | None = None,
    carried_file: CarriedFile | None = None,
) -> Pipeline:
    """The gateway's pipeline over ``store``, as the service builds it, without sources or uplink."""
    if supervisor is None:
        supervisor = Supervisor(
            config=SupervisionConfig(), devices={}, active=(), now=time.monotonic(), clock_ms=gateway_pipeline.now_ms
        )
    return Pipeline(
        mappings=mapping_files.load_all(),
        book=DeviceBook(DevicesConfig(auto_discover=True), store.devices()),
        supervisor=supervisor,
        falls=falls,
        forward_samples=forward_samples,
        worker=worker,
        stats=stats,
        hub=AlarmHub(LocalConfig(), institution="524205024154895658", gateway="GW-1", stats=stats),
        on_stored=lambda: None,
        carried_file=carried_file,
    )


def fill_with_alarms(store: Store) -> None:
    """Alarms, which are never dropped, until the store refuses more: by fifties, then to the last one. (Fall
    detector state still has room: see ``store.DETECTOR_SHARE``.)"""
    t0 = 1_763_775_000_000
    for size in (50, 1):
        for n in itertools.count():
            presses = [m.Button(dev=f"BT-{size}-{n}-{k}", ts=t0 + k, action=m.ButtonAction.PRESS) for k in range(size)]
            try:
                store.commit([Batch(items=[Item(Lane.ALARM, m.encode(p) + b" " * 500, p) for p in presses])])
            except StoreFullError:
                break


def disk_fails(store: Store, *, failing: bool) -> None:
    """The store's disk refuses writes (``failing``), or takes them again: every commit on it fails meanwhile."""
    store._disk.execute(f"PRAGMA query_only = {'ON' if failing else 'OFF'}")


def send_alarms(store: Store) -> None:
    """The uplink sends every alarm and the platform's broker acknowledges them: the store has room again."""
    while frame := store.cut_frame(Lane.ALARM, max_msgs=200, max_bytes=64 * 1024, sent=0):
        store.commit([], acked=[frame.seq])


async def still_carrying(pipeline: Pipeline, within: float = 2.0) -> bool:
    """Whether the pipeline still holds what the gateway made in refused commits: it is held between retries,
    and in the store worker's hands while a retry is being committed, so look more than once."""
    deadline = time.monotonic() + within
    while not pipeline.carrying:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True
