"""docker-compose.yml is a valid Compose file, and refuses to start without its secrets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from eldercare.platform.stack.postgres import TUNING

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "ELDERCARE_DB_PASSWORD": "x" * 16,
    "ELDERCARE_DB_ADMIN_PASSWORD": "v" * 16,
    "ELDERCARE_MQTT_PASSWORD": "y" * 16,
    "ELDERCARE_DATA_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "GRAFANA_ADMIN_PASSWORD": "z" * 16,
    "GRAFANA_DB_PASSWORD": "w" * 16,
    "ELDERCARE_SMS_URL": "https://sms.example.cn/v1/send",
}


def _config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe is not None, "docker-compose (Debian package docker-compose) is required; make setup installs it"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    return subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config", *args],
        env={**clean, **env},
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_compose_file_is_valid() -> None:
    result = _config(SECRETS, "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "timescaledb",
        "mosquitto",
        "migrate",
        "broker-setup",
        "ingest-1",
        "ingest-2",
        "platform",
        "grafana",
        "simulated-home",
    }


def test_compose_refuses_to_run_without_secrets() -> None:
    result = _config({}, "-q")
    assert result.returncode != 0
    assert "ELDERCARE_DB_PASSWORD" in result.stderr


def test_no_service_logs_in_as_the_database_superuser() -> None:
    """The services' login owns the database and is no superuser (deploy/timescaledb/initdb/owner.sql.in); it was
    the container's POSTGRES_USER, so an injected statement owned the whole cluster."""
    result = _config(SECRETS)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    database = services["timescaledb"]["environment"]
    urls = {
        name: urlsplit(service["environment"]["ELDERCARE_DATABASE_URL"])
        for name, service in services.items()
        if "ELDERCARE_DATABASE_URL" in service.get("environment", {})
    }
    assert {"migrate", "platform", "ingest-1", "ingest-2", "broker-setup", "simulated-home"} <= set(urls)
    assert database["POSTGRES_USER"] != "eldercare"
    for name, url in urls.items():
        assert url.username == "eldercare" != database["POSTGRES_USER"], name
        assert url.password == database["ELDERCARE_DB_PASSWORD"] != database["POSTGRES_PASSWORD"], name
        assert url.path == f"/{database['POSTGRES_DB']}", name
    assert "timescaledb.telemetry_level=off" in services["timescaledb"]["command"]  # the image's scripts are hidden
    healthcheck = services["timescaledb"]["healthcheck"]["test"]
    assert "-h 127.0.0.1" in " ".join(healthcheck), "not ready while the init scripts run on the socket"
    mounts = [volume.split(":")[:2] for volume in services["timescaledb"]["volumes"] if isinstance(volume, str)]
    assert [str(REPO / "deploy/timescaledb"), "/eldercare/timescaledb"] in mounts  # upgrade-owner.sh is there


def test_compose_refuses_to_run_without_the_database_superusers_password() -> None:
    result = _config({k: v for k, v in SECRETS.items() if k != "ELDERCARE_DB_ADMIN_PASSWORD"}, "-q")
    assert result.returncode != 0
    assert "ELDERCARE_DB_ADMIN_PASSWORD" in result.stderr


def test_the_database_server_runs_as_the_tests_run_it() -> None:
    """TimescaleDB's Apache-licensed features only, as development's build has them (the image would run the
    Timescale-licensed edition), and the connection rules of deploy/timescaledb/pg_hba.conf, which the tests of
    tests/deploy/ start their server with (the superuser on the container's socket only)."""
    result = _config(SECRETS)
    assert result.returncode == 0, result.stderr
    timescaledb: dict[str, Any] = yaml.safe_load(result.stdout)["services"]["timescaledb"]
    command: list[str] = timescaledb["command"]
    assert command[0] == "postgres" and set(command[1::2]) == {"-c"} and len(command) % 2 == 1, command
    values = {name: value for name, _, value in (assignment.partition("=") for assignment in command[2::2])}
    assert values["timescaledb.license"] == "apache"
    assert values["hba_file"] == "/eldercare/timescaledb/pg_hba.conf"
    assert values["jit"] == TUNING["jit"] == "off"  # no plan compiled while an alarm waits (platform/stack/postgres.py)
    mounts = [volume.split(":")[:2] for volume in timescaledb["volumes"] if isinstance(volume, str)]
    assert [str(REPO / "deploy/timescaledb"), "/eldercare/timescaledb"] in mounts
    assert (REPO / "deploy/timescaledb/pg_hba.conf").is_file()
