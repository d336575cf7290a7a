"""Counters the gateway reports upstream (heartbeat) and on its local page."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Stats:
    deliveries: int = 0  # payloads received from devices
    accepted: int = 0  # contract messages stored
    repeats: int = 0  # messages already stored (sent again), not stored twice
    unmapped: int = 0  # payloads or records no mapping could read, and messages of unknown devices
    refused: int = 0  # deliveries not stored (store full or failing), left with the device to send again
    falls: int = 0  # falls the detector raised
    fall_chunks_stale: int = 0  # accelerometer chunks too old for their stream (sent again late, or too late)
    shown_unstored: int = 0  # alarms shown locally before they were stored (refused, or a slow commit)
    devices_seen: set[str] = field(default_factory=set)
    last_error: str | None = None
    last_error_at: float | None = None

    def error(self, text: str) -> None:
        if text != self.last_error:
            log.warning("%s", text)
        self.last_error = text[:500]
        self.last_error_at = time.time()
