"""Shared fixtures: a throwaway stack (TimescaleDB + Mosquitto) started by the same code as `stack up`.

The stack lives in a short folder under /tmp (unix socket paths are limited to 107 bytes, and the
services' system users must be able to reach it when the tests run as root), on free ports, and is
stopped and removed at the end of the session. If it cannot start, tests that use it fail with the reason.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack import service
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.model import Ports, StackInfo


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_stack_ports() -> Ports:
    postgres, mqtt, mqtt_tls, api = free_ports(4)
    return Ports(postgres=postgres, mqtt=mqtt, mqtt_tls=mqtt_tls, api=api)


def short_state_dir(name: str) -> Path:
    """A new folder like ``/tmp/ec-stack-k3j2``, enterable by the ``postgres``/``mosquitto`` users."""
    path = Path(tempfile.mkdtemp(prefix=f"ec-{name}-", dir="/tmp"))
    path.chmod(0o711)
    return path


def start_stack(state_dir: Path, ports: Ports) -> StackInfo:
    """``service.up``, or ``pytest.fail`` with the reason (after stopping whatever did start)."""
    try:
        return service.up(state_dir, ports)
    except StackError as exc:
        reason = f"could not start the test stack in {state_dir}: {exc}"
        try:
            service.down(state_dir)
        except StackError as cleanup:
            reason += f"\n(and stopping what had started failed too: {cleanup})"
        pytest.fail(reason, pytrace=False)


def remove_stack(state_dir: Path) -> None:
    service.down(state_dir)
    shutil.rmtree(state_dir)


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """A running stack for the whole session; tests get every address and secret from it."""
    state_dir = short_state_dir("stack")
    info = start_stack(state_dir, free_stack_ports())
    yield info
    remove_stack(state_dir)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for a TCP port that is free on 127.0.0.1."""

    def pick() -> int:
        return free_ports(1)[0]

    return pick


@pytest.fixture
def stack_ports() -> Callable[[], Ports]:
    """Call it for a set of free ports for a stack of the test's own."""
    return free_stack_ports


@pytest.fixture
def stack_starter() -> Callable[[Path, Ports], StackInfo]:
    """``service.up`` that fails the test with the reason (and cleans up) when the stack cannot start."""
    return start_stack


@pytest.fixture
def throwaway_state_dir() -> Iterator[Path]:
    """A short, empty state directory; any stack left running in it is stopped afterwards."""
    state_dir = short_state_dir("t")
    yield state_dir
    if state_dir.exists():
        remove_stack(state_dir)


@pytest.fixture(scope="session")
def db(stack: StackInfo) -> str:
    """The test stack's database, migrated to the latest schema."""
    migrate(stack.database_url)
    return stack.database_url


@pytest.fixture(scope="session")
def vault(stack: StackInfo) -> Vault:
    """The personal-data vault with the test stack's key."""
    return Vault(SecuritySettings(_env_file=stack.state_dir / "eldercare.env").key_bytes())
