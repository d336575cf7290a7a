"""The gateway's configuration: one TOML file, validated strictly when the gateway starts.

Unknown keys are errors (a misspelt key must not silently fall back to a default), and every error names
its key, e.g. ``sources[1].port: Input should be less than or equal to 65535``. See ``docs/gateway.md``
for an annotated example.
"""

from __future__ import annotations

import ssl
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from eldercare.devices import codes, topics
from eldercare.gateway.errors import ConfigError

DEVICE_CODE: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MIB: Final = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceClass(StrEnum):
    """The platform's device kinds (``device_kind`` in the database)."""

    BED_SENSOR = "bed_sensor"
    BUTTON = "button"
    FALL_RADAR = "fall_radar"
    WEARABLE = "wearable"
    WRISTBAND = "wristband"
    SMOKE = "smoke"
    GAS = "gas"
    WATER = "water"


# Expected heartbeat per class (seconds): how often a healthy device is heard from at the least.
DEFAULT_HEARTBEAT_S: Final = {
    DeviceClass.BED_SENSOR: 60.0,
    DeviceClass.BUTTON: 300.0,
    DeviceClass.FALL_RADAR: 60.0,
    DeviceClass.WEARABLE: 60.0,
    DeviceClass.WRISTBAND: 120.0,
    DeviceClass.SMOKE: 600.0,
    DeviceClass.GAS: 600.0,
    DeviceClass.WATER: 600.0,
}


