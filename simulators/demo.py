"""``eldercare demo``: the whole platform on this machine, filled and driven by the world simulator.

Starts the local stack, migrates, runs ``eldercare ingest`` and ``eldercare serve`` as child processes,
creates a small world through the API the first time (a demo admin, then ``simulate world``: 3 homes of 8-16
beds in Yichang and 9 home-care households of two providers, some elders living alone with a history of visits;
kept in ``<state>/demo-world.json``) and runs it
(``simulate run``): every device of every home, through real gateways speaking the vendors' formats, with the
``demo`` incident rates (something happens every half minute or so). Every happening is printed as it is
injected, and every alarm the platform raises with the time it took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from eldercare.ingest import rollups
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import create_user
from eldercare.platform.db.migrate import MigrationError, migrate
from eldercare.platform.envfile import state_dir
from eldercare.platform.stack import service as stack_service
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.model import Ports, StackInfo
from eldercare.simulators import children, demo_month
from eldercare.simulators.errors import SimError
from eldercare.simulators.run import commands as run_commands
from eldercare.simulators.run import state as run_state
from eldercare.simulators.run.carers import Carers
from eldercare.simulators.run.direct import Target
from eldercare.simulators.run.incidents import Happening
from eldercare.simulators.run.runner import execute
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.world import commands as world_commands
from eldercare.simulators.world import model as world_model

ADMIN = "demo-admin"
SHOWN = {"press", "fall", "wander", "smoke", "silent", "outage", "battery_low", "battery_empty", "bed_exit"}


def _admin(info: StackInfo, folder: Path) -> str:
    """The demo admin's password: created once (as `eldercare users add` would), kept in the state folder."""
    path = folder / "demo-admin.json"
    if path.exists():
        return str(json.loads(path.read_text())["password"])
    password = secrets.token_urlsafe(12)

    async def make() -> None:
        async with await psycopg.AsyncConnection.connect(info.database_url, autocommit=True) as conn:
            await create_user(conn, username=ADMIN, password=password, role=Role.ADMIN, display_name="演示管理员")

    try:
        asyncio.run(make())
    except psycopg.errors.UniqueViolation:
        raise SimError(
            f"user {ADMIN} exists but {path} is gone: reset its password with the API, or `make clean`"
        ) from None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": ADMIN, "password": password}, handle)
    return password


def _regulator(base: str, folder: Path, admin_password: str, region: str) -> str:
    """The demo regulator's password (the region's civil-affairs office): created once through the API by the
    demo admin, kept in the state folder."""
    path = folder / "demo-regulator.json"
    if path.exists():
        return str(json.loads(path.read_text())["password"])
    password = secrets.token_urlsafe(12)
    with httpx.Client(timeout=30) as http:
        office = demo_month.Office(base, http)
        auth = office.login(ADMIN, admin_password)
        body = {
            "username": demo_month.REGULATOR,
            "password": password,
            "role": "regulator",
            "region_code": region,
            "display_name": "民政局（演示）",
        }
        office.call(f"create the regulator {demo_month.REGULATOR}", "POST", "/users", auth, json=body)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": demo_month.REGULATOR, "password": password}, handle)
    return password


