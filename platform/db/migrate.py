"""Forward-only migrations, recorded in ``schema_migrations``; running them twice changes nothing.

Each ``migrations/NNNN_name.sql`` runs in its own transaction under an advisory lock, so two processes
migrating at once do not race. An applied migration whose file has changed since is an error: history is
never rewritten, a change is a new file.

After the SQL, personal text that an older version stored in clear is encrypted: only the application holds the
data key, so SQL cannot. Each domain declares its columns as a :class:`Sealing` (the hospital stays' in
``platform/registry/health_text.py``, the alarms' in ``platform/alarms/text.py``); one step here seals them all. The
key is read only when there is something to encrypt. Sealing runs beside a live platform: short batches, then a plain
``VACUUM``, never a lock the alarm engine waits for (:func:`seal_in_clear`). Rewriting the tables so that the old row
versions leave their files is a maintenance step of its own, for a quiet hour (:func:`scrub`, ``eldercare db scrub``).

Last, the alarms closed before outcome codes (0015) are given the code their outcome text tells, where it tells it
reliably, in the same kind of short batches (``outcomes.py``); the key is read only when there is one to look at.
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
from eldercare.platform.db import SCRUB_LOCK_TIMEOUT
from eldercare.platform.db.batches import LOCK_KEY, Row, in_batches
from eldercare.platform.db.keycheck import checked_vault  # a wrong key seals nothing

log = logging.getLogger(__name__)

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


class ScrubError(RuntimeError):
    def __init__(self, table: str, reason: str) -> None:
        super().__init__(f"{table}: {reason}")
        self.table = table
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
    """Apply what is missing (:func:`apply_migrations`), then seal what is in clear (:func:`seal_in_clear`, then the
    positions, ``positions.py``, and the heart and breathing rates, ``vitals.py``), then give the alarms closed
    without an outcome code the one their outcome text tells (``outcomes.py``); return the migrations applied now.
    ``data_key`` (default: the settings' ``ELDERCARE_DATA_KEY``) encrypts what is in clear and opens the outcome
    texts."""
    from eldercare.platform.db.outcomes import backfill_outcome_codes  # it reads the alarms' models, above db
    from eldercare.platform.db.positions import seal_positions
    from eldercare.platform.db.vitals import seal_vitals

    applied_now = apply_migrations(conninfo)
    seal_in_clear(conninfo, data_key=data_key)
    seal_positions(conninfo, data_key=data_key)
    seal_vitals(conninfo, data_key=data_key)
    backfill_outcome_codes(conninfo, data_key=data_key)
    return applied_now


def apply_migrations(conninfo: str) -> list[Migration]:
    """The SQL migrations that are missing, each in its own transaction, and the region codes; those applied now."""
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
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


SEAL_BATCH_ROWS = 2000
"""Rows sealed per transaction: each batch's rows are locked only while it runs (tens of milliseconds)."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """What one table's seal did: ``rows`` sealed in ``batches`` short transactions."""

    table: str
    what: str
    rows: int
    batches: int


def seal_in_clear(conninfo: str, *, data_key: bytes | None = None) -> list[Sealed]:
    """Encrypt the personal text still in clear (every :class:`Sealing` whose migration is applied) and empty the old
    columns; what was sealed, per table.

    Built to run while the platform runs. Each table is sealed in batches of :data:`SEAL_BATCH_ROWS` rows, each in a
    short transaction of its own that locks only its rows (``FOR NO KEY UPDATE``: the alarm engine still inserts
    alarms and their changes, and waits at most one batch for a row of it); then a plain ``VACUUM (ANALYZE)``, which
    takes no lock that writers wait for, frees the old row versions for reuse and refreshes the planner's statistics
    (they sample column values). It does not rewrite the tables: the bytes of the old row versions, which hold the
    text, may stay in the table files until overwritten. :func:`scrub` removes them, in a quiet hour."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        due = [(s, t) for s in _sealings() if is_applied(conn, s.since) for t in s.tables if _has_clear(conn, t)]
        if not due:
            return []
        vault = sealing_vault(
            conninfo, data_key, due[0][0].since, need="personal data is stored in clear", to="encrypt it"
        )
        sealed: list[Sealed] = []
        for sealing, table in due:
            done = _seal_table(conn, vault, table, sealing.what)
            log.info(
                "encrypted the %s of %d rows of %s that were stored in clear (%d batches)",
                sealing.what,
                done.rows,
                table.table,
                done.batches,
            )
            sealed.append(done)
        tables = [s.table for s in sealed if s.rows]
        if tables:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
    return sealed


def _sealings() -> tuple[Sealing, ...]:
    # The domains that own the columns sit above db: imported when a migrate runs, not when this module loads.
    from eldercare.ingest import parked
    from eldercare.platform.alarms import text as alarm_text
    from eldercare.platform.registry import health_text

    return (health_text.SEALING, alarm_text.SEALING, parked.SEALING)


def is_applied(conn: Conn, version: int) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %s)", (version,)).fetchone()
    return row is not None and bool(row[0])


