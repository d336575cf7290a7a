"""Claims: a home's lines for a month, from the API or a CSV/XLSX file, checked whole and stored whole.

A file's columns are those of the simulators' claim file (docs/simulators.md), ``claim_id, institution_code,
programme, month, person_code, bed_code, days, amount_yuan`` (``amount`` is taken for ``amount_yuan``, and
``claim_id``, ``institution_code`` and ``month`` may be left out); ``bed_code``, ``days``/``amount`` may be
empty where they do not apply, and a line for a bed may name no person (it claims the bed's occupancy). The
programme may be written as its code, a short alias (``home_care_bed``) or its Chinese name.

Every problem is reported as ``rows[N].column`` (the spreadsheet's row number, header = 1) or, for a JSON
body, ``lines[i].column`` (0-based); a submission with any problem stores nothing. A code that is well formed
but unknown at the home is not a problem of the file: it is stored and found by verification.

A new submission for a month replaces the home's previous one for that month (kept, with its verdicts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from eldercare.devices import codes
from eldercare.platform.audit import log as audit
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.registry.imports.parse import ImportRejected, read_rows
from eldercare.platform.subsidy.access import parse_month
from eldercare.platform.subsidy.errors import LineError, Rejected
from eldercare.platform.subsidy.rules import month_days

COLUMNS = (
    "claim_id", "institution_code", "programme", "month", "person_code", "bed_code", "days", "amount", "amount_yuan",
)  # fmt: skip
REQUIRED = ("person_code", "programme")
ALIASES = {
    "home_care_bed": "home_care_bed_subsidy", "hardship_disability": "hardship_disability_subsidy",
    "运营补贴": "operating_subsidy", "养老机构运营补贴": "operating_subsidy", "高龄津贴": "old_age_allowance",
    "家庭养老床位": "home_care_bed_subsidy", "家庭养老床位补贴": "home_care_bed_subsidy",
    "经济困难及失能老人补贴": "hardship_disability_subsidy", "失能老人补贴": "hardship_disability_subsidy",
}  # fmt: skip
MAX_AMOUNT = Decimal(100_000)
NO_LINES = "the claim has no lines"  # an empty claim is refused: it would withdraw the month's claim silently
_CHINA = timezone(timedelta(hours=8))
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line as submitted: where it is (for messages), its number, and its cells as text."""

    where: str
    line_no: int
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class Line:
    line_no: int
    person_code: str | None  # None: a claim for a bed's occupancy
    bed_code: str | None
    programme: str
    days: int | None
    amount: Decimal | None
    ref: str | None = None


def check_month(month: date, *, today: date | None = None) -> str | None:
    """Why a claim for ``month`` cannot be taken yet, or None: a month is claimed once it is over."""
    _, last, _ = month_days(month)
    if last >= (today or datetime.now(_CHINA).date()):
        return "a month is claimed after it has ended"
    return None


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise ValueError(f"an amount in yuan above 0 and at most {MAX_AMOUNT}")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("at most two decimals (fen)")
    return value.quantize(Decimal("0.01"))


def _days(text: str, in_month: int) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite() or value != value.to_integral_value() or not 1 <= value <= in_month:
        raise ValueError(f"a whole number of days from 1 to {in_month}")
    return int(value)


def _cell(values: dict[str, str], column: str, parse: Callable[[str], T], bad: Callable[[str, str], None]) -> T | None:
    """The parsed cell, or None when it is empty or bad (then reported)."""
    text = values.get(column, "")
    if not text:
        return None
    try:
        return parse(text)
    except codes.CodeError as exc:
        bad(column, exc.reason)
    except ValueError as exc:
        bad(column, str(exc))
    return None


def _ref(text: str) -> str:
    value = text.strip()
    if len(value) > 64 or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("at most 64 printable characters")
    return value


