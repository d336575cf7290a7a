"""The ingest process: an alarm lane and a telemetry lane on MQTT shared subscriptions."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from eldercare.devices import topics
from eldercare.ingest.lane import Lane
from eldercare.ingest.registry import Registry
from eldercare.ingest.settings import IngestSettings
from eldercare.ingest.store import BatchStore
from eldercare.platform.config import BrokerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ingest:
    alarm: Lane
    telemetry: Lane

    def start(self) -> None:
        self.alarm.start()
        self.telemetry.start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self.alarm.wait_subscribed(timeout) and self.telemetry.wait_subscribed(timeout)

    def stop(self) -> None:
        self.alarm.stop()
        self.telemetry.stop()


def build(*, settings: IngestSettings, broker: BrokerSettings, database_url: str) -> Ingest:
    share = f"$share/{settings.ingest_group}"
    alarm = Lane(
        name="alarm",
        client_id=f"ingest-{settings.ingest_name}-alarm",
        topics=[f"{share}/{topics.ROOT}/+/+/up/alarm", f"{share}/{topics.ALL_STATUS}"],
        store=BatchStore(registry=Registry(retry_s=settings.ingest_unknown_retry_s)),
        max_wait_s=0.0,
        max_frames=200,
        broker=broker,
        database_url=database_url,
        session_expiry_s=settings.ingest_session_expiry_s,
        receive_maximum=settings.ingest_receive_maximum,
    )
    telemetry = Lane(
        name="telemetry",
        client_id=f"ingest-{settings.ingest_name}-telemetry",
        topics=[f"{share}/{topics.ROOT}/+/+/up/telemetry"],
        store=BatchStore(registry=Registry(retry_s=settings.ingest_unknown_retry_s)),
        max_wait_s=settings.ingest_batch_max_wait_ms / 1000,
        max_frames=settings.ingest_batch_max_frames,
        broker=broker,
        database_url=database_url,
        session_expiry_s=settings.ingest_session_expiry_s,
        receive_maximum=settings.ingest_receive_maximum,
    )
    return Ingest(alarm, telemetry)


def run(*, settings: IngestSettings, broker: BrokerSettings, database_url: str) -> None:
    """Run until SIGTERM or SIGINT."""
    ingest = build(settings=settings, broker=broker, database_url=database_url)
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    ingest.start()
    if ingest.wait_subscribed(30):
        log.info("ingest %s: subscribed, storing", settings.ingest_name)
    stop.wait()
    ingest.stop()
