"""Forward-only migrations, recorded in ``schema_migrations``; running them twice changes nothing.

Each ``migrations/NNNN_name.sql`` runs in its own transaction under an advisory lock, so two processes
migrating at once do not race. An applied migration whose file has changed since is an error: history is
never rewritten, a change is a new file.

After the SQL, personal text that an older version stored in clear is encrypted: only the application holds the
data key, so SQL cannot. Each domain declares its columns as a :class:`Sealing` (the hospital stays' in
``platform/registry/health_text.py``, the alarms' in ``platform/alarms/text.py``); one step here seals them all. The
key is read only when there is something to encrypt.
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
from psycopg import sql

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


Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class ClearColumn:
    """A column that an older version wrote personal text into in clear, and its encrypted twin ``<name>_enc``
    (NULL: no text). ``in_clear`` is the SQL condition under which the old column holds text, ``emptied`` the SQL
    value it is given once sealed, and ``text`` the SQL expression of the text that is encrypted."""

    name: str
    in_clear: str
    emptied: str
    text: str = ""

    @property
    def enc(self) -> str:
        return f"{self.name}_enc"


@dataclass(frozen=True, slots=True)
class ClearTable:
    table: str
    key: str  # a bigint that identifies a row
    columns: tuple[ClearColumn, ...]

    def aad(self, column: ClearColumn) -> str:
        """The vault's column name (its associated data): ``table.column``."""
        return f"{self.table}.{column.name}"

    def where(self) -> sql.Composable:
        return sql.SQL(" OR ").join(sql.SQL(c.in_clear) for c in self.columns)


@dataclass(frozen=True, slots=True)
class Sealing:
    """Personal text stored in clear before migration ``since``, which added the encrypted columns. Its migration
    should index each table's ``in_clear`` rows (a partial index on the key), so a migrate that finds nothing reads
    no table."""

    since: int
    what: str  # for the log: "hospital text", "alarm text"
    tables: tuple[ClearTable, ...]


def _sealings() -> tuple[Sealing, ...]:
    # The domains that own the columns sit above db: imported when a migrate runs, not when this module loads.
    from eldercare.platform.alarms import text as alarm_text
    from eldercare.platform.registry import health_text

    return (health_text.SEALING, alarm_text.SEALING)


def _seal_in_clear(conn: Conn, data_key: bytes | None) -> None:
    """Encrypt what is still in clear, in one transaction under the migrations' lock; then rewrite the tables that
    held it (:func:`_compact`)."""
    sealed: dict[str, int] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        due = [(s, t) for s in _sealings() if _applied(conn, s.since) for t in s.tables if _has_clear(conn, t)]
        if not due:
            return
        vault = Vault(data_key or _settings_key(due[0][0].since))
        for sealing, table in due:
            count = _seal_table(conn, vault, table)
            log.info("encrypted the %s of %d rows of %s that were stored in clear", sealing.what, count, table.table)
            sealed[table.table] = count
    _compact(conn, list(sealed))


def _applied(conn: Conn, version: int) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %s)", (version,)).fetchone()
    return row is not None and bool(row[0])


def _has_clear(conn: Conn, table: ClearTable) -> bool:
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(sql.Identifier(table.table), table.where())
    row = conn.execute(query).fetchone()
    return row is not None and bool(row[0])


def _seal_table(conn: Conn, vault: Vault, table: ClearTable) -> int:
    """Encrypt the text of ``table`` still in clear and empty the old columns, inside the caller's transaction; the
    number of rows sealed. A text already encrypted is kept unless the old column holds one."""
    name, key = sql.Identifier(table.table), sql.Identifier(table.key)
    texts = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN {} END").format(sql.SQL(c.in_clear), sql.SQL(c.text or c.name))
        for c in table.columns
    )
    rows = conn.execute(
        sql.SQL("SELECT {key}, {texts} FROM {name} WHERE {where} ORDER BY {key} FOR UPDATE").format(
            key=key, texts=texts, name=name, where=table.where()
        )
    ).fetchall()
    temp = sql.Identifier(f"sealed_{table.table}")
    encs = [sql.Identifier(c.enc) for c in table.columns]
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (key bigint PRIMARY KEY, {}) ON COMMIT DROP").format(
            temp, sql.SQL(", ").join(sql.SQL("{} bytea").format(e) for e in encs)
        )
    )
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY {} (key, {}) FROM STDIN").format(temp, sql.SQL(", ").join(encs))) as copy,
    ):
        for row_key, *values in rows:
            copy.write_row(
                (
                    row_key,
                    *(
                        None if value is None else vault.encrypt(value, column=table.aad(column))
                        for column, value in zip(table.columns, values, strict=True)
                    ),
                )
            )
    sets = sql.SQL(", ").join(
        sql.SQL("{enc} = coalesce(s.{enc}, t.{enc}), {col} = {emptied}").format(
            enc=sql.Identifier(c.enc), col=sql.Identifier(c.name), emptied=sql.SQL(c.emptied)
        )
        for c in table.columns
    )
    conn.execute(
        sql.SQL("UPDATE {name} t SET {sets} FROM {temp} s WHERE t.{key} = s.key").format(
            name=name, sets=sets, temp=temp, key=key
        )
    )
    return len(rows)


def _compact(conn: Conn, tables: list[str]) -> None:
    """After sealing (outside a transaction): rewrite the tables so the old row versions, which still hold the text,
    leave the table files, and refresh the planner's statistics, which sample column values. (Copies in the
    write-ahead log and in backups taken before are beyond the reach of the database.) The rewrite locks each table
    while it runs: it happens once, on the migrate that converts a version's rows, and again only when a writer of
    an older version has stored text in clear since."""
    conn.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))


def _settings_key(version: int) -> bytes:
    from pydantic import ValidationError

    from eldercare.platform.config import SecuritySettings

    try:
        return SecuritySettings().key_bytes()
    except ValidationError:  # its text may quote the settings' values: neither repeated nor chained
        raise MigrationError(
            version, "personal data is stored in clear; set ELDERCARE_DATA_KEY (a valid key) to encrypt it"
        ) from None


def _load_regions(conn: Conn) -> None:
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
