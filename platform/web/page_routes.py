"""The pages: login, the staff board, the shift handover, a resident's page, the family page and the
regulator's view. Each is a static HTML file of ``pages/`` whose script (under ``/static/app``) reads the API
with the user's session; the page itself holds no data, so it needs no login to be fetched. Texts come from
``i18n/<lang>.json`` (zh-CN by default, English). The Content-Security-Policy lets a page load only the
platform's own files (and the map tiles, when configured, on the regulator's map).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from eldercare.platform.map.page import tile_origin
from eldercare.platform.map.state import state_of

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"
I18N = HERE / "i18n"
LANGUAGES = ("zh-CN", "en")

router = APIRouter(tags=["pages"], include_in_schema=False)
PageId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


@cache
def _page(name: str) -> str:
    return (PAGES / f"{name}.html").read_text(encoding="utf-8")


@cache
def texts(lang: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
    return loaded


def policy(tiles: str = "") -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",  # uPlot and Leaflet size and place their parts with style attributes
            f"img-src 'self' data: {tiles}".rstrip(),
            "connect-src 'self'",
            "media-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def _html(name: str, tiles: str = "") -> HTMLResponse:
    return HTMLResponse(
        _page(name),
        headers={
            "Content-Security-Policy": policy(tiles),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page() -> HTMLResponse:
    return _html("login")


@router.get("/board", response_class=HTMLResponse)
async def board_page() -> HTMLResponse:
    return _html("board")


@router.get("/handover", response_class=HTMLResponse)
async def handover_page() -> HTMLResponse:
    return _html("handover")


@router.get("/resident/{resident_id}", response_class=HTMLResponse)
async def resident_page(resident_id: PageId) -> HTMLResponse:  # the script reads the id from the URL
    return _html("resident")


@router.get("/family", response_class=HTMLResponse)
async def family_page() -> HTMLResponse:
    return _html("family")


@router.get("/regulator", response_class=HTMLResponse)
async def regulator_page(request: Request) -> HTMLResponse:
    return _html("regulator", tile_origin(state_of(request).settings.map_tile_url))


@router.get("/regulator/institutions/{institution_id}", response_class=HTMLResponse)
async def institution_page(institution_id: PageId) -> HTMLResponse:  # the script reads the id from the URL
    return _html("institution")


@router.get("/i18n/{lang}.json")
async def i18n(lang: Literal["zh-CN", "en"]) -> JSONResponse:
    return JSONResponse(texts(lang), headers={"Cache-Control": "no-cache"})
