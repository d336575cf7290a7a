"""``GET /map``: the facility map page (platform/web/pages/map.html), zh-CN by default, ``?lang=en``.

The page loads only the platform's own files (Leaflet from /static/vendor/leaflet, the page's script
from /static/app) and, when a tile source is configured, its tiles; the Content-Security-Policy says so
to the browser, which then refuses anything else.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from eldercare.platform.map.state import state_of

router = APIRouter(tags=["pages"])


@cache
def _html() -> str:
    return (resources.files("eldercare.platform.web") / "pages" / "map.html").read_text(encoding="utf-8")


def tile_origin(template: str) -> str:
    """The origin a tile template loads from, for the CSP (``{s}`` subdomains become a wildcard)."""
    if not template:
        return ""
    parts = urlsplit(template.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def policy(tile_url: str) -> str:
    tiles = tile_origin(tile_url)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",  # Leaflet positions its panes with style attributes
            f"img-src 'self' data: {tiles}".rstrip(),
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
async def map_page(request: Request) -> HTMLResponse:
    settings = state_of(request).settings
    return HTMLResponse(
        _html(),
        headers={
            "Content-Security-Policy": policy(settings.map_tile_url),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )
