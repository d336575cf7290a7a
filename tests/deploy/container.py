"""The TimescaleDB container of docker-compose.yml, played on this machine: a cluster of its own made by ``initdb``
with the container's superuser (``POSTGRES_USER``), the database the entrypoint makes (``POSTGRES_DB``), and the
scripts of ``deploy/timescaledb/initdb/`` run as the image's entrypoint runs them, with the container's environment
as `docker-compose config` resolves it. The server runs with the settings of the container's command
(`compose_settings`: TimescaleDB's license, telemetry, and ``hba_file``, the rules of
``deploy/timescaledb/pg_hba.conf``, a path of the container's read by its bind mount's source here), so who may
connect over the socket and over TCP is decided by the file production uses. ``initdb``'s own ``pg_hba.conf``
(trust on the socket, passwords over TCP, as the image's with its ``host all all all scram-sha-256``) serves only
a cluster started with other settings: the deployment of an earlier docker-compose.yml."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import yaml
from psycopg import sql
from tests.conftest import free_ports
from tests.test_compose import REPO, SECRETS, _config

from eldercare.platform.stack.host import run, service_user
from eldercare.platform.stack.postgres import BIN_DIR

INITDB_DIR = REPO / "deploy/timescaledb/initdb"
UPGRADE = REPO / "deploy/timescaledb/upgrade-owner.sh"
PART = "test-container"


def resolved_compose() -> dict[str, Any]:
    """docker-compose.yml with the test secrets, as `docker-compose config` writes it."""
    result = _config(SECRETS)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def compose_settings() -> dict[str, str]:
    """The server settings of the timescaledb service's command (``postgres -c name=value ...``), a path inside one
    of its bind mounts turned into the mount's source on this machine."""
    service = resolved_compose()["services"]["timescaledb"]
    command: list[str] = service["command"]
    assert command[0] == "postgres" and len(command) % 2 == 1, command
    binds = [v.split(":")[:2] for v in service["volumes"] if isinstance(v, str) and v.startswith("/")]
    settings = {}
    for flag, assignment in zip(command[1::2], command[2::2], strict=True):
        assert flag == "-c", command
        name, _, value = assignment.partition("=")
        for source, target in binds:
            if value == target or value.startswith(f"{target}/"):
                value = source + value[len(target) :]
        settings[name] = value
    return settings


@dataclass(frozen=True, slots=True)
class Container:
    folder: Path  # the cluster's data folder and its socket are in it
    port: int
    environment: Mapping[str, str]  # the container's, from docker-compose.yml

    @property
    def superuser(self) -> str:
        return self.environment["POSTGRES_USER"]

    @property
    def database(self) -> str:
        return self.environment["POSTGRES_DB"]

    def socket_url(self, user: str, database: str | None = None) -> str:
        """``user`` over the socket, where the container trusts every local login."""
        host = quote(str(self.folder), safe="")
        return f"postgresql://{quote(user, safe='')}@/{database or self.database}?host={host}&port={self.port}"

    def tcp_url(self, url: str) -> str:
        """A service's ``postgresql://user:password@timescaledb:5432/db`` pointed at this cluster."""
        parts = urlsplit(url)
        login = parts.netloc.rsplit("@", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{self.port}"))

    def shell_env(self) -> dict[str, str]:
        """What a script run inside the container sees: its environment, and psql's way to the server."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("ELDERCARE_", "PG", "POSTGRES_"))}
        return {**clean, **self.environment, "PGHOST": str(self.folder), "PGPORT": str(self.port)}

    def sh(self, script: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a script as the container runs it (the entrypoint executes an executable ``*.sh``)."""
        return subprocess.run(
            [str(script)], env={**self.shell_env(), **extra}, capture_output=True, text=True, timeout=120, check=False
        )

    def run_entrypoint_scripts(self) -> None:
        """The first start's init: the entrypoint makes ``POSTGRES_DB``, then runs ``/docker-entrypoint-initdb.d``
        in name order (``*.sh`` executed when executable, ``*.sql`` with psql; other files are ignored)."""
        with psycopg.connect(self.socket_url(self.superuser, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        for script in sorted(INITDB_DIR.iterdir()):
            if script.suffix == ".sh":
                assert os.access(script, os.X_OK), f"{script.name}: the entrypoint would source it, not run it"
                done = self.sh(script, ELDERCARE_INITDB_DIR=str(INITDB_DIR))
                assert done.returncode == 0, f"{script.name}: {done.stdout}{done.stderr}"
            assert script.suffix != ".sql", "psql would run it in POSTGRES_DB as the superuser: not tried here"


def _pg_ctl(folder: Path, *args: str) -> None:
    log = folder / "log"
    run(
        [str(BIN_DIR / "pg_ctl"), *args, "-D", str(folder / "data"), "-l", str(log), "-w", "-t", "60"],
        part=PART, user=service_user("postgres", part=PART), log=log, cwd=folder, timeout=70,
    )  # fmt: skip


def _start(folder: Path, port: int, settings: Mapping[str, str]) -> None:
    """Start the server with ``settings`` (the container's command) and what this machine needs: its own port and
    socket folder, TimescaleDB preloaded (the image's postgresql.conf does it there), little memory."""
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=timescaledb"
        " -c max_connections=40 -c shared_buffers=32MB -c fsync=off"
    )
    options += "".join(f" -c {shlex.quote(f'{name}={value}')}" for name, value in settings.items())
    _pg_ctl(folder, "start", "-o", options)


def restart(made: Container, settings: Mapping[str, str]) -> None:
    """Stop the server and start it with other ``settings``, as `docker compose up -d` makes the container anew with
    the command of a new docker-compose.yml; the data stays."""
    _pg_ctl(made.folder, "stop", "-m", "fast")
    _start(made.folder, made.port, settings)


@contextmanager
def container(environment: Mapping[str, str], settings: Mapping[str, str]) -> Iterator[Container]:
    """A stopped-afterwards cluster made by ``initdb`` with ``environment``'s ``POSTGRES_USER`` and
    ``POSTGRES_PASSWORD``, started with ``settings`` (`compose_settings`: those of docker-compose.yml); nothing run
    in it yet."""
    folder = Path(tempfile.mkdtemp(prefix="ec-ctr-", dir="/tmp"))  # short: the socket path is limited
    owner = service_user("postgres", part=PART)
    folder.chmod(0o711)
    if owner is not None:
        os.chown(folder, owner.uid, owner.gid)
    pwfile = folder / "pwfile"
    pwfile.write_text(environment["POSTGRES_PASSWORD"] + "\n")
    if owner is not None:
        os.chown(pwfile, owner.uid, owner.gid)
    data = folder / "data"
    port = free_ports(1)[0]
    run(
        [str(BIN_DIR / "initdb"), "-D", str(data), "-U", environment["POSTGRES_USER"], f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C"],
        part=PART, user=owner, cwd=folder, timeout=120,
    )  # fmt: skip
    try:
        _start(folder, port, settings)
        yield Container(folder=folder, port=port, environment=dict(environment))
    finally:
        if (data / "postmaster.pid").exists():
            _pg_ctl(folder, "stop", "-m", "immediate")
        shutil.rmtree(folder)