def _line(
    raw: RawLine, *, month: date, units: dict[str, str], home_code: str | None, errors: list[LineError]
) -> Line | None:
    found: list[LineError] = []

    def bad(column: str, reason: str) -> None:
        found.append(LineError(raw.where, column, reason))

    v = raw.values
    _, _, in_month = month_days(month)
    person = _cell(v, "person_code", codes.validate_person_code, bad)
    bed = _cell(v, "bed_code", codes.validate_bed_code, bad)
    text = v.get("programme", "").strip()
    programme = ALIASES.get(text, text.lower())
    unit = units.get(programme)
    if unit is None:
        bad("programme", f"not a programme; one of {', '.join(sorted(units))}")
    days = _cell(v, "days", lambda cell: _days(cell, in_month), bad)
    amount = _cell(v, "amount", _amount, bad)
    if v.get("amount_yuan"):
        if v.get("amount"):
            bad("amount_yuan", "give amount or amount_yuan, not both")
        amount = _cell(v, "amount_yuan", _amount, bad)
    claim_month = _cell(v, "month", parse_month, bad)
    if claim_month is not None and claim_month != month:
        bad("month", f"not the claim's month {month:%Y-%m}")
    if v.get("institution_code") and home_code is not None and v["institution_code"].strip().upper() != home_code:
        bad("institution_code", "a line of another home")
    ref = _cell(v, "claim_id", _ref, bad)
    if unit == "bed_day":
        for column in ("bed_code", "days"):
            if not v.get(column):
                bad(column, "required: this programme is paid per day of a bed")
    else:
        if not v.get("person_code"):
            bad("person_code", "required: this programme is paid per person")
        if not v.get("days") and not (v.get("amount") or v.get("amount_yuan")):
            bad("amount", "give the days or the amount claimed")
    errors.extend(found)
    if found or unit is None or (person is None and bed is None):
        return None
    return Line(raw.line_no, person, bed, programme, days, amount, ref)


def check(
    raw: Sequence[RawLine],
    *,
    month: date,
    units: dict[str, str],
    home_code: str | None = None,
    today: date | None = None,
) -> list[Line]:
    """Every line checked; raise :class:`Rejected` with each problem if there is any. ``home_code``: the home
    the lines are for (a line naming another institution code is refused)."""
    errors: list[LineError] = []
    why = check_month(month, today=today)
    if why:
        raise Rejected([LineError("claim", "month", why)])
    if not raw:  # it would replace the month's claim in force with nothing
        raise Rejected([LineError("claim", "lines", NO_LINES)])
    lines = [
        line
        for r in raw
        if (line := _line(r, month=month, units=units, home_code=home_code, errors=errors)) is not None
    ]
    seen: dict[tuple[str, str, str], str] = {}
    by_no = {r.line_no: r.where for r in raw}
    for line in lines:
        per_bed = units[line.programme] == "bed_day"
        key = (line.person_code or "", line.programme, (line.bed_code or "") if per_bed else "")
        if key in seen:
            what = "person" if line.person_code else "bed"
            errors.append(
                LineError(by_no[line.line_no], f"{what}_code", f"the same {what} and programme as {seen[key]}")
            )
        else:
            seen[key] = by_no[line.line_no]
    if errors:
        raise Rejected(sorted(errors, key=_order))
    return lines


def _order(e: LineError) -> tuple[int, str]:
    digits = "".join(ch for ch in e.where if ch.isdigit())
    return (int(digits) if digits else -1, e.column)


def file_lines(data: bytes, *, filename: str) -> list[RawLine]:
    """The data rows of a CSV or XLSX claim file (the registry's reader: same limits and messages)."""
    try:
        rows = read_rows(data, filename=filename, columns=COLUMNS, required=REQUIRED)
    except ImportRejected as exc:
        raise Rejected([LineError(f"rows[{e.row}]", e.column, e.reason) for e in exc.errors]) from exc
    if not rows:
        raise Rejected([LineError("rows[0]", "file", f"{NO_LINES}: the file has a header but no data rows")])
    return [RawLine(f"rows[{r.number}]", r.number, r.values) for r in rows]