def _has_clear(conn: Conn, table: ClearTable) -> bool:
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(sql.Identifier(table.table), table.where())
    row = conn.execute(query).fetchone()
    return row is not None and bool(row[0])


def _seal_table(conn: Conn, vault: Vault, table: ClearTable, what: str) -> Sealed:
    """Encrypt the text of ``table`` still in clear and empty the old columns, batch by batch in key order through the
    partial index of the rows in clear. A text already encrypted is kept unless the old column holds one. Rows that a
    writer of an older version adds in clear after the last key seen at the start are left to the next migrate, so
    the run ends even while such a writer goes on."""
    name, key = sql.Identifier(table.table), sql.Identifier(table.key)
    where = sql.SQL("({})").format(table.where())
    last = conn.execute(
        sql.SQL("SELECT {key} FROM {name} WHERE {where} ORDER BY {key} DESC LIMIT 1").format(
            key=key, name=name, where=where
        )
    ).fetchone()
    if last is None:
        return Sealed(table.table, what, 0, 0)
    texts = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN {} END").format(sql.SQL(c.in_clear), sql.SQL(c.text or c.name))
        for c in table.columns
    )
    select = sql.SQL(
        "SELECT {key}, {texts} FROM {name} WHERE {where} AND {key} > %s AND {key} <= %s"
        " ORDER BY {key} LIMIT %s FOR NO KEY UPDATE"
    ).format(key=key, texts=texts, name=name, where=where)
    encs = [sql.Identifier(f"e{i}") for i in range(len(table.columns))]
    update = sql.SQL(
        "UPDATE {name} t SET {sets} FROM unnest(%s::bigint[], {arrays}) AS s(key, {encs}) WHERE t.{key} = s.key"
    ).format(
        name=name,
        sets=sql.SQL(", ").join(
            sql.SQL("{enc} = coalesce(s.{e}, t.{enc}), {col} = {emptied}").format(
                enc=sql.Identifier(c.enc), e=e, col=sql.Identifier(c.name), emptied=sql.SQL(c.emptied)
            )
            for c, e in zip(table.columns, encs, strict=True)
        ),
        arrays=sql.SQL(", ").join(sql.SQL("%s::bytea[]") for _ in table.columns),
        encs=sql.SQL(", ").join(encs),
        key=key,
    )

    def rewrite(batch: list[Row]) -> int:
        columns: list[list[bytes | None]] = [[] for _ in table.columns]
        for _, *values in batch:
            for out, column, value in zip(columns, table.columns, values, strict=True):
                out.append(_sealed(vault, value, table.aad(column)))
        conn.execute(update, ([row[0] for row in batch], *columns))
        return len(batch)

    walked = in_batches(
        conn,
        start=-(2**63),
        select=lambda after: conn.execute(select, (after, last[0], SEAL_BATCH_ROWS)).fetchall(),
        rewrite=rewrite,
        after=lambda batch: batch[-1][0],
        what=f"seal {table.table}",
    )
    return Sealed(table.table, what, walked.rows, walked.batches)


