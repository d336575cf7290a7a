"""``eldercare demo``: the whole platform on this machine, with a simulated nursing home driving it.

Starts the local stack, migrates, registers a demo home once (kept in ``<state>/demo.json``), runs
``eldercare ingest`` and ``eldercare serve`` as child processes, and plays the home's devices: bed
sensors every few seconds, and now and then a button press, some of them cancelled at the bedside.
Every alarm the platform raises is printed with the time it took from the press.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import httpx
import psycopg

from eldercare.devices import messages as m
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import create_user
from eldercare.platform.config import SecuritySettings, state_dir
from eldercare.platform.crypto import Vault
from eldercare.platform.db.migrate import migrate
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.registry.service import GatewayCredentials
from eldercare.platform.stack import service as stack_service
from eldercare.platform.stack.model import Ports, StackInfo
from eldercare.simulators.seed import SeededDevice, SeededHome, seed_home
from eldercare.simulators.uplink import SimUplink, now_ms


def _load_home(path: Path) -> SeededHome | None:
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return SeededHome(
        institution_id=doc["institution_id"],
        institution_code=doc["institution_code"],
        name=doc["name"],
        gateway=GatewayCredentials(**doc["gateway"]),
        devices=[SeededDevice(**d) for d in doc["devices"]],
        staff_username=doc["staff_username"],
        staff_password=doc["staff_password"],
    )


async def _seed(info: StackInfo, key: bytes) -> tuple[SeededHome, str]:
    admin_password = secrets.token_urlsafe(12)
    async with await psycopg.AsyncConnection.connect(info.database_url, autocommit=True) as conn:
        home = await seed_home(
            conn,
            vault=Vault(key),
            broker=LocalBroker(info.state_dir),
            rng=random.Random(),  # noqa: S311 - a simulation, not a secret
            staff_password=secrets.token_urlsafe(12),
        )
        await create_user(conn, username="admin", password=admin_password, role=Role.ADMIN, display_name="平台管理员")
    return home, admin_password


def _child(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("eldercare")
    handle = log.open("ab")
    return subprocess.Popen([str(exe), *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def run(*, duration: float | None, ports: Ports) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base_dir = state_dir()
    print(f"starting the stack in {base_dir} ...", flush=True)
    info = stack_service.up(base_dir, ports)
    migrate(info.database_url)
    key = SecuritySettings(_env_file=base_dir / "eldercare.env").key_bytes()
    demo_file = base_dir / "demo.json"
    home = _load_home(demo_file)
    admin_password = None
    if home is None:
        home, admin_password = asyncio.run(_seed(info, key))
        doc = {**asdict(home), "admin_password": admin_password}
        demo_file.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
        demo_file.chmod(0o600)
    else:
        admin_password = json.loads(demo_file.read_text()).get("admin_password")

    env = dict(os.environ, ELDERCARE_STATE_DIR=str(base_dir), ELDERCARE_ENV_FILE=str(base_dir / "eldercare.env"))
    logs = base_dir / "logs"
    logs.mkdir(exist_ok=True)
    children = [
        _child(["ingest", "--name", "demo"], env, logs / "ingest.log"),
        _child(["serve", "--port", str(info.ports.api)], env, logs / "serve.log"),
    ]
    stop = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    base = f"http://127.0.0.1:{info.ports.api}"
    try:
        _wait_up(f"{base}/healthz")
        print(
            f"\nThe platform is up.\n"
            f"  API:        {base}/api/v1   (OpenAPI: {base}/openapi.json)\n"
            f"  home:       {home.name} ({home.institution_code})\n"
            f"  logins:     staff {home.staff_username} / {home.staff_password}\n"
            f"              admin admin / {admin_password}\n"
            f"  broker:     mqtts://{info.mqtt_host}:{info.ports.mqtt_tls} (CA {info.ca_file})\n"
            f"  gateway:    {home.gateway.gateway_id} / {home.gateway.password}\n"
            f"  logs:       {logs}\n"
            f"  stop:       Ctrl-C (the stack keeps running: `eldercare stack down` stops it)\n",
            flush=True,
        )
        _play(home, info, base, duration=duration, stopped=lambda: stop)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=20)
    return 0


def _wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the platform did not answer at {url}; see the logs under state/logs")


def _play(home: SeededHome, info: StackInfo, base: str, *, duration: float | None, stopped: object) -> None:
    rng = random.Random()  # noqa: S311 - a simulation, not a secret
    uplink = SimUplink(
        institution=home.institution_code,
        gateway=home.gateway.gateway_id,
        password=home.gateway.password,
        host=info.mqtt_host,
        port=info.ports.mqtt_tls,
        ca_file=info.ca_file,
    )
    uplink.connect()
    login = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": home.staff_username, "password": home.staff_password}
    )
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    beds = [d for d in home.devices if d.kind == "bed_sensor"]
    buttons = [d for d in home.devices if d.kind == "button"]
    pressed: dict[str, float] = {}
    seen: set[int] = set()
    started = time.monotonic()
    next_press = started + 3
    assert callable(stopped)
    try:
        while not stopped() and (duration is None or time.monotonic() - started < duration):
            now = now_ms()
            uplink.send(
                [
                    m.BedSample(
                        dev=b.code,
                        ts=now,
                        presence=True,
                        hr=round(rng.gauss(72, 4), 1),
                        rr=round(rng.gauss(16, 1.5), 1),
                        move=round(rng.random() / 5, 2),
                    )
                    for b in beds
                ],
                alarm=False,
            )
            if time.monotonic() >= next_press:
                button = rng.choice(buttons)
                pressed[button.code] = time.time()
                uplink.send([m.Button(dev=button.code, ts=now_ms(), action=m.ButtonAction.PRESS)], alarm=True)
                print(f"  -> {button.code} pressed (bed {button.bed_code})", flush=True)
                next_press = time.monotonic() + rng.uniform(10, 25)
            for alarm in httpx.get(f"{base}/api/v1/alarms", params={"open": "true"}, headers=headers).json():
                if alarm["id"] not in seen:
                    seen.add(alarm["id"])
                    since = time.time() - pressed.get(alarm["device_code"], time.time())
                    print(
                        f"  <- alarm {alarm['id']}: {alarm['kind']} {alarm['priority']} bed {alarm['bed_code']}"
                        f" resident {alarm['person_code']} ({since:.2f} s after the press)",
                        flush=True,
                    )
            time.sleep(0.5)
    finally:
        uplink.close()
