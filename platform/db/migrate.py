"""Forward-only migrations, recorded in ``schema_migrations``; running them twice changes nothing.

Each ``migrations/NNNN_name.sql`` runs in its own transaction under an advisory lock, so two processes
migrating at once do not race. An applied migration whose file has changed since is an error: history is
never rewritten, a change is a new file.

After the SQL, personal data that an older version stored in clear is encrypted: only the application holds the
data key, so SQL cannot (``platform/registry/health_text.py``). The key is read only when there is something to
encrypt.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import psycopg

from eldercare.platform.crypto import Vault

log = logging.getLogger(__name__)

_LOCK_KEY = 0x656C646572  # "elder"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    def __init__(self, version: int, reason: str) -> None:
        super().__init__(f"migration {version:04d}: {reason}")
        self.version = version
        self.reason = reason


def _package_files() -> Traversable:
    return resources.files("eldercare.platform.db")


def available() -> list[Migration]:
    found: list[Migration] = []
    for entry in (_package_files() / "migrations").iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(versions[0], "two migration files share a version number")
    return found


def migrate(conninfo: str, *, data_key: bytes | None = None) -> list[Migration]:
    """Apply what is missing; return the migrations applied now. ``data_key`` (default: the settings'
    ``ELDERCARE_DATA_KEY``) encrypts what is still in clear."""
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                row = conn.execute(
                    "SELECT checksum FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if row is not None:
                    if row[0] != migration.checksum:
                        raise MigrationError(migration.version, "applied, but its file has changed since")
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                applied_now.append(migration)
        _load_regions(conn)
        _seal_in_clear(conn, data_key)
    return applied_now


def _seal_in_clear(conn: psycopg.Connection[tuple[Any, ...]], data_key: bytes | None) -> None:
    from eldercare.platform.registry import health_text  # the registry's columns (the registry sits above db)

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if not health_text.in_clear(conn):
            return
        sealed = health_text.seal(conn, Vault(data_key or _settings_key(health_text.SINCE)))
    health_text.compact(conn)
    log.info("encrypted the health text of %d rows that were stored in clear", sealed)


def _settings_key(version: int) -> bytes:
    from pydantic import ValidationError

    from eldercare.platform.config import SecuritySettings

    try:
        return SecuritySettings().key_bytes()
    except ValidationError:  # its text may quote the settings' values: neither repeated nor chained
        raise MigrationError(
            version, "personal data is stored in clear; set ELDERCARE_DATA_KEY (a valid key) to encrypt it"
        ) from None


def _load_regions(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Provinces, cities and counties (GB/T 2260), shipped with the package; idempotent."""
    base = _package_files() / "data" / "regions"
    rows: list[tuple[str, str, int, str | None]] = []
    for file, level, parent_column in (
        ("provinces.csv", 1, None),
        ("cities.csv", 2, "provinceCode"),
        ("areas.csv", 3, "cityCode"),
    ):
        text = (base / file).read_text(encoding="utf-8")
        for record in csv.DictReader(io.StringIO(text, newline="")):
            parent = record[parent_column] if parent_column else None
            rows.append((record["code"], record["name"], level, parent))
    with conn.transaction():
        count = conn.execute("SELECT count(*) FROM regions").fetchone()
        if count is not None and count[0] >= len(rows):
            return
        conn.execute("CREATE TEMP TABLE regions_load (LIKE regions) ON COMMIT DROP")
        with conn.cursor().copy("COPY regions_load (code, name, level, parent_code) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("INSERT INTO regions SELECT * FROM regions_load ORDER BY level ON CONFLICT (code) DO NOTHING")
