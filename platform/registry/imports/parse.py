"""Reading an upload (CSV or XLSX) into numbered rows of text, and checking each row against its model.

Row numbers are the spreadsheet's: the header is row 1, the first data row is row 2. Blank rows are
skipped. Every problem is reported as (row, column, reason); nothing is imported while any remains.

Every upload may be hostile. Whatever stops a file from being read (a broken ZIP or XML part, a workbook
without sheets, a cell longer than :data:`MAX_CELL`) is an :class:`ImportRejected` naming ``file``, never
an internal error. The work is bounded whatever the file declares: at most :data:`MAX_UNZIPPED` bytes of
XML are inflated, a sheet declaring more than :data:`MAX_ROWS` data rows is refused before it is read, and
rows are read only as wide as the header (a cell at column XFD costs nothing). Parsing is CPU work: the
API runs :func:`read_rows` in a worker thread, off the event loop.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, TypeVar

from openpyxl import load_workbook
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
MAX_CELL = 1_000  # characters; the longest legitimate cell (a name, an address, a label) is far shorter
# Inflated size of all the workbook's parts: 10,000 rows of a dozen columns is about 5 MB of sheet XML.
MAX_UNZIPPED = 64 * 1024 * 1024
_TOO_LONG = f"a cell is longer than {MAX_CELL} characters"


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str
    reason: str


class ImportRejected(Exception):  # noqa: N818 - a verdict on a file, carrying every reason
    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s)")
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    values: dict[str, str]
    numeric: frozenset[str]  # columns whose cell was a number in the sheet


def _cell(value: object) -> tuple[str, bool]:
    if value is None:
        return "", False
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        return (str(int(value)) if value.is_integer() else repr(value)), True
    if isinstance(value, datetime):  # an Excel date cell: midnight of the day, shown as the day
        return (value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")), False
    if isinstance(value, date):
        return value.isoformat(), False
    return str(value).strip(), False


def _unreadable(what: str, exc: BaseException) -> ImportRejected:
    return ImportRejected([RowError(0, "file", f"not a readable {what} ({type(exc).__name__}: {exc})"[:300])])


def _xlsx(data: bytes, width: int) -> list[list[tuple[str, bool]]]:
    """The sheet's rows, at most ``width`` cells wide (the header is cut there too)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _unreadable("XLSX workbook", exc) from exc
    if unzipped > MAX_UNZIPPED:
        raise ImportRejected(
            [RowError(0, "file", f"inflates to {unzipped} bytes, more than {MAX_UNZIPPED}: not a plain table")]
        )
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            if not book.worksheets:
                raise ImportRejected([RowError(0, "file", "the workbook has no worksheet")])
            sheet = book.worksheets[0]
            declared = sheet.max_row  # from <dimension ref="A1:XFD10002"/>, if the sheet has one
            if isinstance(declared, int) and declared > MAX_ROWS + 1:
                raise ImportRejected(
                    [RowError(0, "file", f"the sheet declares {declared} rows: more than {MAX_ROWS}; split the file")]
                )
            # max_col bounds every row: read-only openpyxl pads each row to max_col (or to the declared width).
            return [
                [_cell(v) for v in row]
                for row in sheet.iter_rows(values_only=True, max_row=MAX_ROWS + 2, max_col=width)
            ]
        finally:
            book.close()
    except ImportRejected:
        raise
    # The file is hostile until read: zipfile, the XML parser and openpyxl's descriptors fail in open-ended
    # ways (BadZipFile, KeyError, ParseError, ExpatError, IndexError, TypeError, ...). Each one is a verdict
    # on the file, reported with its type; none may become a 500.
    except Exception as exc:
        raise _unreadable("XLSX workbook", exc) from exc


def _csv(data: bytes) -> list[list[tuple[str, bool]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")  # what Excel in a Chinese locale writes
        except UnicodeDecodeError as exc:
            raise ImportRejected([RowError(0, "file", "not UTF-8 or GB18030 text")]) from exc
    if "\x00" in text:
        raise ImportRejected([RowError(0, "file", "contains NUL characters: not a CSV text file")])
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return [[(cell.strip(), False) for cell in row] for row in reader]
    except csv.Error as exc:
        # csv's own limit (field_size_limit(), process-wide, left alone) is far above MAX_CELL
        if "field larger than field limit" in str(exc):
            raise ImportRejected([RowError(reader.line_num, "file", _TOO_LONG)]) from exc
        raise _unreadable(f"CSV file (line {reader.line_num})", exc) from exc


def read_rows(data: bytes, *, filename: str, columns: Sequence[str], required: Sequence[str]) -> list[Row]:
    """The data rows of a CSV or XLSX upload, by column name; header problems reported as row 1."""
    if len(data) > MAX_BYTES:
        raise ImportRejected([RowError(0, "file", f"larger than {MAX_BYTES // (1024 * 1024)} MiB")])
    is_xlsx = filename.lower().endswith(".xlsx") or data[:2] == b"PK"
    # A valid header names each known column at most once, with no blank between: one cell more than the known
    # columns is enough to see an unknown or repeated one.
    raw = _xlsx(data, len(columns) + 1) if is_xlsx else _csv(data)
    if not raw:
        raise ImportRejected([RowError(1, "header", "the file is empty")])
    too_long = [
        RowError(number, "file", _TOO_LONG)
        for number, cells in enumerate(raw, start=1)
        if any(len(text) > MAX_CELL for text, _ in cells)
    ]
    if too_long:
        raise ImportRejected(too_long[:20])
    header = [name.strip().lower() for name, _ in raw[0]]
    while header and header[-1] == "":
        header.pop()
    errors = [
        RowError(1, name or f"column {i + 1}", "unknown column") for i, name in enumerate(header) if name not in columns
    ]
    errors += [
        RowError(1, name, f"column {name!r} appears twice")
        for i, name in enumerate(header)
        if name and name in header[:i]
    ]
    errors += [RowError(1, name, "required column is missing") for name in required if name not in header]
    if errors:
        raise ImportRejected(errors)
    rows: list[Row] = []
    for offset, cells in enumerate(raw[1:], start=2):
        if all(text == "" for text, _ in cells):
            continue
        if len(rows) >= MAX_ROWS:
            raise ImportRejected([RowError(offset, "file", f"more than {MAX_ROWS} rows; split the file")])
        values = {name: (cells[i][0] if i < len(cells) else "") for i, name in enumerate(header)}
        numeric = frozenset(name for i, name in enumerate(header) if i < len(cells) and cells[i][1])
        rows.append(Row(offset, values, numeric))
    return rows


def validate(
    rows: Sequence[Row], model: type[M], *, prepare: Callable[[Row], dict[str, Any]] | None = None
) -> tuple[list[tuple[Row, M]], list[RowError]]:
    """Each row through ``model``; the good ones, and every field error with its row and column."""
    good: list[tuple[Row, M]] = []
    errors: list[RowError] = []
    for row in rows:
        data = prepare(row) if prepare else {k: v for k, v in row.values.items() if v != ""}
        try:
            good.append((row, model.model_validate(data)))
        except ValidationError as exc:
            for err in exc.errors():
                column = str(err["loc"][0]) if err["loc"] else "row"
                errors.append(RowError(row.number, column, err["msg"]))
    return good, errors
