"""Upload the dashboards (and, if asked, the data source) to a Grafana through its HTTP API (grafana-client).

Idempotent: the folder is created when missing, the data source created or updated by its uid, each
dashboard saved with ``overwrite`` under its fixed uid, so a second push changes nothing but versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from grafana_client.client import GrafanaClientError, GrafanaException

from eldercare.dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID

FOLDER_UID = "eldercare"
FOLDER_TITLE = "eldercare"


class DashboardPushError(RuntimeError):
    def __init__(self, what: str, status: int | None, reason: str) -> None:
        super().__init__(f"{what}: {status or 'no answer'} {reason}")
        self.what, self.status, self.reason = what, status, reason


class _Folders(Protocol):
    def get_folder(self, uid: str) -> Any: ...  # noqa: ANN401 - grafana-client is untyped JSON
    def create_folder(self, title: str, uid: str | None = None) -> Any: ...  # noqa: ANN401


class _Dashboards(Protocol):
    def update_dashboard(self, dashboard: dict[str, Any]) -> Any: ...  # noqa: ANN401


class _Datasources(Protocol):
    def get_datasource_by_uid(self, datasource_uid: str) -> Any: ...  # noqa: ANN401
    def create_datasource(self, datasource: dict[str, Any]) -> Any: ...  # noqa: ANN401
    def update_datasource_by_uid(self, datasource_uid: str, datasource: dict[str, Any]) -> Any: ...  # noqa: ANN401


class Grafana(Protocol):
    """The part of ``grafana_client.GrafanaApi`` this module uses."""

    folder: _Folders
    dashboard: _Dashboards
    datasource: _Datasources


@dataclass(frozen=True, slots=True)
class Pushed:
    folder_created: bool
    datasource: str | None  # "created", "updated" or None (not asked)
    dashboards: list[str]  # uids


def datasource_model(
    database_url: str, *, name: str = "eldercare TimescaleDB", sslmode: str = "require"
) -> dict[str, Any]:
    """The data source Grafana's API takes, from a libpq URL (use a read-only role)."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname or not parts.path.strip("/"):
        raise DashboardPushError("datasource", None, "expected postgresql://user:password@host:port/database")
    return {
        "uid": DATASOURCE_UID,
        "name": name,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": f"{parts.hostname}:{parts.port or 5432}",
        "user": unquote(parts.username or ""),
        "isDefault": True,
        "jsonData": {
            "database": parts.path.strip("/"),
            "sslmode": sslmode,
            "postgresVersion": 1500,
            "timescaledb": True,
        },
        "secureJsonData": {"password": unquote(parts.password or "")},
    }


def _status(exc: GrafanaException) -> int | None:
    code = exc.status_code
    return int(code) if isinstance(code, int) else None


def push(
    api: Grafana,
    *,
    dashboards: dict[str, dict[str, Any]],
    datasource: dict[str, Any] | None = None,
    message: str = "eldercare dashboards push",
) -> Pushed:
    created = False
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise DashboardPushError("folder", _status(exc), exc.message) from exc
        try:
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        except GrafanaException as inner:
            raise DashboardPushError("folder", _status(inner), inner.message) from inner
        created = True
    except GrafanaException as exc:
        raise DashboardPushError("folder", _status(exc), exc.message) from exc
    ds_result = None
    if datasource is not None:
        ds_result = _push_datasource(api, datasource)
    pushed = []
    for uid, model in dashboards.items():
        body = {"dashboard": {**model, "id": None}, "folderUid": FOLDER_UID, "overwrite": True, "message": message}
        try:
            api.dashboard.update_dashboard(body)
        except GrafanaException as exc:
            raise DashboardPushError(f"dashboard {uid}", _status(exc), exc.message) from exc
        pushed.append(uid)
    return Pushed(created, ds_result, pushed)


def _push_datasource(api: Grafana, model: dict[str, Any]) -> str:
    try:
        api.datasource.get_datasource_by_uid(model["uid"])
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise DashboardPushError("datasource", _status(exc), exc.message) from exc
        try:
            api.datasource.create_datasource(model)
        except GrafanaException as inner:
            raise DashboardPushError("datasource", _status(inner), inner.message) from inner
        return "created"
    except GrafanaException as exc:
        raise DashboardPushError("datasource", _status(exc), exc.message) from exc
    try:
        api.datasource.update_datasource_by_uid(model["uid"], model)
    except GrafanaException as exc:
        raise DashboardPushError("datasource", _status(exc), exc.message) from exc
    return "updated"
