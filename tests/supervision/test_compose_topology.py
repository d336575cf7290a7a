"""The production topology of docker-compose.yml, as `docker-compose config` resolves it, and the read-only
role Grafana logs in with, tried against the test cluster."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from tests.registry.support import create_database, drop_database
from tests.test_compose import REPO, SECRETS, _config

from eldercare.platform.stack.model import StackInfo


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = _config(SECRETS)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def _split(volume: str | dict[str, str]) -> tuple[str, str]:
    """(source, target) of a mount as `docker-compose config` writes it."""
    if isinstance(volume, dict):
        return volume["source"], volume["target"]
    source, target = volume.split(":")[:2]
    return source, target


def _bind(volume: str | dict[str, str]) -> tuple[str, str]:
    """(source relative to the repository, target) of a bind mount; ("", target) for a named volume."""
    source, target = _split(volume)
    if not source.startswith("/"):
        return "", target
    return Path(source).relative_to(REPO).as_posix(), target


def _named(service: dict[str, Any]) -> dict[str, str]:
    """name -> target of a service's named volumes."""
    return {source: target for source, target in map(_split, service.get("volumes", [])) if not source.startswith("/")}


def test_ingest_runs_twice_in_one_shared_subscription_group(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    one, two = services["ingest-1"], services["ingest-2"]
    assert one["command"] == two["command"] == ["eldercare", "ingest"]
    assert one["environment"]["ELDERCARE_INGEST_GROUP"] == two["environment"]["ELDERCARE_INGEST_GROUP"] == "ingest"
    assert {one["environment"]["ELDERCARE_INGEST_NAME"], two["environment"]["ELDERCARE_INGEST_NAME"]} == {
        "ingest-1",
        "ingest-2",
    }
    for service in (one, two, services["platform"]):
        assert service["environment"]["ELDERCARE_MQTT_TLS"] == "true"
        assert service["environment"]["ELDERCARE_MQTT_PORT"] == "8883"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_broker_is_tls_only_with_passwords_and_acl(resolved: dict[str, Any]) -> None:
    broker = resolved["services"]["mosquitto"]
    assert [p["target"] if isinstance(p, dict) else p for p in broker["ports"]] in ([8883], ["8883:8883"])
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    settings = [line.split(None, 1) for line in conf if line.strip() and not line.startswith("#")]
    as_dict = {s[0]: s[1] for s in settings if len(s) == 2}
    assert as_dict["allow_anonymous"] == "false"
    assert as_dict["acl_file"] and as_dict["password_file"]
    listeners = [v for k, v in settings if k == "listener"]
    assert listeners == ["8883"], "one listener, the TLS one"
    assert {"cafile", "certfile", "keyfile"} <= set(as_dict)


def test_broker_logins_go_from_the_platform_through_the_shared_volume_to_the_broker(resolved: dict[str, Any]) -> None:
    """Production had no path for logins: the platform wrote them where the broker never looked."""
    services = resolved["services"]
    sharing = {name for name, service in services.items() if "broker-auth" in _named(service)}
    assert sharing == {"mosquitto", "broker-setup", "platform", "simulated-home"}
    for name in sharing:  # each finds the folder where the volume is
        assert services[name]["environment"]["ELDERCARE_BROKER_AUTH_DIR"] == _named(services[name])["broker-auth"]

    broker = services["mosquitto"]
    env = broker["environment"]
    binds = dict(_bind(v) for v in broker["volumes"] if _bind(v)[0])
    assert broker["entrypoint"] == ["/bin/sh", binds["deploy/mosquitto/entrypoint.sh"]]
    assert broker["command"] == [binds["deploy/mosquitto/mosquitto.conf"]]
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(rf"(?m)^password_file {env['ELDERCARE_BROKER_LIVE_DIR']}/passwd$", conf)
    assert re.search(rf"(?m)^acl_file {env['ELDERCARE_BROKER_LIVE_DIR']}/acl$", conf)
    assert re.search(rf"(?m)^persistence_location {env['ELDERCARE_BROKER_DATA_DIR']}/?$", conf)
    assert _named(broker)["broker-data"] == env["ELDERCARE_BROKER_DATA_DIR"]
    mounted = {secret["source"] if isinstance(secret, dict) else secret for secret in broker["secrets"]}
    tls = [Path(path) for path in env["ELDERCARE_BROKER_TLS_FILES"].split()]
    for setting, path in zip(("cafile", "certfile", "keyfile"), tls, strict=True):  # copied for mosquitto's user
        assert path.parent == Path("/run/secrets") and path.name in mounted
        assert re.search(rf"(?m)^{setting} {env['ELDERCARE_BROKER_LIVE_DIR']}/{path.name}$", conf), setting
    assert broker["healthcheck"]["test"] == ["CMD", "test", "-e", f"{env['ELDERCARE_BROKER_RUN_DIR']}/ready"]
    uid = re.search(r"useradd --system --uid (\d+) eldercare", (REPO / "Dockerfile").read_text())
    assert uid is not None and env["ELDERCARE_PLATFORM_UID"] == uid[1]

    setup = services["broker-setup"]
    assert setup["command"] == ["eldercare", "broker", "setup"]
    assert setup["environment"]["ELDERCARE_MQTT_USERNAME"] == "platform"
    assert setup["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    for name in ("ingest-1", "ingest-2", "platform", "simulated-home"):  # none starts before its login exists
        assert services[name]["depends_on"]["broker-setup"]["condition"] == "service_completed_successfully"


def test_grafana_is_provisioned_with_the_dashboards(resolved: dict[str, Any]) -> None:
    grafana = resolved["services"]["grafana"]
    mounts = dict(_bind(v) for v in grafana["volumes"] if _bind(v)[0])
    assert mounts == {
        "dashboards/provisioning/datasources": "/etc/grafana/provisioning/datasources",
        "dashboards/provisioning/dashboards": "/etc/grafana/provisioning/dashboards",
        "dashboards/generated": "/var/lib/grafana/dashboards/eldercare",
    }
    for source in mounts:
        assert (REPO / source).is_dir() and any((REPO / source).iterdir()), source
    assert grafana["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GRAFANA_DB_PASSWORD" in grafana["environment"]
    timescaledb = resolved["services"]["timescaledb"]
    assert ("deploy/timescaledb/initdb", "/docker-entrypoint-initdb.d") in [_bind(v) for v in timescaledb["volumes"]]


def test_simulated_home_is_a_profile(resolved: dict[str, Any]) -> None:
    home = resolved["services"]["simulated-home"]
    assert home["profiles"] == ["simulation"]
    assert home["command"][:3] == ["eldercare", "simulate", "load"]


def test_grafana_secrets_are_required() -> None:
    result = _config({k: v for k, v in SECRETS.items() if not k.startswith("GRAFANA_")}, "-q")
    assert result.returncode != 0
    assert "GRAFANA_" in result.stderr


def test_grafana_reader_reads_and_cannot_write(stack: StackInfo) -> None:
    """The init script's SQL, run as the container would (psql with its variables) on a fresh database."""
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    assert Path(psql).exists(), "psql (postgresql-client) is needed"
    db = create_database(stack, "reader")
    reader, password = f"grafana_reader_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    try:
        subprocess.run(
            [psql, "-v", "ON_ERROR_STOP=1", "-v", f"reader={reader}", "-v", f"password={password}", "-v",
             "owner=eldercare", "-q", "-d", db.admin_url, "-f",
             str(REPO / "deploy/timescaledb/initdb/grafana_reader.sql.in")],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        with psycopg.connect(db.url, autocommit=True) as owner:
            owner.execute("CREATE TABLE made_later (x int)")  # created by the application role after the init
        reader_url = f"postgresql://{reader}:{password}@{db.url.split('@', 1)[1]}"
        with psycopg.connect(reader_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM supervision_figures(ARRAY[]::bigint[], '2026-10-01', '2026-10-30')"
            ).fetchone()
            assert row == (1,)
            assert conn.execute("SELECT count(*) FROM made_later").fetchone() == (0,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("INSERT INTO made_later VALUES (1)")
    finally:
        drop_database(stack, db)
        with psycopg.connect(stack.admin_database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))