def _child(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("eldercare")
    with log.open("ab") as handle:
        return children.start([str(exe), *args], env=env, log=handle)


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


def _world(folder: Path, base: str, password: str, institutions: int) -> world_model.World:
    path = folder / "demo-world.json"
    if path.exists():
        return world_model.load(path)
    print(f"creating the demo world through {base} (once; kept in {path}) ...", flush=True)
    options = world_commands.options(
        region="4205",
        institutions=institutions,
        households=3 * institutions,  # from 6, two providers: one visits its elders living alone on time, one not
        seed=secrets.randbelow(1_000_000),
        beds="8-16",
        as_of=None,
        anchors=None,
    )
    return world_commands.make_world(options, api=base, admin=ADMIN, password=password, out=path, progress=print)


def _logins(world: world_model.World) -> list[str]:
    inst = world.plan.institutions[0]
    users = world.issued.institutions[inst.key].users
    head, nurse = inst.staff[0].username, inst.staff[1].username
    lines = [f"head  {head} / {users[head][1]}   ({inst.name})", f"staff {nurse} / {users[nurse][1]}"]
    family = next((p.family_user.username for p in inst.persons if p.family_user), None)
    if family:
        lines.append(f"family {family} / {users[family][1]}")
    # the home-care provider that missed visits (visits.py): its handover page lists elders overdue for one
    late = [i for i in world.plan.institutions if i.kind == "home_care_provider"][1:2]
    for home in late:
        carer = home.staff[1].username
        alone = sum(p.lives_alone_since is not None for p in home.persons)
        lines.append(
            f"staff {carer} / {world.issued.institutions[home.key].users[carer][1]}"
            f"   ({home.name}: {alone} living alone, visits missed: /handover)"
        )
    return lines


def _both(*calls: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def call(line: dict[str, Any]) -> None:
        for each in calls:
            each(line)

    return call


class AlarmPrinter:
    """Prints each new alarm with how long after the simulated devices sent the happening it took."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.password = password
        self.sent: dict[str, int] = {}  # device or gateway -> sent_ms of its latest happening
        self.seen: set[int] = set()
        self.stop = threading.Event()
        self.since = datetime.now(UTC).isoformat()  # alarms of earlier runs are not this run's

    def on_truth(self, line: dict[str, Any]) -> None:
        if line.get("kind") not in SHOWN:
            return
        target = line.get("device") or line.get("gateway")
        if target and "sent_ms" in line:
            self.sent[str(target)] = int(line["sent_ms"])
        where = line.get("bed_label") or line.get("gateway") or ""
        print(
            f"  -> {line['time'][11:19]} {line['kind']} {target or ''} {where}"
            f" {json.dumps(line.get('detail', {}), ensure_ascii=False)}",
            flush=True,
        )

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            token = ""
            while not self.stop.wait(1.0):
                try:
                    if not token:
                        reply = http.post(
                            f"{self.base}/api/v1/auth/login", json={"username": ADMIN, "password": self.password}
                        )
                        token = str(reply.json()["token"])
                    alarms = http.get(
                        f"{self.base}/api/v1/alarms",
                        params={"open": "true", "since": self.since},
                        headers={"Authorization": f"Bearer {token}"},
                    ).json()
                except (httpx.HTTPError, KeyError, ValueError):
                    token = ""
                    continue
                for alarm in sorted(alarms, key=lambda a: a["id"]):
                    if alarm["id"] in self.seen:
                        continue
                    self.seen.add(alarm["id"])
                    target = alarm["device_code"] or alarm["detail"].get("gateway")
                    sent = self.sent.get(str(target))
                    raised = int(time.time() * 1000) if sent is None else _ms(alarm["raised_at"])
                    after = f" ({(raised - sent) / 1000:.2f} s after the devices sent it)" if sent else ""
                    print(
                        f"  <- alarm {alarm['id']}: {alarm['kind']} {alarm['priority']} {target or ''}"
                        f" bed {alarm['bed_code']} resident {alarm['person_code']}{after}",
                        flush=True,
                    )


def _opening(world: world_model.World, start: int, speed: float | None) -> list[Happening]:
    """Something to see in the first minute, whatever the random draws: a press the carer on duty answers
    (cancelled at the bedside after ten minutes if no one comes), another resident's accidental one, and a
    fall seen by a radar (real seconds after the start)."""
    scene = Scene.of(world)
    elders = [e for e in scene.elders.values() if "button" in e.devices]
    if not elders:
        return []
    scale = speed or 60.0

    def at(seconds: float) -> int:
        return start + int(seconds * scale * 1000)

    first = elders[0]
    # the accidental press is someone else's: on the first's button it would join the open alarm and cancel it
    other = elders[1] if len(elders) > 1 else first
    accidental = 45 if other is not first else 15 + 10 * 60 + 30
    out = [
        Happening(
            kind="press",
            t=at(15),
            until=at(15 + 10 * 60),
            institution=first.institution,
            person=first.key,
            device=first.devices["button"],
            origin="demo",
            detail={"accidental": False},
        ),
        Happening(
            kind="press",
            t=at(accidental),
            until=at(accidental + 3),
            institution=other.institution,
            person=other.key,
            device=other.devices["button"],
            origin="demo",
            detail={"accidental": True},
        ),
    ]
    radar = next((e for e in elders if "fall_radar" in e.devices), None)
    if radar is not None:
        out.append(
            Happening(
                kind="fall",
                t=at(60),
                until=at(60) + 10 * 60_000,
                institution=radar.institution,
                person=radar.key,
                device=radar.devices["fall_radar"],
                origin="demo",
                detail={"source": "radar", "confidence": 0.93, "before_s": 60},
            )
        )
    return out


def _staff_line(carers: Carers | None) -> str:
    if carers is None:
        return "not simulated away from real speed (the platform stamps their actions with its own clock)"
    return "the carer on shift answers alarms and walks night rounds: " + "; ".join(
        f"{h.plan.name} acknowledges in about {h.diligence.ack_s:.0f} s" for h in carers.homes
    )


def _say(line: str) -> None:
    print(line, flush=True)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _last_month(
    info: StackInfo, base: str, passwords: tuple[str, str], target: Target, hold: demo_month.RetentionHold | None
) -> tuple[demo_month.Verified | None, bool]:
    """Last month, made if it is not yet (:func:`demo_month.live_month`), and whether Ctrl-C stopped the demo."""
    base_dir = info.state_dir
    with run_commands.stop_on_signals() as stop:
        try:
            month = demo_month.live_month(
                base_dir=base_dir,
                world_path=base_dir / "demo-world.json",
                base=base,
                database_url=info.database_url,
                target=target,
                admin=(ADMIN, passwords[0]),
                regulator=(demo_month.REGULATOR, passwords[1]),
                stop=stop,
                progress=run_commands.progress,
                hold=hold,
            )
        except (SimError, httpx.HTTPError, psycopg.Error, rollups.RawDataGoneError) as exc:  # the demo goes on
            # A month whose raw data retention dropped cannot be made again from this state: trying it at the
            # next start would fail the same way.
            after = (
                f"it cannot be made from this state: stop the demo and remove {base_dir} to start afresh"
                if isinstance(exc, rollups.RawDataGoneError)
                else "it is tried again at the next start"
            )
            print(f"eldercare demo: last month not made ({exc}); {after}", file=sys.stderr, flush=True)
            return None, stop.is_set()  # the lock stays until the demo ends: what is stored of the month is kept
        if hold is not None and not stop.is_set():
            hold.release()  # made (released already), or nothing to make
        return month, stop.is_set()


def run(
    *,
    duration: float | None,
    ports: Ports,
    institutions: int = 3,
    via: str = "gateway",
    speed: str = "1",
    last_month: bool = True,
) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base_dir = state_dir()
    print(f"starting the stack in {base_dir} ...", flush=True)
    try:
        info = stack_service.up(base_dir, ports)
        migrate(info.database_url)
        password = _admin(info, base_dir)
    except (StackError, MigrationError, SimError) as exc:
        print(f"eldercare demo: {exc}", file=sys.stderr)
        return 1
    env = dict(os.environ, ELDERCARE_STATE_DIR=str(base_dir), ELDERCARE_ENV_FILE=str(base_dir / "eldercare.env"))
    logs = base_dir / "logs"
    logs.mkdir(exist_ok=True)
    # the retention job's lock while last month is made, taken before ingest starts (released once it is rolled up)
    hold = demo_month.RetentionHold(info.database_url) if last_month and demo_month.pending(base_dir) else None
    children = [
        _child(["ingest", "--name", "demo"], env, logs / "ingest.log"),
        _child(["serve", "--port", str(info.ports.api)], env, logs / "serve.log"),
    ]
    base = f"http://127.0.0.1:{info.ports.api}"
    printer = AlarmPrinter(base, password)
    try:
        _wait_up(f"{base}/healthz")
        world = _world(base_dir, base, password, institutions)
        regulator = _regulator(base, base_dir, password, world.plan.region)
        target = Target(info.mqtt_host, info.ports.mqtt_tls, str(info.ca_file))
        month: demo_month.Verified | None = None
        if last_month:
            month, stopped = _last_month(info, base, (password, regulator), target, hold)
            if stopped:
                return 0
        state_path, truth = base_dir / "demo-run.json", base_dir / "demo-truth.jsonl"
        for old in (state_path, truth):
            old.unlink(missing_ok=True)
        sim_speed = run_commands.parse_speed(speed)
        state = run_commands.new_state(
            world=base_dir / "demo-world.json",
            truth=truth,
            api=base,
            speed=speed,
            duration=None if duration is None else f"{max(1, int(duration * (sim_speed or 60)))}s",
            start="now",
            via=via,
            incidents="demo",
            bed_sample_s=30.0,
        )
        run_state.save(state, state_path)
        homes = ", ".join(f"{i.name} ({i.code})" for i in world.plan.institutions)
        carers = Carers(base, world, say=_say, seed=world.plan.seed, stop=printer.stop) if sim_speed == 1 else None
        print(
            "\nThe platform is up.\n"
            f"  API:        {base}/api/v1   (OpenAPI: {base}/openapi.json)\n"
            f"  web:        {base}/login\n"
            f"  logins:     admin {ADMIN} / {password}\n"
            + "".join(f"              {line}\n" for line in _logins(world))
            + f"              regulator {demo_month.REGULATOR} / {regulator}   ({world.plan.region})\n"
            + (f"  last month: {month.line()}\n" if month else "")
            + f"  homes:      {homes}\n"
            + f"  staff:      {_staff_line(carers)}\n"
            f"  broker:     mqtts://{info.mqtt_host}:{info.ports.mqtt_tls} (CA {info.ca_file})\n"
            f"  simulation: {via} mode, {speed}x; world {base_dir / 'demo-world.json'}, ground truth {truth}\n"
            f"  logs:       {logs}\n"
            f"  stop:       Ctrl-C (the stack keeps running: `eldercare stack down` stops it)\n",
            flush=True,
        )
        for watcher in [printer.run, *([carers.run] if carers else [])]:  # the carers stop with the printer
            threading.Thread(target=watcher, daemon=True).start()
        with run_commands.stop_on_signals() as stop:
            execute(
                state,
                state_path=state_path,
                target=target,
                scripted=_opening(world, state.start_ms, sim_speed),
                stop=stop,
                progress=run_commands.progress,
                progress_s=60.0,
                on_truth=printer.on_truth if carers is None else _both(printer.on_truth, carers.on_truth),
            )
    except SimError as exc:
        print(f"eldercare demo: {exc}", file=sys.stderr)
        return 1
    finally:
        printer.stop.set()
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=20)
        if hold is not None:  # after ingest has stopped: its retention job must not run over a month cut short
            hold.release()
    return 0
