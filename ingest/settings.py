"""Settings of the ingest service (``ELDERCARE_INGEST_*`` and the shared connection settings)."""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import BaseSettings

from eldercare.platform.config import settings_config


class IngestSettings(BaseSettings):
    model_config = settings_config()

    ingest_name: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0],
        description="stable name of this process: its MQTT sessions persist under it across restarts",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
    )
    ingest_group: str = Field(default="ingest", description="shared-subscription group name")
    ingest_batch_max_wait_ms: int = Field(default=200, ge=1, le=10_000)
    ingest_batch_max_frames: int = Field(default=2_000, ge=1)
    ingest_batch_max_rows: int = Field(default=50_000, ge=1)
    ingest_receive_maximum: int = Field(default=10_000, ge=10, le=65_535)
    ingest_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    ingest_unknown_retry_s: float = Field(default=5.0, ge=0, description="negative cache for unknown codes")
