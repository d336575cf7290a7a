"""``eldercare demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run the stack, the platform and a simulated home (until Ctrl-C)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(handler=_demo)


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