def by_home(raw: Sequence[RawLine]) -> dict[str, list[RawLine]]:
    """The lines of a file for several homes, by institution code (a line without one is refused)."""
    out: dict[str, list[RawLine]] = {}
    missing = [LineError(r.where, "institution_code", "required in a file for several homes")
               for r in raw if not r.values.get("institution_code")]  # fmt: skip
    if missing:
        raise Rejected(missing)
    for r in raw:
        out.setdefault(r.values["institution_code"].strip().upper(), []).append(r)
    return out


def check_homes(
    groups: dict[str, list[RawLine]], *, homes: set[str], month: date, units: dict[str, str]
) -> dict[str, list[Line]]:
    """Each home's lines checked (``homes``: the codes the caller may claim for); every problem or nothing."""
    checked: dict[str, list[Line]] = {}
    errors: list[LineError] = []
    for code, lines in groups.items():
        if code not in homes:
            errors += [LineError(r.where, "institution_code", "no such home in your region") for r in lines]
            continue
        try:
            checked[code] = check(lines, month=month, units=units, home_code=code)
        except Rejected as exc:
            errors += exc.errors
    if errors:
        raise Rejected(sorted(errors, key=_order))
    return checked


def file_month(raw: Sequence[RawLine]) -> date:
    """The month a file is for when the upload does not name it: the first row's ``month`` (rows of another
    month are then reported)."""
    text = raw[0].values.get("month", "") if raw else ""
    if not text:
        raise Rejected([LineError("query", "month", "name the month, or fill the month column")])
    try:
        return parse_month(text)
    except ValueError as exc:
        raise Rejected([LineError(raw[0].where, "month", str(exc))]) from exc


async def programme_units(conn: AsyncConn) -> dict[str, str]:
    rows = await (await conn.execute("SELECT code, unit FROM subsidy_programmes")).fetchall()
    return {str(code): str(unit) for code, unit in rows}


@dataclass(frozen=True, slots=True)
class Stored:
    claim_id: int
    month: date
    lines: int
    replaced: int | None  # the claim it replaced


async def store(
    conn: AsyncConn,
    *,
    principal: Principal,
    institution_id: int,
    month: date,
    lines: Sequence[Line],
    source: str,
    filename: str = "",
) -> Stored:
    """Store a checked claim (inside the caller's transaction), replacing the month's previous one."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('subsidy-claim'), %s::int)", (institution_id % 2**31,))
    old = await (
        await conn.execute(
            "UPDATE subsidy_claims SET replaced_at = now() WHERE institution_id = %s AND month = %s"
            " AND replaced_at IS NULL RETURNING id",
            (institution_id, month),
        )
    ).fetchone()
    row = await (
        await conn.execute(
            "INSERT INTO subsidy_claims (institution_id, month, source, filename, lines, submitted_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (institution_id, month, source, filename[:255], len(lines), principal.user_id),
        )
    ).fetchone()
    assert row is not None
    claim_id = int(row[0])
    async with conn.cursor().copy(
        "COPY subsidy_claim_lines (claim_id, line_no, ref, person_code, bed_code, programme, days, amount) FROM STDIN"
    ) as copy:
        for line in lines:
            await copy.write_row(
                (claim_id, line.line_no, line.ref, line.person_code, line.bed_code, line.programme, line.days,
                 line.amount)
            )  # fmt: skip
    replaced = None if old is None else int(old[0])
    await audit.record(
        conn,
        principal=principal,
        action="submit_claim",
        object_type="subsidy_claim",
        object_id=claim_id,
        institution_id=institution_id,
        detail={"month": f"{month:%Y-%m}", "lines": len(lines), "source": source, "replaced": replaced},
    )
    return Stored(claim_id, month, len(lines), replaced)
