"""Settings of the ingest service (``ELDERCARE_INGEST_*`` and the shared connection settings)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from eldercare.platform.config import settings_config


class IngestSettings(BaseSettings):
    model_config = settings_config()

    ingest_name: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0],
        description="stable name of this process: its MQTT sessions persist under it across restarts",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
    )
    ingest_group: str = Field(
        default="ingest", description="shared-subscription group name", pattern=r"^[A-Za-z0-9_-]{1,40}$"
    )
    ingest_batch_max_wait_ms: int = Field(
        default=200, ge=1, le=10_000, description="a telemetry batch waits at most this"
    )
    ingest_batch_max_frames: int = Field(default=2_000, ge=1)
    ingest_batch_max_rows: int = Field(default=50_000, ge=1, description="messages per telemetry batch, at most")
    ingest_receive_maximum: int = Field(
        default=10_000, ge=10, le=65_535, description="unacknowledged messages in flight"
    )
    ingest_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)
    ingest_unknown_retry_s: float = Field(default=5.0, ge=0, description="negative cache for unknown codes")
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: int | None = Field(default=None, ge=0, le=65535, description="serve /metrics here; 0 picks")
    # adoption of dead members' sessions (ingest/adopt.py)
    ingest_adopt: bool = True
    ingest_adopt_poll_s: float = Field(default=0.5, gt=0)
    ingest_adopt_grace_s: float = Field(default=2.0, ge=0)
    ingest_adopt_quiet_s: float = Field(default=2.0, gt=0)
    # maintenance: gaps, roll-ups, retention (ingest/maintain.py); run in the process unless disabled
    ingest_maintain: bool = True
    ingest_gap_interval_s: float = Field(default=30.0, gt=0)
    ingest_gap_grace_s: float = Field(default=30.0, ge=0, description="a seq is missing after this without it")
    ingest_rollup_interval_s: float = Field(default=60.0, gt=0)
    ingest_rollup_lag_s: float = Field(default=120.0, ge=0, description="an hour is rolled up this long after it ends")
    ingest_rollup_timezone: str = Field(default="Asia/Shanghai", description="the calendar of the daily roll-ups")
    ingest_retention_interval_s: float = Field(default=3600.0, gt=0)
    ingest_raw_retention_days: float = Field(default=30.0, gt=0, description="raw readings kept this long")
    ingest_events_retention_days: float = Field(default=365.0, gt=0, description="device events kept this long")
    ingest_frames_retention_days: float = Field(default=30.0, gt=0, description="frame keys: the dedupe window")

    @field_validator("ingest_rollup_timezone")
    @classmethod
    def _whole_hours(cls, value: str) -> str:
        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        for month in range(1, 13):
            offset = datetime(2025, month, 1, tzinfo=UTC).astimezone(zone).utcoffset()
            if offset is None or offset.total_seconds() % 3600:
                raise ValueError(f"{value} is not a whole number of hours from UTC; days are built from hours")
        return value
