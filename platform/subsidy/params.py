"""Query parameters and file answers shared by the subsidy routers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import Query, Response

from eldercare.platform.subsidy import reports
from eldercare.platform.subsidy.reason_text import Lang

Month = Annotated[str, Query(pattern=r"^[0-9]{4}-[0-9]{2}$", description="YYYY-MM")]
Region = Annotated[
    str | None, Query(pattern=r"^[0-9]{2,9}$", description="administrative division code; default: the regulator's")
]
Format = Annotated[Literal["csv", "xlsx"], Query(description="csv (UTF-8 with BOM) or xlsx")]
ExportLang = Annotated[
    Lang,
    Query(description="en: headers and values as codes (stable, for programs); zh-CN: named in Chinese, for people"),
]
FILES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, reports.XLSX: {}}, "description": "the report as a file"}
}


async def file_response(name: str, title: str, columns: Sequence[str], rows: list[list[object]], kind: str) -> Response:
    """A report as a CSV or XLSX download."""
    if kind == "xlsx":
        data = await asyncio.to_thread(reports.xlsx_bytes, title, columns, rows)  # CPU work off the loop
        media = reports.XLSX
    else:
        data, media = reports.csv_bytes(columns, rows), reports.CSV
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}.{kind}"'})
