"""The gateway process: builds the parts from the configuration and runs them until asked to stop.

Parts and their tasks (one ``asyncio.TaskGroup``): the store worker (its own thread for fsyncs), the uplink,
one task per MQTT source, the HTTP source and local page servers, and the supervision tick. Stopping
(SIGTERM, SIGINT) stops taking input first, commits what was accepted, says goodbye upstream (a retained
clean ``death``) and closes the store; whatever was not sent stays in the store for the next start.

A store whose file cannot be opened at start (the disk read-only or full, the file corrupt) does not stop the
gateway: it starts in memory and says so (the log, ``last_error`` in the heartbeat, ``store`` in the status; see
:mod:`eldercare.gateway.store`). Only with ``storage.memory_bytes = 0`` does it refuse to start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eldercare.gateway import mapping_files
from eldercare.gateway.carried import CarriedFile
from eldercare.gateway.carried import path_for as carried_path
from eldercare.gateway.config import GatewayConfig, HttpSource, MqttSource
from eldercare.gateway.errors import ConfigError, StoreError
from eldercare.gateway.fall import model as fall_model
from eldercare.gateway.local import AlarmHub
from eldercare.gateway.mapping import VendorMapping
from eldercare.gateway.pipeline import FallService, Pipeline, now_ms
from eldercare.gateway.sources.mqtt import MqttSource as MqttSourceRunner
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Store
from eldercare.gateway.supervision import TICK_S, DeviceBook, Supervisor
from eldercare.gateway.uplink import Uplink
from eldercare.gateway.web import Server, http_source_app, local_app
from eldercare.gateway.worker import StoreWorker

log = logging.getLogger(__name__)


def check_vendors(config: GatewayConfig, mappings: dict[str, VendorMapping], *, path: Path) -> None:
    problems: list[tuple[str, str]] = []
    known = ", ".join(sorted(mappings))
    for i, source in enumerate(config.sources):
        vendors = (
            [(f"sources[{i}].subscriptions[{j}].vendor", s.vendor) for j, s in enumerate(source.subscriptions)]
            if isinstance(source, MqttSource)
            else [(f"sources[{i}].vendors[{j}]", v) for j, v in enumerate(source.vendors)]
        )
        problems.extend(
            (key, f"no mapping for vendor {v!r} (known: {known})") for key, v in vendors if v not in mappings
        )
    if problems:
        raise ConfigError(path, problems)


class Gateway:
    """All parts, wired; nothing runs and nothing is opened until :meth:`run`."""

    def __init__(self, config: GatewayConfig, *, config_path: Path) -> None:
        self.config = config
        self.mappings = mapping_files.load_all(config.mappings.dirs)
        check_vendors(config, self.mappings, path=config_path)
        self.model = fall_model.load(config.fall.model) if config.fall.enabled else None
        self.stats = Stats()
        self.started = time.time()

    async def run(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        config = self.config
        storage = config.storage
        try:
            store = Store(
                storage.path,
                max_bytes=storage.max_bytes,
                memory_after_s=storage.memory_after_s if storage.memory_bytes else None,
                memory_bytes=storage.memory_bytes,
                say=self.stats.error,
            )
        except StoreError as exc:  # only with memory_bytes = 0: otherwise the store starts in memory
            raise StoreError(
                exc.path, f"cannot be opened: {exc.reason} (storage.memory_bytes = 0: no start without the disk)"
            ) from exc
        if store.in_memory:
            log.error("gateway: starting with the store in memory, not on disk: %s", store.memory_why)
        try:
            await self._run(store, stop, on_ready)
        finally:
            store.close()

    def _fall_service(self, store: Store, book: DeviceBook) -> tuple[FallService | None, list[str]]:
        """The fall service, its detectors resumed from the store, and the wearables whose stored detectors are
        to be deleted besides those it forgets: every one when fall detection is off (none will be resumed)."""
        saved = store.detector_states()
        if self.model is None:
            return None, sorted(saved)
        falls = FallService(
            self.model,
            suppress_s=self.config.fall.suppress_s,
            forget_after_s=self.config.fall.forget_after_s,
            saved=saved,
            served=book.classes,
        )
        if falls.restored:
            log.info("fall detection: %d wearable stream(s) resumed from the store", falls.restored)
        return falls, []

    async def _run(self, store: Store, stop: asyncio.Event, on_ready: Callable[[], None] | None) -> None:
        config = self.config
        worker = StoreWorker(store)
        hub = AlarmHub(config.local, institution=config.institution, gateway=config.gateway, stats=self.stats)
        book = DeviceBook(config.devices, store.devices())
        supervisor = Supervisor(
            config=config.supervision,
            devices=dict(book.classes),
            active=store.active_faults(),
            now=time.monotonic(),
            clock_ms=now_ms,
        )
        uplink = Uplink(
            config=config, worker=worker, stats=self.stats, hub=hub, devices=lambda: sorted(book.classes)[:10_000]
        )
        falls, gone = self._fall_service(store, book)
        pipeline = Pipeline(
            mappings=self.mappings,
            book=book,
            supervisor=supervisor,
            falls=falls,
            forward_samples=config.fall.forward_samples,
            worker=worker,
            stats=self.stats,
            hub=hub,
            on_stored=uplink.wake,
            carried_file=CarriedFile(carried_path(config.storage.path)),
        )
        sources = [
            MqttSourceRunner(s, gateway=config.gateway, pipeline=pipeline, supervisor=supervisor, stats=self.stats)
            for s in config.sources
            if isinstance(s, MqttSource)
        ]

        def status() -> dict[str, Any]:
            depth = store.depth()
            return {
                "institution": config.institution,
                "gateway": config.gateway,
                "epoch": store.epoch,
                "uplink": {
                    "connected": uplink.connected,
                    "connects": uplink.connects,
                    "frames_acked": uplink.frames_acked,
                },
                "queue": {"alarm": depth.alarm, "telemetry": depth.telemetry},
                "dropped": store.dropped,
                "store_bytes": store.disk_bytes(),
                "store": {"in_memory": store.in_memory, "since": store.memory_since, "why": store.memory_why},
                "sources": {s.config.name: s.connected for s in sources},
                "offline_devices": supervisor.offline(),
                "devices": len(book.classes),
                "stats": {k: v for k, v in asdict(self.stats).items() if k != "devices_seen"}
                | {"devices_seen": len(self.stats.devices_seen)},
                "commits": asdict(worker.stats),
                "local_commands": {"run": hub.commands_run, "failed": hub.commands_failed},
            }

        servers: list[Server] = []
        try:
            if config.local.enabled:
                servers.append(Server(local_app(hub, status), host=config.local.host, port=config.local.port))
            servers.extend(
                Server(http_source_app(s, pipeline), host=s.host, port=s.port)
                for s in config.sources
                if isinstance(s, HttpSource)
            )
        except OSError:
            for s in servers:
                s.socket.close()
            raise

        async def supervise() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                faults = supervisor.tick(time.monotonic())
                if faults:
                    pipeline.submit_own(list(faults))
                pipeline.forget_detectors()

        async with asyncio.TaskGroup() as group:
            store_task = group.create_task(_store(worker, pipeline, gone), name="store")  # runs before the sources
            inputs = [group.create_task(s.run(), name=f"source-{s.config.name}") for s in sources]
            serving = [group.create_task(s.run_bound(), name=f"http-{s.config.port}") for s in servers]
            uplink_task = group.create_task(uplink.run(), name="uplink")
            supervision = group.create_task(supervise(), name="supervision")
            log.info(
                "gateway %s of %s running: epoch %d, %d device(s), %d source(s), store %s%s",
                config.gateway,
                config.institution,
                store.epoch,
                len(book.classes),
                len(config.sources),
                config.storage.path,
                " (in memory: its disk cannot be used)" if store.in_memory else "",
            )
            if on_ready is not None:
                on_ready()
            await stop.wait()
            log.info("gateway: stopping")
            for s in servers:
                s.should_exit = True
            for task in [*inputs, supervision]:
                task.cancel()
            await asyncio.gather(*serving, *inputs, supervision, return_exceptions=True)
            pipeline.close()
            await uplink.close()
            uplink_task.cancel()
            worker.stop()
            await store_task
            await hub.drain()  # after the last commits: the alarms they stored ring the local command too
        log.info("gateway: stopped; %d message(s) wait in the store", sum(asdict(store.depth()).values()))


async def _store(worker: StoreWorker, pipeline: Pipeline, gone: list[str]) -> None:
    """The store worker, given first what the carried file held when the gateway stopped, then the deletion of
    the stored fall detectors that will not be resumed (``gone``, and those the fall service did not restore)."""
    pipeline.resume_carried()
    pipeline.forget_detectors(gone)
    await worker.run()
