"""The ``eldercare`` command: one entry point, a sub-command per part.

Each part registers its sub-commands in its own ``cli`` module; those modules import only the standard
library at module level so that ``eldercare --help`` stays fast.

Every database connection of an ``eldercare`` process is named for its command and for the data key it holds
(``PGAPPNAME``, :func:`application_name`), so that ``eldercare db rekey`` finds any of them left on a key being
rotated away from (``platform/db/rekey.py``). A connection that names itself (the platform's, ingest's) keeps its name.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
    before = os.environ.get(_APPNAME)
    # libpq's default for every connection that does not name itself; children that are `eldercare` commands too
    # (the demo's) set their own
    command = _command(parser, args)
    if command.split("-", 1)[0] not in _NO_DATABASE:
        os.environ[_APPNAME] = application_name(command)
    try:
        code: int = handler(args)
    finally:  # main() called in a process that goes on (a test): left as it was
        if before is None:
            os.environ.pop(_APPNAME, None)
        else:
            os.environ[_APPNAME] = before
    return code


_APPNAME = "PGAPPNAME"
# Commands that never connect to the platform's database: not named, so that they do not load the settings and the
# crypto to tag connections they do not make (a gateway runs on a small box, within a memory budget:
# tests/gateway/test_load.py; loading them cost it 8 MB and took it over).
_NO_DATABASE = frozenset({"gateway"})
_NAME_BYTES = 63  # what PostgreSQL keeps of an application_name (NAMEDATALEN - 1): the key tag must fit


def application_name(command: str) -> str:
    """``eldercare-<command> key=<tag>`` (``keycheck.key_tag``) when the settings hold a valid data key, else
    ``eldercare-<command>`` (a gateway's commands, a machine with no settings)."""
    name = f"eldercare-{command}"
    tag = _key_tag()
    if tag is None:
        return name[:_NAME_BYTES]
    return f"{name[: _NAME_BYTES - len(tag) - 1]} {tag}"


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The sub-command chosen, its words joined by ``-`` (``db-rekey``, ``ingest-parked-list``)."""
    words: list[str] = []
    while True:
        chosen = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        word = None if chosen is None else getattr(args, chosen.dest, None)
        if chosen is None or word is None:
            return "-".join(words)
        words.append(word)
        parser = chosen.choices[word]


def _key_tag() -> str | None:
    """The key tag of the settings' data key (``ELDERCARE_DATA_KEY``), or None: none, or not a valid one (the command
    says so itself if it needs one)."""
    if not _may_hold_key():
        return None
    from pydantic import ValidationError

    from eldercare.platform.config import SecuritySettings
    from eldercare.platform.crypto import Vault
    from eldercare.platform.db.keycheck import key_tag

    try:
        key = SecuritySettings().key_bytes()
    except (ValidationError, OSError):
        return None
    return key_tag(Vault(key).key_check())


def _may_hold_key() -> bool:
    """Whether the settings may hold a data key: one in the environment, or an env file. Told without importing the
    settings (pydantic and the crypto take 0.2 s, which a gateway's commands, with neither, do not pay)."""
    from eldercare.platform.envfile import ENV_PREFIX, env_file

    if any(name.upper() == f"{ENV_PREFIX}DATA_KEY" for name in os.environ):
        return True
    return env_file().is_file()


if __name__ == "__main__":
    sys.exit(main())
