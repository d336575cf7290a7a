"""Static files: the platform's own (``platform/web/static``) and the front-end libraries installed from
the npm registry by ``make setup`` (``platform/web/node_modules``; ``ELDERCARE_WEB_VENDOR_DIR`` overrides
it, e.g. in a container image). No page loads anything from outside the platform."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent

# Only these files of the installed packages are served (not whole node_modules).
VENDOR = {
    "leaflet": "leaflet/dist",
    "uplot": "uplot/dist",
}


def vendor_dir() -> Path:
    return Path(os.environ.get("ELDERCARE_WEB_VENDOR_DIR", str(HERE / "node_modules")))


def mount(app: FastAPI) -> None:
    app.mount("/static/app", StaticFiles(directory=HERE / "static", check_dir=True), name="static-app")
    base = vendor_dir()
    for name, sub in VENDOR.items():
        # check_dir=False: the API still starts where the libraries are not installed (pages then say so).
        app.mount(f"/static/vendor/{name}", StaticFiles(directory=base / sub, check_dir=False), name=f"vendor-{name}")
