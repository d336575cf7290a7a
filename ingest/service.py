"""The ingest process: an alarm lane and a telemetry lane on MQTT shared subscriptions, the membership
that adopts dead members' sessions, the watch on registry changes, the maintenance jobs, and the metrics
endpoint."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from types import FrameType

from eldercare.devices import topics
from eldercare.ingest.adopt import Membership
from eldercare.ingest.lane import Lane, LaneConfig
from eldercare.ingest.maintain import Maintainer
from eldercare.ingest.metrics import IngestMetrics, serve
from eldercare.ingest.mqtt import Endpoint
from eldercare.ingest.registry import Registry
from eldercare.ingest.settings import IngestSettings
from eldercare.ingest.store import BatchStore
from eldercare.ingest.watch import RegistryWatch
from eldercare.platform.config import BrokerSettings
from eldercare.platform.crypto import Vault
from eldercare.platform.db.keycheck import tagged

log = logging.getLogger(__name__)


def lane_configs(settings: IngestSettings) -> tuple[LaneConfig, LaneConfig]:
    """The two lanes of a process. The MQTT client id is ``<group>-<name>-<lane>`` (``ingest-<name>-alarm`` in
    the default group): the persistent session, and so the subscriptions it keeps, belong to one group."""
    share = f"$share/{settings.ingest_group}"
    alarm = LaneConfig(
        kind="alarm",
        client_id=f"{settings.ingest_group}-{settings.ingest_name}-alarm",
        topics=(f"{share}/{topics.ROOT}/+/+/up/alarm", f"{share}/{topics.ALL_STATUS}"),
        max_wait_s=0.0,
        max_frames=200,
        max_rows=10_000,
        session_expiry_s=settings.ingest_session_expiry_s,
        receive_maximum=settings.ingest_receive_maximum,
    )
    telemetry = LaneConfig(
        kind="telemetry",
        client_id=f"{settings.ingest_group}-{settings.ingest_name}-telemetry",
        topics=(f"{share}/{topics.ROOT}/+/+/up/telemetry",),
        max_wait_s=settings.ingest_batch_max_wait_ms / 1000,
        max_frames=settings.ingest_batch_max_frames,
        max_rows=settings.ingest_batch_max_rows,
        session_expiry_s=settings.ingest_session_expiry_s,
        receive_maximum=settings.ingest_receive_maximum,
    )
    return alarm, telemetry


@dataclass(slots=True)
class Ingest:
    alarm: Lane
    telemetry: Lane
    metrics: IngestMetrics
    membership: Membership | None
    maintainer: Maintainer | None
    watch: RegistryWatch
    metrics_server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.watch.start()
        self.alarm.start()
        self.telemetry.start()
        if self.membership is not None:
            self.membership.start()
        if self.maintainer is not None:
            self.maintainer.start()

    def wait_subscribed(self, timeout: float) -> bool:
        """Both lanes subscribed (and the registry watch listening)."""
        return (
            self.alarm.wait_subscribed(timeout)
            and self.telemetry.wait_subscribed(timeout)
            and self.watch.wait_listening(timeout)
        )

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.server_address[1] if self.metrics_server else None

    def stop(self) -> None:
        if self.maintainer is not None:
            self.maintainer.stop()
        self.alarm.stop()
        self.telemetry.stop()
        if self.membership is not None:
            self.membership.stop()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self.watch.stop()


def build(
    *,
    settings: IngestSettings,
    broker: BrokerSettings,
    database_url: str,
    vault: Vault,
    on_fatal: Callable[[str], None] | None = None,
) -> Ingest:
    """``on_fatal`` is called (from the failing thread) when a lane's writer fails for good; ``vault`` seals the
    positions and rates stored, and the maintenance's roll-ups open and seal rates with it."""
    metrics = IngestMetrics()
    endpoint = Endpoint.from_settings(broker)

    def url(name: str) -> str:
        """Each connection named for its part, and for the data key it seals with (for ``eldercare db rekey``)."""
        return tagged(database_url, vault, name)

    watch = RegistryWatch(database_url=url("ingest-registry-watch"))

    def make_lane(config: LaneConfig, *, adopted: bool = True) -> Lane:
        store = BatchStore(registry=Registry(retry_s=settings.ingest_unknown_retry_s, watch=watch), vault=vault)
        return Lane(
            config=config,
            endpoint=endpoint,
            database_url=url(f"ingest-{config.kind}"),
            store=store,
            metrics=metrics,
            adopted=adopted,
            on_fatal=on_fatal,
        )

    alarm_config, telemetry_config = lane_configs(settings)
    membership = None
    if settings.ingest_adopt:
        membership = Membership(
            database_url=url(f"ingest-{settings.ingest_name}-membership"),
            name=settings.ingest_name,
            group=settings.ingest_group,
            own=(alarm_config, telemetry_config),
            make_lane=make_lane,
            metrics=metrics,
            poll_s=settings.ingest_adopt_poll_s,
            grace_s=settings.ingest_adopt_grace_s,
            quiet_s=settings.ingest_adopt_quiet_s,
        )
    maintainer = None
    if settings.ingest_maintain:
        maintainer = Maintainer(database_url=url("ingest-maintenance"), settings=settings, metrics=metrics, vault=vault)
    ingest = Ingest(
        make_lane(alarm_config, adopted=False),
        make_lane(telemetry_config, adopted=False),
        metrics,
        membership,
        maintainer,
        watch,
    )
    if settings.ingest_metrics_port is not None:
        ingest.metrics_server = serve(metrics, host=settings.ingest_metrics_host, port=settings.ingest_metrics_port)
    return ingest


def run(*, settings: IngestSettings, broker: BrokerSettings, database_url: str, vault: Vault) -> int:
    """Run until SIGTERM or SIGINT (0), or until a lane's writer fails (1: the supervisor starts ingest again)."""
    stop = threading.Event()
    failed: list[str] = []

    def _fatal(reason: str) -> None:
        failed.append(reason)
        stop.set()

    ingest = build(settings=settings, broker=broker, database_url=database_url, vault=vault, on_fatal=_fatal)
    # Every message makes a few short-lived objects; with the default thresholds the collector ran so often
    # that it took a quarter of the writer's CPU (measured: 18 -> 13 µs a single-reading frame). Objects made
    # at start-up are frozen out of the collections.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    if ingest.metrics_port is not None:
        log.info("ingest %s: metrics on http://%s:%d/metrics", settings.ingest_name, settings.ingest_metrics_host,
                 ingest.metrics_port)  # fmt: skip
    ingest.start()
    if ingest.wait_subscribed(30):
        log.info("ingest %s: subscribed, storing", settings.ingest_name)
    else:
        log.error("ingest %s: not subscribed after 30 s; still trying", settings.ingest_name)
    stop.wait()
    ingest.stop()
    if failed:
        log.critical("ingest %s stopped: %s", settings.ingest_name, "; ".join(failed))
        return 1
    return 0
