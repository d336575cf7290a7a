"""``eldercare demo`` and ``eldercare simulate world|run|scenario|load``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run the stack, the platform and simulated homes on this machine")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--institutions", type=int, default=3, help="homes of the demo world (made once)")
    demo.add_argument("--via", choices=["gateway", "direct"], default="gateway", help="through real gateways or not")
    demo.add_argument("--speed", default="1", help="simulated seconds per real second (default 1)")
    demo.add_argument(
        "--no-last-month",
        action="store_true",
        help="do not live last month through (once a month: claims and their verification for the regulator)",
    )
    demo.set_defaults(handler=_demo)

    simulate = sub.add_parser("simulate", help="simulated homes: a world, its days, scenarios, load")
    actions = simulate.add_subparsers(dest="simulate_command", required=True, metavar="ACTION")
    _register_world(actions)
    _register_run(actions)
    _register_scenario(actions)
    _register_load(actions)


def _api_default() -> str:
    from eldercare.platform.envfile import state_dir
    from eldercare.platform.stack import service
    from eldercare.platform.stack.errors import StackError

    try:
        ports, _host = service.recorded(state_dir())
    except StackError:
        return "http://127.0.0.1:8080"
    return f"http://127.0.0.1:{ports.api}"


def _register_world(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    world = actions.add_parser(
        "world",
        help="create a region's homes through the platform's API (as its admin)",
        description="The admin's password is read from ELDERCARE_ADMIN_PASSWORD, or asked for.",
    )
    world.add_argument("--region", required=True, help="a city (4205) or county (420502) division code")
    world.add_argument("--institutions", type=int, required=True, help="nursing homes")
    world.add_argument("--households", type=int, default=None, help="home-care households (default: as many as homes)")
    world.add_argument("--seed", type=int, required=True)
    world.add_argument("--beds", default="30-120", help="beds per home, LO-HI (default 30-120)")
    world.add_argument("--as-of", default=None, help="the date ages refer to (default: today in China)")
    world.add_argument("--out", default="world.json", help="the world file to write (default world.json)")
    world.add_argument("--api", default=None, help="the platform's API (default: the local stack's)")
    world.add_argument("--admin", default="admin", help="the admin user to log in as")
    world.add_argument("--anchors", default=None, help="county anchors CSV for regions other than Yichang (4205)")
    world.add_argument("--plan-only", action="store_true", help="write the plan without registering anything")
    world.set_defaults(handler=_world)


def _register_run(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = actions.add_parser("run", help="drive every device of a world; write the ground truth")
    run.add_argument("--world", help="the world file of `simulate world`")
    run.add_argument("--resume", metavar="STATE", help="go on with a stopped run from its state file")
    _run_options(run)
    run.set_defaults(handler=_run)


def _run_options(run: argparse.ArgumentParser) -> None:
    """Options of a run; left out, they come from the scenario (for `scenario`) or the defaults."""
    run.add_argument("--speed", default=None, help="simulated seconds per real second, or max (default 1)")
    run.add_argument(
        "--duration", default=None, help="how long in simulated time: 90m, 8h, 15d (default: until stopped)"
    )
    run.add_argument("--start", default=None, help="now, next HH:MM, previous HH:MM, previous month or an ISO instant")
    run.add_argument(
        "--via", choices=["gateway", "direct"], default=None, help="through real gateways (default) or direct"
    )
    run.add_argument("--incidents", default=None, help="quiet, normal (default), busy or demo")
    run.add_argument("--bed-sample-s", type=float, default=None, help="seconds between bed-sensor samples (default 30)")
    run.add_argument("--truth", default=None, help="ground-truth JSON lines (default: next to the world file)")
    run.add_argument("--state", default=None, help="state file for --resume (default: next to the world file)")
    run.add_argument(
        "--api", default=None, help="the platform's API, for registry actions (default: the local stack's)"
    )
    run.add_argument("--progress-s", type=float, default=10.0, help="seconds between progress lines")
    run.add_argument(
        "--sisfall", default=None, help="SisFall .npz (default: ../shared/data/sisfall or $ELDERCARE_SISFALL)"
    )
    run.add_argument("--no-fall-detector", action="store_true", help="direct mode: do not detect falls on wearables")


def _register_scenario(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scenario = actions.add_parser(
        "scenario",
        help="check, run and verify a scenario file (or a shipped one by name)",
        description="With no --world, the scenario's own world is created (admin password from"
        " ELDERCARE_ADMIN_PASSWORD). --check compares what the platform raised with what the scenario expects.",
    )
    scenario.add_argument("name", nargs="?", help="a file, or the name of a shipped scenario (see --list)")
    scenario.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    scenario.add_argument("--validate", action="store_true", help="only check the file")
    scenario.add_argument("--world", default=None, help="run on this world file instead of making the scenario's own")
    scenario.add_argument("--out", default=None, help="folder for the world, truth, state and claims (default: ./NAME)")
    scenario.add_argument("--check", action="store_true", help="after the run, check the platform's alarms")
    scenario.add_argument("--admin", default="admin")
    _run_options(scenario)
    scenario.set_defaults(handler=_scenario)


def _register_load(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = actions.add_parser("load", help="publish bed-sensor frames as gateways at a fixed rate (benchmarks)")
    load.add_argument("--beds", type=int, default=1000, help="bed sensors in the load home")
    load.add_argument("--rate", type=float, required=True, help="telemetry frames per second, all gateways together")
    load.add_argument("--duration", type=float, required=True, help="seconds")
    load.add_argument("--readings", type=int, default=50, help="readings per frame")
    load.add_argument("--gateways", type=int, default=10)
    load.add_argument("--alarm-rate", type=float, default=0.0, help="button-press frames per second on the alarm lane")
    load.add_argument("--world", help="JSON file of the load home: used if it exists, else created and written")
    load.add_argument("--plain", action="store_true", help="use the stack's plain MQTT listener instead of TLS")
    load.add_argument("--seed", type=int, default=1)
    load.add_argument("--json", action="store_true", help="print the report as one JSON object")
    load.set_defaults(handler=_load)


def _fail(message: str) -> int:
    print(f"eldercare simulate: {message}", file=sys.stderr)
    return 2


def _admin_password(username: str) -> str:
    import getpass
    import os

    return os.environ.get("ELDERCARE_ADMIN_PASSWORD") or getpass.getpass(f"password of {username}: ")


def _world(args: argparse.Namespace) -> int:
    from eldercare.simulators.errors import SimError
    from eldercare.simulators.world import commands

    try:
        return commands.world(args, api=args.api or _api_default(), password=lambda: _admin_password(args.admin))
    except SimError as exc:
        return _fail(str(exc))


def _run(args: argparse.Namespace) -> int:
    from eldercare.simulators.errors import SimError
    from eldercare.simulators.run import commands

    try:
        return commands.run(args, api=args.api or _api_default())
    except SimError as exc:
        return _fail(str(exc))


def _scenario(args: argparse.Namespace) -> int:
    from eldercare.simulators.errors import SimError
    from eldercare.simulators.scenario import commands

    try:
        return commands.scenario(args, api=args.api or _api_default(), password=lambda: _admin_password(args.admin))
    except SimError as exc:
        return _fail(str(exc))


def _demo(args: argparse.Namespace) -> int:
    import os
    from dataclasses import replace

    from eldercare.platform.envfile import state_dir
    from eldercare.platform.stack import service
    from eldercare.platform.stack.errors import StackError
    from eldercare.platform.stack.model import Ports
    from eldercare.simulators.demo import run

    try:
        ports, _host = service.recorded(state_dir())
    except StackError:
        ports = Ports()
    # The same variables as `eldercare stack up` (its --pg-port, ... defaults).
    for field, variable in (
        ("postgres", "ELDERCARE_PG_PORT"),
        ("mqtt", "ELDERCARE_MQTT_PLAIN_PORT"),
        ("mqtt_tls", "ELDERCARE_MQTT_TLS_PORT"),
        ("api", "ELDERCARE_API_PORT"),
    ):
        if os.environ.get(variable):
            ports = replace(ports, **{field: int(os.environ[variable])})
    return run(
        duration=args.duration,
        ports=ports,
        institutions=args.institutions,
        via=args.via,
        speed=args.speed,
        last_month=not args.no_last_month,
    )


def _load(args: argparse.Namespace) -> int:
    import asyncio
    import random
    from pathlib import Path

    import psycopg

    from eldercare.platform.config import BrokerSettings, DatabaseSettings
    from eldercare.platform.envfile import state_dir
    from eldercare.platform.registry.broker import from_settings
    from eldercare.platform.stack import service
    from eldercare.simulators.load import LoadWorld, Target, create_world, run_load

    if args.beds < 1 or args.gateways < 1 or args.readings < 1 or args.rate <= 0 or args.duration <= 0:
        print("--beds, --gateways, --readings, --rate and --duration must be positive", file=sys.stderr)
        return 2
    world_file = Path(args.world) if args.world else None
    if world_file is not None and world_file.exists():
        world = LoadWorld.load(world_file)
    else:

        async def make() -> LoadWorld:
            url = DatabaseSettings().database_url
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await create_world(
                    conn,
                    broker=from_settings(),
                    gateways=args.gateways,
                    beds=args.beds,
                    rng=random.Random(args.seed),  # noqa: S311 - reproducible test data
                )

        world = asyncio.run(make())
        if world_file is not None:
            world.save(world_file)
    broker = BrokerSettings()
    if args.plain:
        ports, _host = service.recorded(state_dir())
        target = Target("127.0.0.1", ports.mqtt, False, None)
    else:
        target = Target(broker.mqtt_host, broker.mqtt_port, broker.mqtt_tls, broker.mqtt_ca_file)
    report = run_load(
        world,
        target=target,
        rate=args.rate,
        duration=args.duration,
        readings=args.readings,
        alarm_rate=args.alarm_rate,
        seed=args.seed,
    )
    if args.json:
        print(report.as_json(), flush=True)
    else:
        print(
            f"sent {report.frames} frames ({report.readings} readings) and {report.alarm_frames} alarm frames"
            f" in {report.elapsed_s:.1f} s: {report.frames_per_s:.0f} frames/s"
            f" ({report.readings / max(report.elapsed_s, 1e-9):.0f} readings/s) for a target of {args.rate:g};"
            f" broker acknowledged {report.acknowledged}, {report.unacknowledged} not;"
            f" at most {report.max_behind_s * 1000:.0f} ms behind schedule; home {report.institution_code}"
        )
    return 0 if report.unacknowledged == 0 else 1
