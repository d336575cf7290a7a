"""Grafana's login as the production container makes it (psql running deploy/timescaledb/initdb/grafana_reader.sql.in
with its variables), and every query the dashboards send, with Grafana's macros expanded."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from tests.registry.support import Database
from tests.test_compose import REPO

from eldercare.dashboards import build
from eldercare.dashboards.sql import expand
from eldercare.platform.stack.model import StackInfo

SCRIPT = REPO / "deploy/timescaledb/initdb/grafana_reader.sql.in"
GROUP = "eldercare_grafana"  # the role migration 0011 grants schema grafana to
START = datetime(2026, 10, 1, tzinfo=UTC) - timedelta(hours=8)  # October 2026 in Asia/Shanghai, in UTC
END = datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class Reader:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class Query:
    dashboard: str  # uid
    title: str  # the panel's title, or "variable <name>"
    kind: str  # the panel's type, or "variable"
    target: dict[str, Any]  # the panel's target ({} for a variable)
    sql: str  # macros and variables expanded

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.title}"


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def run_script(db: Database, *, reader: str, password: str) -> None:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    assert Path(psql).exists(), "psql (postgresql-client) is needed"
    result = subprocess.run(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-v", f"reader={reader}", "-v", f"password={password}", "-v",
         "owner=eldercare", "-q", "-d", db.admin_url, "-f", str(SCRIPT)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@contextmanager
def reader_of(stack: StackInfo, db: Database) -> Iterator[Reader]:
    """A fresh Grafana login on ``db`` (the script run as the container runs it), dropped afterwards."""
    name, password = f"grafana_reader_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    run_script(db, reader=name, password=password)
    parts = urlsplit(db.url)
    try:
        yield Reader(name, urlunsplit(parts._replace(netloc=f"{name}:{password}@{parts.netloc.rsplit('@', 1)[1]}")))
    finally:
        with psycopg.connect(stack.admin_database_url, autocommit=True) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.name,)).fetchone()
        if exists:
            with psycopg.connect(db.admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(stack.admin_database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@contextmanager
def empty_database(stack: StackInfo, prefix: str) -> Iterator[Database]:
    """A database as the container's first start leaves it: extensions, no migrations; dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(_with_database(stack.admin_database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER eldercare").format(sql.Identifier(name)))
    url, admin_url = _with_database(stack.database_url, name), _with_database(stack.admin_database_url, name)
    db = Database(url=url, admin_url=admin_url, name=name)
    try:
        with psycopg.connect(db.admin_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        yield db
    finally:
        with psycopg.connect(_with_database(stack.admin_database_url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def queries(variables: dict[str, dict[str, str]]) -> list[Query]:
    """Every panel target and every variable of every dashboard, as Grafana would send it (``variables``: per
    dashboard uid, the values of its variables)."""
    found = []
    for uid, model in build.build_all().items():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                text = expand(target["rawSql"], start=START, end=END, interval_ms=3_600_000, variables=variables[uid])
                found.append(Query(uid, panel["title"], panel["type"], target, text))
        found.extend(
            Query(uid, f"variable {variable['name']}", "variable", {}, variable["query"])
            for variable in model.get("templating", {}).get("list", [])
        )
    return found
