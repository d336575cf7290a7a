"""Reading an upload (CSV or XLSX) into numbered rows of text, and checking each row against its model.

Row numbers are the spreadsheet's: the header is row 1, the first data row is row 2. Blank rows are
skipped. Every problem is reported as (row, column, reason); nothing is imported while any remains.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from openpyxl import load_workbook
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000


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
    return str(value).strip(), False


def _xlsx(data: bytes) -> list[list[tuple[str, bool]]]:
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ImportRejected([RowError(0, "file", f"not a readable XLSX workbook ({type(exc).__name__})")]) from exc
    sheet = book.worksheets[0]
    rows = [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True, max_row=MAX_ROWS + 2)]
    book.close()
    return rows


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
    return [[(cell.strip(), False) for cell in row] for row in csv.reader(io.StringIO(text, newline=""))]


def read_rows(data: bytes, *, filename: str, columns: Sequence[str], required: Sequence[str]) -> list[Row]:
    """The data rows of a CSV or XLSX upload, by column name; header problems reported as row 1."""
    if len(data) > MAX_BYTES:
        raise ImportRejected([RowError(0, "file", f"larger than {MAX_BYTES // (1024 * 1024)} MiB")])
    is_xlsx = filename.lower().endswith(".xlsx") or data[:2] == b"PK"
    raw = _xlsx(data) if is_xlsx else _csv(data)
    if not raw:
        raise ImportRejected([RowError(1, "header", "the file is empty")])
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
