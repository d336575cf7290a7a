"""The TimescaleDB container of docker-compose.yml, played on this machine: a cluster of its own made by ``initdb``
with the container's superuser (``POSTGRES_USER``), the database the entrypoint makes (``POSTGRES_DB``), and the
scripts of ``deploy/timescaledb/initdb/`` run as the image's entrypoint runs them, with the container's environment
as `docker-compose config` resolves it. Local connections are trusted and TCP ones need a password, as in the image
(its ``pg_hba.conf``: initdb's trust for the socket, ``host all all all scram-sha-256``)."""

from __future__ import annotations

import os
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


@contextmanager
def container(environment: Mapping[str, str]) -> Iterator[Container]:
    """A stopped-afterwards cluster made by ``initdb`` with ``environment``'s ``POSTGRES_USER`` and
    ``POSTGRES_PASSWORD``, started with TimescaleDB preloaded; nothing run in it yet."""
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
    log = folder / "log"
    port = free_ports(1)[0]
    run(
        [str(BIN_DIR / "initdb"), "-D", str(data), "-U", environment["POSTGRES_USER"], f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C"],
        part=PART, user=owner, cwd=folder, timeout=120,
    )  # fmt: skip
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=timescaledb"
        " -c timescaledb.telemetry_level=off -c max_connections=40 -c shared_buffers=32MB -c fsync=off"
    )
    try:
        run(
            [str(BIN_DIR / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options],
            part=PART, user=owner, log=log, cwd=folder, timeout=70,
        )  # fmt: skip
        yield Container(folder=folder, port=port, environment=dict(environment))
    finally:
        if (data / "postmaster.pid").exists():
            run(
                [str(BIN_DIR / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "60"],
                part=PART, user=owner, log=log, cwd=folder, timeout=70,
            )  # fmt: skip
        shutil.rmtree(folder)