class UplinkConfig(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(8883, ge=1, le=65535)
    ca_file: Path
    username: str | None = None  # defaults to the gateway id
    password: SecretStr | None = None
    password_file: Path | None = None
    client_id: str | None = None  # defaults to the gateway id
    keepalive_s: int = Field(30, ge=5, le=600)
    heartbeat_s: float = Field(15.0, gt=0, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(15.0, gt=0, le=120)
    telemetry_frame_msgs: int = Field(500, ge=1, le=10_000)
    telemetry_frame_bytes: int = Field(128 * 1024, ge=4096, le=256 * 1024)
    telemetry_linger_ms: int = Field(1000, ge=0, le=60_000)
    telemetry_window: int = Field(4, ge=1, le=100)
    alarm_frame_msgs: int = Field(50, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_password(self) -> UplinkConfig:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of password and password_file")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self

    def secret(self) -> str:
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        return self.password_file.read_text().strip()


class StorageConfig(_Strict):
    path: Path
    max_bytes: int = Field(256 * MIB, ge=1 * MIB, description="bound of the store on disk, bytes")
    memory_after_s: float = Field(
        10.0, gt=0, le=3600, description="a disk failing this long: the store goes on in memory (see memory_bytes)"
    )
    memory_bytes: int = Field(
        64 * MIB, ge=0, description="bound of the store in memory while its disk fails, bytes; 0: never in memory"
    )


class Subscription(_Strict):
    topic: str = Field(min_length=1, max_length=256)
    vendor: str = Field(min_length=1)


class MqttSource(_Strict):
    kind: Literal["mqtt"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None  # TLS when given
    client_id: str | None = None  # defaults to "<gateway>-<name>"
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    subscriptions: list[Subscription] = Field(min_length=1)


class HttpSource(_Strict):
    kind: Literal["http"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    host: str = "0.0.0.0"  # noqa: S104 - devices on the home's network post here
    port: int = Field(8081, ge=1, le=65535)
    vendors: list[str] = Field(min_length=1)
    max_body_bytes: int = Field(1 * MIB, ge=1024, le=64 * MIB)


Source = Annotated[MqttSource | HttpSource, Field(discriminator="kind")]


class KnownDevice(_Strict):
    code: str = Field(pattern=DEVICE_CODE)
    device_class: DeviceClass = Field(alias="class")


class DevicesConfig(_Strict):
    auto_discover: bool = False
    known: list[KnownDevice] = []

    @field_validator("known")
    @classmethod
    def _unique(cls, value: list[KnownDevice]) -> list[KnownDevice]:
        seen: set[str] = set()
        for device in value:
            if device.code in seen:
                raise ValueError(f"device {device.code!r} is listed twice")
            seen.add(device.code)
        return value


class ClassSupervision(_Strict):
    heartbeat_s: float = Field(gt=0, le=7 * 24 * 3600)
    low_battery_pct: int = Field(20, ge=0, le=100)


class SupervisionConfig(_Strict):
    margin_s: float = Field(30.0, ge=0, le=3600, description="after 2 missed heartbeats, wait this much more")
    battery_hysteresis_pct: int = Field(5, ge=0, le=50)
    classes: dict[DeviceClass, ClassSupervision] = {}

    def for_class(self, device_class: DeviceClass) -> ClassSupervision:
        return self.classes.get(device_class) or ClassSupervision(heartbeat_s=DEFAULT_HEARTBEAT_S[device_class])


class LocalConfig(_Strict):
    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - the nurse station is on the home's network
    port: int = Field(8080, ge=1, le=65535)
    keep_alarms: int = Field(200, ge=1, le=10_000)
    command: list[str] = []  # run for each alarm, the alarm as JSON on stdin
    command_on: Literal["always", "uplink_down"] = "always"
    command_timeout_s: float = Field(10.0, gt=0, le=600)


class FallConfig(_Strict):
    enabled: bool = True
    model: Path | None = None  # the shipped model when not given
    forward_samples: bool = True  # also send the raw accelerometer chunks upstream (telemetry)
    suppress_s: float = Field(10.0, ge=0, le=600, description="one alarm per fall: quiet time after an alarm")
    forget_after_s: float = Field(
        86_400.0,
        ge=60,
        le=365 * 86_400,
        description="forget a wearable's detector (in memory and in the store) after this long without its samples",
    )


class MappingsConfig(_Strict):
    dirs: list[Path] = []  # more vendor mapping files (*.toml) besides the shipped ones


class GatewayConfig(_Strict):
    institution: str
    gateway: str = Field(pattern=rf"^{topics.GATEWAY_ID_PATTERN}$")
    software: str = Field("eldercare-gateway/0.1", max_length=64)
    uplink: UplinkConfig
    storage: StorageConfig
    sources: list[Source] = []
    devices: DevicesConfig = DevicesConfig()
    supervision: SupervisionConfig = SupervisionConfig()
    local: LocalConfig = LocalConfig()
    fall: FallConfig = FallConfig()
    mappings: MappingsConfig = MappingsConfig()

    @field_validator("institution")
    @classmethod
    def _uscc(cls, value: str) -> str:
        return codes.validate_uscc(value)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError("two sources have the same name")
        if not self.devices.auto_discover and not self.devices.known:
            raise ValueError("devices: list the devices in devices.known or set devices.auto_discover = true")
        return self

    @property
    def username(self) -> str:
        return self.uplink.username or self.gateway


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"mqtt", "http"} and out.endswith("]"):
            continue  # the discriminator's tag pydantic inserts into the location
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse(document: dict[str, Any], *, path: Path) -> GatewayConfig:
    """Validate a parsed TOML document; relative paths are taken from the file's folder."""
    try:
        config = GatewayConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(path, [(_key(e["loc"]), e["msg"]) for e in exc.errors()]) from None
    return _resolve_and_check(config, base=path.parent, path=path)


def _resolve_and_check(config: GatewayConfig, *, base: Path, path: Path) -> GatewayConfig:
    problems: list[tuple[str, str]] = []

    def resolve(key: str, value: Path | None, *, must_exist: bool, folder: bool = False) -> Path | None:
        if value is None:
            return None
        full = value if value.is_absolute() else base / value
        if must_exist and not (full.is_dir() if folder else full.is_file()):
            problems.append((key, f"{'folder' if folder else 'file'} {full} does not exist"))
        return full

    def ca(key: str, value: Path | None) -> Path | None:
        full = resolve(key, value, must_exist=True)
        if full is not None and full.is_file():
            try:
                ssl.create_default_context(cafile=str(full))
            except (ssl.SSLError, ValueError) as exc:
                problems.append((key, f"{full} is not a CA certificate file (PEM): {exc}"))
        return full

    uplink = config.uplink.model_copy(
        update={
            "ca_file": ca("uplink.ca_file", config.uplink.ca_file),
            "password_file": resolve("uplink.password_file", config.uplink.password_file, must_exist=True),
        }
    )
    storage = config.storage.model_copy(update={"path": resolve("storage.path", config.storage.path, must_exist=False)})
    # A folder missing (a disk not mounted) is no reason not to start when the store may go on in memory: it does,
    # says so, and moves to the folder once it is there (store.py). Without that, the gateway cannot run.
    if storage.path is not None and not storage.path.parent.is_dir() and not storage.memory_bytes:
        problems.append(("storage.path", f"folder {storage.path.parent} does not exist (and storage.memory_bytes = 0)"))
    sources: list[MqttSource | HttpSource] = []
    for i, source in enumerate(config.sources):
        if isinstance(source, MqttSource) and source.ca_file is not None:
            ca_file = ca(f"sources[{i}].ca_file", source.ca_file)
            sources.append(source.model_copy(update={"ca_file": ca_file}))
        else:
            sources.append(source)
    fall = config.fall.model_copy(update={"model": resolve("fall.model", config.fall.model, must_exist=True)})
    dirs = [resolve(f"mappings.dirs[{i}]", d, must_exist=True, folder=True) for i, d in enumerate(config.mappings.dirs)]
    mappings = MappingsConfig(dirs=[d for d in dirs if d is not None])
    if problems:
        raise ConfigError(path, problems)
    return config.model_copy(
        update={"uplink": uplink, "storage": storage, "sources": sources, "fall": fall, "mappings": mappings}
    )


def load(path: Path) -> GatewayConfig:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "no such file")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("(syntax)", str(exc))]) from None
    return parse(document, path=path)