def _sealed(vault: Vault, value: str | bytes | None, column: str) -> bytes | None:
    """Text sealed as text; bytes (a ``bytea`` column: a parked payload) as they are."""
    if value is None:
        return None
    return vault.seal_bytes(value, column=column) if isinstance(value, bytes) else vault.encrypt(value, column=column)


def scrub(conninfo: str, *, lock_timeout: str = SCRUB_LOCK_TIMEOUT) -> list[str]:
    """Rewrite the tables that held text in clear (``VACUUM (FULL, ANALYZE)``, one table at a time), so the old row
    versions that :func:`seal_in_clear` left behind leave the table files; the tables rewritten.

    A maintenance step for a quiet hour: each rewrite holds an ACCESS EXCLUSIVE lock on its table while it runs, so the
    alarm engine cannot raise or change an alarm until the ``alarms`` table is done. It waits at most
    ``lock_timeout`` for each lock (a rewrite queued behind a long transaction would hold up every writer behind it)
    and then fails, naming the table. Refused while text is still in clear: run :func:`seal_in_clear` first. Beyond
    its reach: the old table files' blocks on the disk until the file system reuses them, the write-ahead log (its
    segments until recycled, and any WAL archive), replicas' and backups' copies taken before."""
    from eldercare.platform.db import positions, vitals

    with psycopg.connect(conninfo, autocommit=True) as conn:
        sealed = [t for s in _sealings() if is_applied(conn, s.since) for t in s.tables]
        left = [t.table for t in sealed if _has_clear(conn, t)]
        left += [*positions.positions_in_clear(conn), *vitals.vitals_in_clear(conn)]
        if left:
            raise ScrubError(left[0], "personal data is still in clear; run `eldercare db migrate` first")
        tables = [t.table for t in sealed] + [
            table for step in (positions, vitals) if is_applied(conn, step.SINCE) for table in step.TABLES
        ]
        done: list[str] = []
        try:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(lock_timeout)))
        except psycopg.errors.InvalidParameterValue:
            raise ScrubError("lock_timeout", f"{lock_timeout!r} is not a PostgreSQL interval") from None
        for table in tables:
            try:
                conn.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(table)))
            except psycopg.errors.LockNotAvailable:
                raise ScrubError(table, f"its lock was not granted within {lock_timeout}; try again later") from None
            log.info("rewrote %s", table)
            done.append(table)
    return done


def sealing_vault(conninfo: str, data_key: bytes | None, version: int, *, need: str, to: str) -> Vault:
    """The checked vault a migrate step seals or opens with: ``data_key``'s, or the settings' (``ELDERCARE_DATA_KEY``
    and, during a rotation, ``ELDERCARE_DATA_KEY_PREVIOUS``); a :class:`MigrationError` of ``version`` if the
    settings have no valid key (:func:`settings_key`)."""
    if data_key is not None:
        return checked_vault(conninfo, data_key)
    key = settings_key(version, need=need, to=to)
    return checked_vault(conninfo, key, previous=_settings_previous_key())


def _settings_previous_key() -> bytes | None:
    from eldercare.platform.config import SecuritySettings

    return SecuritySettings().previous_key_bytes()  # read after settings_key: valid by then


def settings_key(version: int, *, need: str, to: str) -> bytes:
    """The data key of the settings (``ELDERCARE_DATA_KEY``), or else a :class:`MigrationError` of ``version`` that
    says why it is needed (``need``) and what it is for (``to``)."""
    from pydantic import ValidationError

    from eldercare.platform.config import SecuritySettings

    try:
        return SecuritySettings().key_bytes()
    except ValidationError:  # its text may quote the settings' values: neither repeated nor chained
        raise MigrationError(version, f"{need}; set ELDERCARE_DATA_KEY (a valid key) to {to}") from None


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
