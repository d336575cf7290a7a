"""The production topology of docker-compose.yml, as `docker-compose config` resolves it. (The role Grafana logs in
with is tried against the test cluster in test_grafana_reader.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.test_compose import REPO, SECRETS, _config


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
