"""``eldercare demo`` and ``eldercare simulate load``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run the stack, the platform and a simulated home (until Ctrl-C)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(handler=_demo)

    simulate = sub.add_parser("simulate", help="simulated homes and load")
    actions = simulate.add_subparsers(dest="simulate_command", required=True, metavar="ACTION")
    _register_load(actions)


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


def _demo(args: argparse.Namespace) -> int:
    from eldercare.platform.config import state_dir
    from eldercare.platform.stack import service
    from eldercare.platform.stack.errors import StackError
    from eldercare.platform.stack.model import Ports
    from eldercare.simulators.demo import run

    try:
        ports, _host = service.recorded(state_dir())
    except StackError:
        ports = Ports()
    return run(duration=args.duration, ports=ports)


def _load(args: argparse.Namespace) -> int:
    import asyncio
    import random
    from pathlib import Path

    import psycopg

    from eldercare.platform.config import BrokerSettings, DatabaseSettings, state_dir
    from eldercare.platform.registry.broker import LocalBroker
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
                    broker=LocalBroker(state_dir()),
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
