"""`eldercare dashboards push` against a local stand-in for Grafana's HTTP API.

Grafana itself cannot run here (no network to fetch it, no Debian package): it is the outside world, so a
small HTTP server plays its API — it keeps folders, data sources and dashboards, answers 404 for what it
lacks as Grafana does, and records every call for the assertions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from eldercare import cli
from eldercare.dashboards import build
from eldercare.dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID

TOKEN = "glsa_test_token_123"


@dataclass
class FakeGrafana:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    fail_dashboards: bool = False


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length", "0"))
            return json.loads(self.rfile.read(length)) if length else None

        def _route(self, method: str) -> None:
            state.calls.append((method, self.path))
            state.auth.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"message": "Unauthorized"})
            body = self._body()
            parts = self.path.split("?")[0].strip("/").split("/")
            match method, parts:
                case "GET", ["api", "folders", uid]:
                    found = state.folders.get(uid)
                    return self._reply(200, found) if found else self._reply(404, {"message": "folder not found"})
                case "POST", ["api", "folders"]:
                    state.folders[body["uid"]] = body
                    return self._reply(200, {**body, "id": len(state.folders)})
                case "GET", ["api", "datasources", "uid", uid]:
                    ds = state.datasources.get(uid)
                    return self._reply(200, ds) if ds else self._reply(404, {"message": "Data source not found"})
                case "POST", ["api", "datasources"]:
                    state.datasources[body["uid"]] = body
                    return self._reply(200, {"message": "Datasource added", "id": 1})
                case "PUT", ["api", "datasources", "uid", uid] if uid in state.datasources:
                    state.datasources[uid] = body
                    return self._reply(200, {"message": "Datasource updated"})
                case "POST", ["api", "dashboards", "db"]:
                    if state.fail_dashboards:
                        return self._reply(500, {"message": "database is locked"})
                    if body["folderUid"] not in state.folders:
                        return self._reply(400, {"message": "folder not found"})
                    state.dashboards[body["dashboard"]["uid"]] = body
                    return self._reply(200, {"status": "success", "uid": body["dashboard"]["uid"]})
            return self._reply(404, {"message": "Not found"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, name="fake-grafana", daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_creates_then_updates(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    source = "postgresql://grafana_reader:s3cret%21@db.example:5433/eldercare"
    assert cli.main(["dashboards", "push", "--url", url, "--datasource-url", source]) == 0
    assert state.calls == [
        ("GET", "/api/folders/eldercare"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(build.DASHBOARDS),
    ]
    assert set(state.auth) == {f"Bearer {TOKEN}"}
    ds = state.datasources[DATASOURCE_UID]
    assert (ds["type"], ds["url"], ds["user"]) == (DATASOURCE_TYPE, "db.example:5433", "grafana_reader")
    assert ds["jsonData"]["database"] == "eldercare" and ds["secureJsonData"] == {"password": "s3cret!"}
    built = build.build_all()
    assert set(state.dashboards) == set(built)
    for uid, body in state.dashboards.items():
        assert body["overwrite"] is True and body["folderUid"] == "eldercare"
        assert body["dashboard"]["id"] is None
        assert body["dashboard"]["panels"] == built[uid]["panels"]
    assert "created folder eldercare" in capsys.readouterr().out

    state.calls.clear()
    assert cli.main(["dashboards", "push", "--url", url, "--datasource-url", source]) == 0
    assert state.calls[:3] == [
        ("GET", "/api/folders/eldercare"),
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
    ]


def test_push_reports_failures(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong-token")
    assert cli.main(["dashboards", "push", "--url", url]) == 1
    assert "folder: 401" in capsys.readouterr().err
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    state.fail_dashboards = True
    assert cli.main(["dashboards", "push", "--url", url]) == 1
    assert f"dashboard {next(iter(build.DASHBOARDS))}: 500" in capsys.readouterr().err
    monkeypatch.delenv("GRAFANA_TOKEN")
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    assert cli.main(["dashboards", "push"]) == 2


def test_bad_datasource_url_is_refused(grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _, url = grafana
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert cli.main(["dashboards", "push", "--url", url, "--datasource-url", "mysql://x/y"]) == 1
    assert "expected postgresql://" in capsys.readouterr().err


def test_provisioning_names_the_same_data_source() -> None:
    import yaml

    provisioned = yaml.safe_load((build.HERE / "provisioning/datasources/timescaledb.yaml").read_text())
    (ds,) = provisioned["datasources"]
    assert (ds["uid"], ds["type"]) == (DATASOURCE_UID, DATASOURCE_TYPE)
    providers = yaml.safe_load((build.HERE / "provisioning/dashboards/eldercare.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/eldercare"
