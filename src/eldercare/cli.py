"""The ``eldercare`` command: one entry point, a sub-command per part.

Each part registers its sub-commands in its own ``cli`` module; those modules import only the standard
library at module level so that ``eldercare --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# (module, function) pairs; each function takes the top-level sub-parsers and adds its commands.
_REGISTRARS: tuple[str, ...] = (
    "eldercare.platform.stack.cli",
    "eldercare.platform.db.cli",
    "eldercare.platform.cli",
    "eldercare.platform.registry.cli",
    "eldercare.platform.audit.cli",
    "eldercare.platform.auth.cli",
    "eldercare.platform.subsidy.cli",
    "eldercare.ingest.cli",
    "eldercare.simulators.cli",
    "eldercare.gateway.cli",
    "eldercare.dashboards.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eldercare", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _REGISTRARS:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
