"""Hostile import files: each is refused with a 422 naming ``file`` and a clear reason (never a 500), costs
little whatever the file declares, is parsed off the event loop (the API keeps answering meanwhile), and the
service goes on importing good files afterwards."""

from __future__ import annotations

import io
import threading
import time
import zipfile

import httpx
from openpyxl import Workbook
from tests.registry.support import World

_NS = b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
_HEADER = (
    b'<row r="1"><c r="A1" t="inlineStr"><is><t>code</t></is></c><c r="B1" t="inlineStr"><is><t>kind</t></is></c></row>'
)


def _good() -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["code", "kind"])
    sheet.append(["D1", "button"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _mutate(member: str, content: bytes) -> bytes:
    """A real workbook with one part replaced."""
    source = zipfile.ZipFile(io.BytesIO(_good()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, content if info.filename == member else source.read(info.filename))
    return out.getvalue()


def _post(world: World, name: str, data: bytes, timeout: float = 120) -> httpx.Response:
    return world.users["staff_a"].post(
        f"/api/v1/institutions/{world.a.id}/imports/devices",
        files={"file": (name, data)},
        params={"dry_run": "true"},
        timeout=timeout,
    )


def _file_reason(reply: httpx.Response) -> str:
    assert reply.status_code == 422, reply.text
    errors = reply.json()["errors"]
    assert len(errors) >= 1 and all(e["field"].endswith(".file") for e in errors), errors
    return str(errors[0]["reason"])


def test_a_workbook_declaring_a_huge_sheet_is_refused_at_once(world: World) -> None:
    # 4.7 KB that claims 10,002 rows of 16,384 columns (read as declared: 14 s and 1.3 GB before the fix)
    sheet = _NS + b'<dimension ref="A1:XFD10002"/><sheetData>' + _HEADER
    sheet += b'<row r="10002"><c r="A10002" t="inlineStr"><is><t>D1</t></is></c></row></sheetData></worksheet>'
    data = _mutate("xl/worksheets/sheet1.xml", sheet)
    assert len(data) < 10_000
    started = time.monotonic()
    reply = _post(world, "bomb.xlsx", data)
    assert "declares 10002 rows" in _file_reason(reply)
    assert time.monotonic() - started < 30  # generous: the figures are in the note, not here


def test_the_api_keeps_answering_while_a_wide_workbook_is_read(world: World) -> None:
    # 10,000 rows each with one cell at column XFD: without max_col each row is padded to 16,384 values,
    # synchronously in the handler, and /healthz (and every alarm) waited for it.
    rows = b"".join(b'<row r="%d"><c r="XFD%d" t="inlineStr"><is><t>x</t></is></c></row>' % (i, i)
                    for i in range(2, 10_002))  # fmt: skip
    data = _mutate("xl/worksheets/sheet1.xml", _NS + b"<sheetData>" + _HEADER + rows + b"</sheetData></worksheet>")
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=120) as http:
            while not done.is_set():
                started = time.monotonic()
                assert http.get(world.base + "/healthz").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe, name="healthz-probe")
    prober.start()
    try:
        time.sleep(0.2)
        reply = _post(world, "wide.xlsx", data)
    finally:
        done.set()
        prober.join(timeout=150)
    # the cells beyond the header are not columns of the import: nothing to import, nothing refused
    assert reply.status_code == 200, reply.text
    assert reply.json()["rows"] == 0
    assert latencies and max(latencies) < 5.0, f"/healthz waited {max(latencies):.1f} s during the upload"


def test_unreadable_files_are_refused_naming_the_file(world: World) -> None:
    long_cell = b"code,kind,vendor\nD1,button," + b"x" * 200_000 + b"\n"
    assert _file_reason(_post(world, "long.csv", long_cell)) == "a cell is longer than 1000 characters"
    assert _post(world, "long.csv", long_cell).json()["errors"][0]["field"] == "rows[2].file"
    broken = {
        "xl/workbook.xml": b"<not xml",
        "xl/worksheets/sheet1.xml": b"<not xml",
        "xl/styles.xml": b"<not xml",
        "[Content_Types].xml": b"<not xml",
    }
    for member, content in broken.items():
        reason = _file_reason(_post(world, "broken.xlsx", _mutate(member, content)))
        assert reason.startswith("not a readable XLSX workbook"), (member, reason)
    assert _file_reason(_post(world, "nosheet.xlsx", _mutate("xl/workbook.xml", b"<a/>"))) == (
        "the workbook has no worksheet"
    )
    # the service is still there and still imports a good file
    assert _post(world, "good.xlsx", _good()).json()["rows"] == 1
