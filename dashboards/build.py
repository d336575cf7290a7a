"""Build every dashboard to Grafana's JSON, and write them where Grafana's provisioning reads them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from eldercare.dashboards import home, operations, regulator

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "generated"  # mounted into Grafana by docker-compose.yml
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    operations.UID: operations.dashboard,
    home.UID: home.dashboard,
    regulator.UID: regulator.dashboard,
}


def as_json(board: Dashboard) -> dict[str, Any]:
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def build_all() -> dict[str, dict[str, Any]]:
    """uid -> the dashboard's JSON model."""
    return {uid: as_json(make()) for uid, make in DASHBOARDS.items()}


def text(model: dict[str, Any]) -> str:
    return json.dumps(model, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write(out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, model in build_all().items():
        path = out / f"{uid}.json"
        path.write_text(text(model), encoding="utf-8")
        written.append(path)
    return written
