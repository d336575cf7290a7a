"""Typed settings from the environment, shared by the server-side services (platform and ingest).

Values come from ``ELDERCARE_*`` environment variables, then from the env file that ``eldercare stack up``
writes into the state directory (``$ELDERCARE_STATE_DIR/eldercare.env``, default ``./state``).
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eldercare.platform.envfile import ENV_PREFIX, env_file


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def settings_config() -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=env_file(), extra="ignore", frozen=True)


class DatabaseSettings(BaseSettings):
    model_config = settings_config()

    database_url: str = Field(description="libpq connection string of the TimescaleDB database")


class BrokerSettings(BaseSettings):
    """How server-side services reach the MQTT broker (as the platform's own user)."""

    model_config = settings_config()

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=8883, ge=1, le=65535)
    mqtt_tls: bool = True
    mqtt_ca_file: Path | None = None
    mqtt_username: str = "platform"
    mqtt_password: SecretStr = SecretStr("")
    # Production: the folder the platform shares with the broker's container for its logins (see
    # platform/registry/broker.py); unset, the platform provisions the local stack's broker.
    broker_auth_dir: Path | None = None
    broker_reload_timeout_s: float = Field(default=10.0, gt=0)


class SecuritySettings(BaseSettings):
    """Keys for personal data at rest. There is no default key: ``stack up`` generates one per state dir."""

    model_config = settings_config()

    environment: Environment = Environment.DEVELOPMENT
    data_key: SecretStr = Field(description="base64 of 32 random bytes; encrypts personal data at rest")
    data_key_previous: SecretStr | None = Field(
        default=None,
        description="during a key rotation only: the key being replaced (base64 of 32 bytes), so that what it sealed "
        "still opens until `eldercare db rekey` has re-sealed it; unset (or empty) otherwise",
    )

    @field_validator("data_key", "data_key_previous")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or (info.field_name == "data_key_previous" and not value.get_secret_value()):
            return None  # an empty ELDERCARE_DATA_KEY_PREVIOUS= is no previous key
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{info.field_name} must be base64") from exc
        if len(raw) != 32:
            raise ValueError(f"{info.field_name} must decode to 32 bytes, not {len(raw)}")
        return value

    def key_bytes(self) -> bytes:
        return base64.b64decode(self.data_key.get_secret_value())

    def previous_key_bytes(self) -> bytes | None:
        """The key being rotated away from (``ELDERCARE_DATA_KEY_PREVIOUS``), or None."""
        if self.data_key_previous is None:
            return None
        return base64.b64decode(self.data_key_previous.get_secret_value())
