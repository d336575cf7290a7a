"""Gateway mode: devices speak their vendors' own formats to real ``eldercare gateway`` processes.

One Mosquitto plays the homes' local brokers (each home's devices publish under the home's gateway id, so one
broker serves them all); one ``eldercare gateway`` per institution subscribes to its home's topics with the
shipped vendor mappings (vendor A "acme" JSON, vendor B "lianke" key=value text), detects falls on the
wearables' streams, supervises the devices (on the real clock), keeps everything in its store and forwards
it to the platform over TLS, through a :class:`~eldercare.simulators.run.relay.Relay` that an uplink outage
cuts. Payloads are written by ``eldercare.gateway.vendorsim`` (the inverse of the mappings).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.gateway import vendorsim
from eldercare.simulators import children
from eldercare.simulators.errors import SimError
from eldercare.simulators.run.devices import Said
from eldercare.simulators.run.direct import Target
from eldercare.simulators.run.relay import Relay
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.world.equipment import HEARTBEAT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def config_text(document: dict[str, Any]) -> str:
    """A TOML document: top-level scalars, tables (inner values inline) and arrays of tables."""
    lines: list[str] = []
    for key, value in document.items():
        if not isinstance(value, dict | list):
            lines.append(f"{key} = {_toml(value)}")
    for key, value in document.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {_toml(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


class _Gateway:
    def __init__(self, *, folder: Path, process: subprocess.Popen[bytes], relay: Relay, status_url: str) -> None:
        self.folder = folder
        self.process = process
        self.relay = relay
        self.status_url = status_url
        self.queue = 0


class ViaGateways:
    name = "gateway"

    def __init__(self, scene: Scene, target: Target, *, folder: Path, bed_sample_s: float) -> None:
        if target.ca_file is None:
            raise SimError("gateway mode needs the broker's CA file (the gateways speak TLS)")
        self.scene = scene
        self.target = target
        self.folder = folder.resolve()
        self.bed_sample_s = bed_sample_s
        self._gateways: dict[str, _Gateway] = {}
        self._broker: subprocess.Popen[bytes] | None = None
        self._broker_port = _free_port()
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._unacked = 0
        self._last_poll = 0.0

    # --- start and stop ------------------------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start_broker()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"devices-{self._broker_port}")
        client.max_inflight_messages_set(2000)
        client.on_publish = self._acked
        client.connect("127.0.0.1", self._broker_port)
        client.loop_start()
        self._client = client
        exe = Path(sys.executable).with_name("eldercare")
        for inst in self.scene.world.plan.institutions:
            gw_folder = self.folder / inst.gateway_id
            gw_folder.mkdir(exist_ok=True)
            relay = Relay(target_host=self.target.host, target_port=self.target.port)
            relay.restore()
            local_port = _free_port()
            path = gw_folder / "gateway.toml"
            path.write_text(config_text(self._config(inst.key, gw_folder, relay, local_port)), encoding="utf-8")
            path.chmod(0o600)
            log = (gw_folder / "gateway.log").open("ab")
            process = children.start([str(exe), "gateway", "--config", str(path)], log=log)
            log.close()
            self._gateways[inst.gateway_id] = _Gateway(
                folder=gw_folder, process=process, relay=relay, status_url=f"http://127.0.0.1:{local_port}/api/status"
            )
        self._wait_ready()

    def _start_broker(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.folder / "home-broker.conf"
        run_as = "user root\n" if getpass.getuser() == "root" else ""
        conf.write_text(
            f"listener {self._broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_queued_messages 1000000\nmax_inflight_messages 0\n{run_as}"
        )
        log = (self.folder / "home-broker.log").open("ab")
        try:
            self._broker = children.start([binary, "-c", str(conf)], log=log)
        except OSError as exc:
            raise SimError(f"cannot start the home broker ({binary}): {exc}") from exc
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self._broker_port), timeout=0.2):
                return
            time.sleep(0.05)
        raise SimError(f"the home broker did not listen on {self._broker_port}; see {self.folder}/home-broker.log")

    def _config(self, inst_key: str, folder: Path, relay: Relay, local_port: int) -> dict[str, Any]:
        inst = self.scene.institution(inst_key)
        issued = self.scene.world.issued.institutions[inst_key]
        gw = inst.gateway_id
        return {
            "institution": inst.code,
            "gateway": gw,
            "software": "eldercare-gateway (simulated home)",
            "uplink": {
                "host": relay.host,
                "port": relay.port,
                "ca_file": str(self.target.ca_file),
                "password": issued.gateway_password,
                "heartbeat_s": 10.0,
                "reconnect_min_s": 0.5,
                "reconnect_max_s": 3.0,
                "telemetry_linger_ms": 250,
            },
            "storage": {"path": str(folder / "store.db")},
            "local": {"enabled": True, "host": "127.0.0.1", "port": local_port},
            "sources": [
                {
                    "kind": "mqtt",
                    "name": "home",
                    "host": "127.0.0.1",
                    "port": self._broker_port,
                    "client_id": f"{gw}-home",
                    "subscriptions": [
                        {"topic": f"{gw}/acme/+/up", "vendor": "acme"},
                        {"topic": f"{gw}/lianke/up/+", "vendor": "lianke"},
                    ],
                }
            ],
            "devices": {"known": [{"code": d.code, "class": d.kind} for d in inst.devices]},
            # The heartbeats the devices were registered with (the gateway's defaults are shorter).
            "supervision": {
                "classes": {k: {"heartbeat_s": self._heartbeat(k, v)} for k, v in sorted(HEARTBEAT.items())}
            },
        }

    def _heartbeat(self, kind: str, seconds: int) -> float:
        return max(float(seconds), self.bed_sample_s) if kind == "bed_sensor" else float(seconds)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(self._gateways)
        while waiting and time.monotonic() < deadline:
            for gw in sorted(waiting):
                gateway = self._gateways[gw]
                if gateway.process.poll() is not None:
                    raise SimError(
                        f"gateway {gw} exited ({gateway.process.returncode}); see {gateway.folder}/gateway.log"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    status = httpx.get(gateway.status_url, timeout=1).json()
                    if status["uplink"]["connected"] and all(status["sources"].values()):
                        waiting.discard(gw)
            time.sleep(0.2)
        if waiting:
            raise SimError(f"gateways not connected after {timeout:.0f} s: {', '.join(sorted(waiting))}")

    def close(self) -> None:
        """Let the gateways hand over what they hold (30 s at most), then stop them and the home broker; also
        after a start that failed half way."""
        for gateway in self._gateways.values():
            gateway.relay.restore()
        deadline = time.monotonic() + 30
        running = self._client is not None and all(g.process.poll() is None for g in self._gateways.values())
        while running and time.monotonic() < deadline and self.backlog(refresh=True) > 0:
            time.sleep(0.3)
        for gateway in self._gateways.values():
            gateway.process.terminate()
        for gateway in self._gateways.values():
            try:
                gateway.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gateway.process.kill()
                gateway.process.wait()
            gateway.relay.close()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._broker is not None:
            self._broker.terminate()
            self._broker.wait(timeout=10)

    # --- traffic -------------------------------------------------------------------------------------

    def _acked(self, *_: object) -> None:
        with self._lock:
            self._unacked -= 1

    def deliver(self, said: list[Said]) -> None:
        assert self._client is not None
        for item in said:
            payload = vendorsim.encode(item.vendor, item.message)
            topic = f"{item.gateway}/{vendorsim.topic(item.vendor, item.message.dev)}"
            with self._lock:
                self._unacked += 1
            self._client.publish(topic, payload, qos=1)

    def tick(self, sim_now: int) -> None:
        del sim_now  # the gateways supervise their devices and send heartbeats on their own clock
        for gw, gateway in self._gateways.items():
            if gateway.process.poll() is not None:
                raise SimError(f"gateway {gw} exited ({gateway.process.returncode}); see {gateway.folder}/gateway.log")

    def cut(self, gateway: str) -> None:
        self._gateways[gateway].relay.cut()

    def restore(self, gateway: str) -> None:
        self._gateways[gateway].relay.restore()

    def backlog(self, *, refresh: bool = False) -> int:
        """Messages the home broker has not acknowledged, plus those waiting in the gateways' stores (polled
        at most once a second)."""
        now = time.monotonic()
        if refresh or now - self._last_poll > 1.0:
            self._last_poll = now
            for gateway in self._gateways.values():
                if not gateway.relay.up:
                    gateway.queue = 0  # held on purpose during an outage
                    continue
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    queue = httpx.get(gateway.status_url, timeout=1).json()["queue"]
                    gateway.queue = int(queue["alarm"]) + int(queue["telemetry"])
        with self._lock:
            unacked = self._unacked
        return unacked + sum(g.queue for g in self._gateways.values())
