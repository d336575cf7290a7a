"""Civil-affairs registers imported as files of ID numbers: deaths (death and funeral data, 殡葬数据) and
hardship (低保, 特困, 低收入). Each ID number is checked (GB 11643-1999) and kept only as its keyed hash, the
same hash the registry keeps for residents, so a match needs no ID number in clear. All rows or none.

deaths:   id_number, died_on (YYYY-MM-DD), source (funeral | civil_affairs | hospital | public_security;
          default funeral)
hardship: id_number, category (dibao | tekun | low_income, or 低保 特困 低收入), valid_from, valid_to
          (both YYYY-MM-DD, valid_to included and optional)

Dates are exactly YYYY-MM-DD (or an XLSX date cell) between 1900-01-01 and 2100-12-31; anything else is
refused with its row and column, never cut to fit. Importing the same file again adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

from pydantic import BaseModel

from eldercare.devices import codes
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.imports.parse import ImportRejected, Row, read_rows
from eldercare.platform.subsidy.errors import LineError, Rejected

Register = Literal["deaths", "hardship"]
_CHINA = timezone(timedelta(hours=8))
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "deaths": (("id_number", "died_on", "source", "name", "place"), ("id_number", "died_on")),
    "hardship": (("id_number", "category", "valid_from", "valid_to", "name"), ("id_number", "category", "valid_from")),
}
SOURCES = {
    "funeral": "funeral", "殡葬": "funeral", "civil_affairs": "civil_affairs", "民政": "civil_affairs",
    "hospital": "hospital", "医院": "hospital", "public_security": "public_security", "公安": "public_security",
}  # fmt: skip
CATEGORIES = {"dibao": "dibao", "低保": "dibao", "tekun": "tekun", "特困": "tekun", "low_income": "low_income",
              "低收入": "low_income"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    id_hash: bytes
    birth: date
    day: date  # died_on, or valid_from
    until: date | None  # valid_to (hardship)
    kind: str  # death source, or hardship category


class ImportReport(BaseModel):
    kind: str
    region_code: str
    rows: int
    added: int
    residents_matched: int  # residents of the region's homes whose ID number is in the file


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
EARLIEST, LATEST = date(1900, 1, 1), date(2100, 12, 31)  # 2099-12-31 is the usual "no end" of a validity


def _date(text: str) -> date:
    """Exactly ``YYYY-MM-DD`` (an XLSX date cell reads as that too), a real day between EARLIEST and LATEST:
    nothing is cut off or guessed (``2020-01-01xyz`` and ``20991231`` are refused)."""
    if not _DAY.fullmatch(text.strip()):
        raise ValueError("a date as YYYY-MM-DD")
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("a date as YYYY-MM-DD: no such day") from None
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"a date between {EARLIEST} and {LATEST}")
    return day


def _id_number(row: Row, today: date, bad: Callable[[str, str], None]) -> codes.IdNumber | None:
    if "id_number" in row.numeric:
        bad("id_number", "stored as a number, which Excel rounds: format the column as text")
        return None
    try:
        return codes.parse_id_number(row.values.get("id_number", ""), today=today)
    except codes.CodeError as exc:
        bad("id_number", exc.reason)
        return None


def _day(row: Row, column: str, bad: Callable[[str, str], None]) -> date | None:
    try:
        return _date(row.values.get(column, ""))
    except ValueError as exc:
        bad(column, str(exc))
        return None


def _entry(register: Register, row: Row, vault: Vault, today: date, errors: list[LineError]) -> Entry | None:
    found: list[LineError] = []

    def bad(column: str, reason: str) -> None:
        found.append(LineError(f"rows[{row.number}]", column, reason))

    number = _id_number(row, today, bad)
    day_column = "died_on" if register == "deaths" else "valid_from"
    day = _day(row, day_column, bad)
    if day is not None and day > today:
        bad(day_column, "in the future")
    elif day is not None and number is not None and day < number.birth_date:
        bad(day_column, "before the birth date in the ID number")
    until = None
    if register == "deaths":
        kind = SOURCES.get(row.values.get("source", "").strip().lower() or "funeral")
        if kind is None:
            bad("source", f"one of {', '.join(sorted(set(SOURCES.values())))}")
    else:
        kind = CATEGORIES.get(row.values.get("category", "").strip().lower())
        if kind is None:
            bad("category", "one of dibao, tekun, low_income (低保, 特困, 低收入)")
        until = _day(row, "valid_to", bad) if row.values.get("valid_to") else None
        if until is not None and day is not None and until < day:
            bad("valid_to", "before valid_from")
    errors.extend(found)
    if found or number is None or day is None or kind is None:
        return None
    return Entry(vault.lookup_hash(number.number), number.birth_date, day, until, kind)


def check(register: Register, data: bytes, *, filename: str, vault: Vault, today: date | None = None) -> list[Entry]:
    columns, required = COLUMNS[register]
    try:
        rows = read_rows(data, filename=filename, columns=columns, required=required)
    except ImportRejected as exc:
        raise Rejected([LineError(f"rows[{e.row}]", e.column, e.reason) for e in exc.errors]) from exc
    errors: list[LineError] = []
    day = today or datetime.now(_CHINA).date()
    entries: list[Entry] = []
    seen: dict[tuple[bytes, str], int] = {}
    for row in rows:
        entry = _entry(register, row, vault, day, errors)
        if entry is None:
            continue
        key = (entry.id_hash, entry.kind)
        if key in seen:
            errors.append(LineError(f"rows[{row.number}]", "id_number", f"the same person as rows[{seen[key]}]"))
            continue
        seen[key] = row.number
        entries.append(entry)
    if errors:
        raise Rejected(errors)
    return entries


async def store(
    conn: AsyncConn,
    *,
    principal: Principal,
    register: Register,
    region: str,
    filename: str,
    entries: list[Entry],
) -> ImportReport:
    """Add the entries (inside the caller's transaction); entries known already are left as they are."""
    row = await (
        await conn.execute(
            "INSERT INTO subsidy_register_imports (register, region_code, filename, rows, added, imported_by)"
            " VALUES (%s, %s, %s, %s, 0, %s) RETURNING id",
            (register, region, filename[:255], len(entries), principal.user_id),
        )
    ).fetchone()
    assert row is not None
    import_id = int(row[0])
    await conn.execute("CREATE TEMP TABLE register_in (id_hash bytea, day date, until date, kind text) ON COMMIT DROP")
    async with conn.cursor().copy("COPY register_in (id_hash, day, until, kind) FROM STDIN") as copy:
        for e in entries:
            await copy.write_row((e.id_hash, e.day, e.until, e.kind))
    if register == "deaths":
        added = await conn.execute(
            "INSERT INTO death_register (id_number_hash, died_on, source, import_id)"
            " SELECT id_hash, day, kind, %s FROM register_in ON CONFLICT DO NOTHING",
            (import_id,),
        )
    else:
        added = await conn.execute(
            "INSERT INTO hardship_register (id_number_hash, category, valid, import_id)"
            " SELECT id_hash, kind, daterange(day, until, '[]'), %s FROM register_in ON CONFLICT DO NOTHING",
            (import_id,),
        )
    count = max(added.rowcount, 0)
    matched = await (
        await conn.execute(
            "SELECT count(*) FROM residents r JOIN institutions i ON i.id = r.institution_id"
            " WHERE starts_with(i.region_code, %s) AND r.id_number_hash IN (SELECT id_hash FROM register_in)",
            (region,),
        )
    ).fetchone()
    await conn.execute("UPDATE subsidy_register_imports SET added = %s WHERE id = %s", (count, import_id))
    await audit.record(
        conn,
        principal=principal,
        action="import_register",
        object_type="subsidy_register_import",
        object_id=import_id,
        institution_id=None,
        detail={"register": register, "region_code": region, "rows": len(entries), "added": count},
    )
    return ImportReport(
        kind=register,
        region_code=region,
        rows=len(entries),
        added=count,
        residents_matched=int(matched[0]) if matched else 0,
    )
