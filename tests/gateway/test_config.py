"""The configuration: the documented example is valid, and every mistake is an error that names its key."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.gateway.support import toml

from eldercare.gateway import config as gateway_config
from eldercare.gateway import mapping_files
from eldercare.gateway.config import DeviceClass, HttpSource, MqttSource
from eldercare.gateway.errors import ConfigError
from eldercare.gateway.service import check_vendors

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
EXE = Path(sys.executable).with_name("eldercare")


def documented_example() -> dict[str, Any]:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.S)
    example = next(b for b in blocks if b.startswith("institution ="))
    return tomllib.loads(example)


def ca_pem() -> bytes:
    """A real (self-signed) CA certificate, as the platform hands out."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_bytes(ca_pem())
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    (tmp_path / "gateway.secret").write_text("s3cret\n")
    return tmp_path


def minimal() -> dict[str, Any]:
    return {
        "institution": "524205024154895658",
        "gateway": "GW-0001",
        "uplink": {"host": "broker", "ca_file": "ca.pem", "password": "x"},
        "storage": {"path": "store.db"},
        "devices": {"auto_discover": True},
    }


def problems(document: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        gateway_config.parse(document, path=folder / "gw.toml")
    return caught.value.problems


def test_the_documented_example_is_valid(folder: Path) -> None:
    document = documented_example()
    document["storage"]["path"] = str(folder / "store.db")
    config = gateway_config.parse(document, path=folder / "gw.toml")
    assert config.uplink.ca_file == folder / "ca.pem"  # relative to the configuration file
    assert config.uplink.secret() == "s3cret"
    assert [type(s) for s in config.sources] == [MqttSource, HttpSource]
    assert config.supervision.for_class(DeviceClass.BUTTON).heartbeat_s == 300
    assert config.supervision.for_class(DeviceClass.BED_SENSOR).heartbeat_s == 60
    assert config.local.command == ["/usr/local/bin/nurse-call", "--ring"]
    check_vendors(config, mapping_files.load_all(), path=folder / "gw.toml")


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (lambda d: d["uplink"].update(prot=1), "uplink.prot", "Extra inputs are not permitted"),
        (
            lambda d: d.update(sources=[{"kind": "http", "name": "lan", "vendors": ["acme"], "port": 70000}]),
            "sources[0].port",
            "less than or equal to 65535",
        ),
        (
            lambda d: d.update(sources=[{"kind": "mqtt", "name": "home", "host": "h"}]),
            "sources[0].subscriptions",
            "Field required",
        ),
        (
            lambda d: d.update(sources=[{"kind": "serial", "name": "x"}]),
            "sources[0]",
            "does not match any of the expected tags",
        ),
        (
            lambda d: d["uplink"].update(password_file="gateway.secret"),
            "uplink",
            "exactly one of password and password_file",
        ),
        (lambda d: d.update(institution="524205024154895659"), "institution", "check"),
        (lambda d: d.update(gateway="GW 1"), "gateway", "should match pattern"),
        (
            lambda d: d.update(devices={"known": [{"code": "BS-1", "class": "toaster"}]}),
            "devices.known[0].class",
            "Input should be",
        ),
        (
            lambda d: d.update(devices={"known": [{"code": "BS-1", "class": "button"}] * 2}),
            "devices.known",
            "listed twice",
        ),
        (lambda d: d.update(devices={}), "(top level)", "devices.known"),
        (lambda d: d["storage"].update(max_bytes=10), "storage.max_bytes", "greater than or equal"),
        (
            lambda d: d["storage"].update(path="unmounted/store.db", memory_bytes=0),
            "storage.path",
            "folder",
        ),
        (lambda d: d["uplink"].update(ca_file="nowhere.pem"), "uplink.ca_file", "does not exist"),
        (lambda d: d["uplink"].update(ca_file="not-a-ca.pem"), "uplink.ca_file", "not a CA certificate file"),
        (lambda d: d.update(fall={"model": "none.npz"}), "fall.model", "does not exist"),
        (lambda d: d.update(fall={"forget_after_s": 10}), "fall.forget_after_s", "greater than or equal to 60"),
        (lambda d: d.update(local={"command_on": "sometimes"}), "local.command_on", "Input should be"),
        (
            lambda d: d.update(supervision={"classes": {"button": {"heartbeat_s": 0}}}),
            "supervision.classes.button.heartbeat_s",
            "greater than 0",
        ),
    ],
)
def test_each_mistake_names_its_key(folder: Path, change: Any, key: str, reason: str) -> None:
    document = minimal()
    change(document)
    found = problems(document, folder)
    assert any(k == key and reason in r for k, r in found), found


def test_a_storage_folder_not_there_yet_is_no_reason_not_to_start(folder: Path) -> None:
    """A disk not mounted: the store goes on in memory and moves to the folder once it is there (store.py)."""
    document = minimal()
    document["storage"].update(path="unmounted/store.db")
    config = gateway_config.parse(document, path=folder / "gw.toml")
    assert config.storage.path == folder / "unmounted" / "store.db"


def test_a_source_naming_an_unknown_vendor_is_refused(folder: Path) -> None:
    document = minimal() | {
        "sources": [
            {
                "kind": "mqtt",
                "name": "home",
                "host": "h",
                "subscriptions": [{"topic": "x/#", "vendor": "acme"}, {"topic": "y/#", "vendor": "nobody"}],
            }
        ]
    }
    config = gateway_config.parse(document, path=folder / "gw.toml")
    with pytest.raises(ConfigError) as caught:
        check_vendors(config, mapping_files.load_all(), path=folder / "gw.toml")
    assert caught.value.problems == [
        ("sources[0].subscriptions[1].vendor", "no mapping for vendor 'nobody' (known: acme, contract, lianke)")
    ]


def test_the_command_line_reports_problems_and_exits_2(folder: Path) -> None:
    document = minimal()
    document["uplink"]["prot"] = 1
    document["uplink"]["port"] = 0
    (folder / "gw.toml").write_text(toml(document))
    done = subprocess.run([EXE, "gateway", "--config", folder / "gw.toml"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "uplink.prot: Extra inputs are not permitted" in done.stderr
    assert "uplink.port: Input should be greater than or equal to 1" in done.stderr
    (folder / "gw.toml").write_text("institution = \n")
    done = subprocess.run([EXE, "gateway", "--config", folder / "gw.toml"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "(syntax)" in done.stderr
    done = subprocess.run(
        [EXE, "gateway", "--config", folder / "missing.toml"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, "no such file" in done.stderr) == (2, True)
    (folder / "gw.toml").write_text(toml(minimal()))
    done = subprocess.run(
        [EXE, "gateway", "--config", folder / "gw.toml", "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
