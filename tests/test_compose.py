"""docker-compose.yml is a valid Compose file, and refuses to start without its secrets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "ELDERCARE_DB_PASSWORD": "x" * 16,
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
