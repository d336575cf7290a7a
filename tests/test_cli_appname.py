"""Every database connection of an ``eldercare`` process says which command it is and which data key it holds
(``PGAPPNAME``, set by ``eldercare.cli.main``): ``eldercare db rekey`` finds by it a process left on a key being
rotated away from, and refuses to run beside a connection of the services' role that says nothing
(``tests/test_rekey.py``). A connection that names itself (the platform's, ingest's) keeps its name; a command
without settings (a gateway's) is named without a key, and neither it nor ``--help`` needs the settings."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.conftest import free_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http
from tests.registry.support import Database, create_database, data_key, drop_database

from eldercare import cli
from eldercare.platform.crypto import Vault
from eldercare.platform.db import keycheck
from eldercare.platform.stack.model import StackInfo

_EXE = Path(sys.executable).with_name("eldercare")


@pytest.fixture
def fresh(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "ec_appname")
    yield db
    drop_database(stack, db)


def _no_settings(tmp_path: Path) -> dict[str, str]:
    """An environment with no ``ELDERCARE_*`` setting and no env file (run from ``tmp_path``: no ``./state``)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ELDERCARE_")}
    env["ELDERCARE_ENV_FILE"] = str(tmp_path / "missing.env")
    return env


def _others(url: str) -> list[str]:
    """The names of the connections to the database of ``url`` other than this one's."""
    with psycopg.connect(url, autocommit=True, application_name="test-looker") as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
    return sorted(name for (name,) in rows)


def test_a_commands_connection_carries_its_command_and_key_tag(stack: StackInfo, fresh: Database) -> None:
    """``eldercare ingest parked list`` (its connection does not name itself), held on a lock while it is looked at."""
    tag = keycheck.key_tag(Vault(data_key(stack)).key_check())
    env = stack_env(stack, ELDERCARE_DATABASE_URL=fresh.url)
    with (
        psycopg.connect(fresh.url, application_name="test-lock") as lock,
        psycopg.connect(fresh.url, autocommit=True, application_name="test-looker") as looker,  # a fresh view each time
    ):
        lock.execute("LOCK TABLE parked_messages IN ACCESS EXCLUSIVE MODE")
        command = subprocess.Popen(
            [str(_EXE), "ingest", "parked", "list"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            waiting: list[str] = []
            deadline = time.monotonic() + 30
            while not waiting and time.monotonic() < deadline and command.poll() is None:
                time.sleep(0.1)
                rows = looker.execute(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchall()
                waiting = [name for (name,) in rows]
        finally:
            lock.rollback()
            out, err = command.communicate(timeout=30)
    assert command.returncode == 0, err
    assert waiting == [f"eldercare-ingest-parked-list {tag}"], (waiting, out, err)


def test_the_platforms_and_ingests_own_names_win(stack: StackInfo, fresh: Database) -> None:
    """``eldercare serve`` and ``eldercare ingest`` name their connections for their parts (``eldercare-platform``,
    ``ingest-<part>``), each with the key tag; none of a current version's connections is one the rekey would refuse
    to run beside."""
    tag = keycheck.key_tag(Vault(data_key(stack)).key_check())
    env = stack_env(stack, ELDERCARE_DATABASE_URL=fresh.url)
    port = free_ports(1)[0]
    with (
        run_eldercare("ingest", ["ingest", "--name", "appname"], env) as ingest,
        run_eldercare("serve", ["serve", "--port", str(port)], env) as serve,
    ):
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        ingest.wait_for("subscribed, storing", timeout=30)
        serve.wait_for("alarm engine: listening", timeout=30)
        deadline = time.monotonic() + 20
        names = _others(fresh.url)
        while not any(name.startswith("ingest-") for name in names) and time.monotonic() < deadline:
            time.sleep(0.2)
            names = _others(fresh.url)
        with psycopg.connect(fresh.url, autocommit=True, application_name=f"eldercare-test {tag}") as conn:
            untagged = keycheck.untagged(conn)
    assert f"eldercare-platform {tag}" in names, names
    assert any(name.startswith("ingest-") for name in names), names
    assert all(name.endswith(f" {tag}") for name in names), names
    assert not any(name.startswith(("eldercare-serve", "eldercare-ingest")) for name in names), names
    assert untagged == []


def test_help_and_a_command_without_settings_need_none(tmp_path: Path) -> None:
    """No data key, no env file: ``--help`` prints the usage, a gateway's command runs (to its own complaint here:
    no such configuration), and neither says anything of the settings."""
    env = _no_settings(tmp_path)
    shown = subprocess.run(
        [str(_EXE), "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0 and shown.stdout.startswith("usage: eldercare"), shown
    assert shown.stderr == ""
    for key in (None, "not-a-key"):
        if key is not None:
            env["ELDERCARE_DATA_KEY"] = key
        gateway = subprocess.run(
            [str(_EXE), "gateway", "--check", "--config", str(tmp_path / "none.toml")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert gateway.returncode == 2 and gateway.stderr.startswith("eldercare gateway: "), gateway
        assert "Traceback" not in gateway.stderr and "data_key" not in gateway.stderr.lower()


def test_a_command_is_named_without_a_key_when_the_settings_hold_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ELDERCARE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ELDERCARE_ENV_FILE", str(tmp_path / "missing.env"))
    assert cli.application_name("gateway") == "eldercare-gateway"
    monkeypatch.setenv("ELDERCARE_DATA_KEY", "not-a-key")
    assert cli.application_name("gateway") == "eldercare-gateway"
    key = os.urandom(32)
    monkeypatch.setenv("ELDERCARE_DATA_KEY", base64.b64encode(key).decode())
    tag = keycheck.key_tag(Vault(key).key_check())
    assert cli.application_name("db-rekey") == f"eldercare-db-rekey {tag}"
    long = cli.application_name("x" * 80)  # PostgreSQL keeps 63 bytes: the tag is kept whole
    assert len(long) == 63 and long.endswith(f" {tag}")


def test_a_gateway_command_with_a_data_key_at_hand_loads_neither_the_settings_nor_the_crypto(tmp_path: Path) -> None:
    """A gateway never connects to the platform's database: with a valid data key in its environment (a machine that
    runs both) it still does not load the platform's settings and crypto to name connections it does not make. They
    cost it 8 MB, over its memory budget (tests/gateway/test_load.py)."""
    env = _no_settings(tmp_path)
    env["ELDERCARE_DATA_KEY"] = base64.b64encode(os.urandom(32)).decode()
    # what naming connections loads (settings, crypto, key check, the database driver): the sub-commands' own
    # registrars are light and load none of them
    heavy = ("eldercare.platform.config", "eldercare.platform.crypto", "eldercare.platform.db.keycheck", "psycopg")
    probe = (
        "import os, sys\n"
        "from eldercare import cli\n"
        "try:\n"
        f"    cli.main(['gateway', '--check', '--config', {str(tmp_path / 'none.toml')!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in sys.modules if m in {heavy!r}), os.environ.get('PGAPPNAME'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] None", done.stdout
