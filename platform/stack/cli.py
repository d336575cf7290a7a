"""``eldercare stack up|down|status``: the local PostgreSQL/TimescaleDB and Mosquitto of the project.

Standard library only at module level; the stack modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# flag -> (Ports field, environment variable)
_PORT_OPTIONS: dict[str, tuple[str, str]] = {
    "--pg-port": ("postgres", "ELDERCARE_PG_PORT"),
    "--mqtt-port": ("mqtt", "ELDERCARE_MQTT_PLAIN_PORT"),
    "--mqtt-tls-port": ("mqtt_tls", "ELDERCARE_MQTT_TLS_PORT"),
    "--api-port": ("api", "ELDERCARE_API_PORT"),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stack = sub.add_parser("stack", help="run the local database and broker", description=__doc__)
    commands = stack.add_subparsers(dest="stack_command", required=True, metavar="ACTION")

    up = commands.add_parser("up", help="start what is not running (first start creates everything)")
    _state_dir_option(up)
    for flag, (field, variable) in _PORT_OPTIONS.items():
        up.add_argument(
            flag,
            type=int,
            dest=field,
            metavar="PORT",
            help=f"default: ${variable}, else the ports of the last `up`, else built in",
        )
    up.add_argument(
        "--mqtt-host",
        default=None,
        metavar="ADDRESS",
        help="address of the TLS listener (default: that of the last `up`, else 127.0.0.1)",
    )
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="stop the broker and the database cleanly")
    _state_dir_option(down)
    down.set_defaults(handler=_down)

    status = commands.add_parser("status", help="show each part and how to reach it; exit 1 unless healthy")
    _state_dir_option(status)
    status.set_defaults(handler=_status)


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the stack keeps its data (default: $ELDERCARE_STATE_DIR, else ./state)",
    )


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir).resolve()
    from eldercare.platform.envfile import state_dir

    return state_dir()


def _up(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from eldercare.platform.stack import service
    from eldercare.platform.stack.errors import StackError
    from eldercare.platform.stack.model import Ports

    state_dir = _state_dir(args)
    try:
        ports, host = service.recorded(state_dir)
    except StackError:
        ports, host = Ports(), service.DEFAULT_MQTT_HOST
    for field, variable in _PORT_OPTIONS.values():
        chosen = getattr(args, field)
        if chosen is None and os.environ.get(variable):
            chosen = int(os.environ[variable])
        if chosen is not None:
            ports = replace(ports, **{field: chosen})
    try:
        service.up(state_dir, ports, mqtt_host=args.mqtt_host or host)
    except StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr)
        return 1
    return _print_status(state_dir)


def _down(args: argparse.Namespace) -> int:
    from eldercare.platform.stack import service
    from eldercare.platform.stack.errors import StackError

    try:
        service.down(_state_dir(args))
    except StackError as exc:
        print(f"stack down failed: {exc}", file=sys.stderr)
        return 1
    print("stack stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    return _print_status(_state_dir(args))


def _print_status(state_dir: Path) -> int:
    from eldercare.platform.stack import service
    from eldercare.platform.stack.layout import env_file

    report = service.status(state_dir)
    print(f"state directory: {report.state_dir}")
    for part in report.parts:
        word = "healthy" if part.healthy else ("UNHEALTHY" if part.running else "not running")
        detail = "" if part.detail == word else part.detail
        print(f"{part.name:<10} {word:<12} {detail}".rstrip())
        for url in part.urls:
            print(f"{'':<10} {url}")
    if env_file(state_dir).exists():
        print(f"settings (with passwords): {env_file(state_dir)}")
    return 0 if report.healthy else 1
