"""When the gateway's store cannot take an alarm at once (full of alarms after a long outage, its disk failing or
hanging), the nurse station still sees the alarm at once, and once: the device keeps it and sends it again until
the store takes it, and nothing of the gateway stops meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.support import (
    HomeBroker,
    LinkCutter,
    MqttDevices,
    disk_fails,
    fill_with_alarms,
    fleet,
    now_ms,
    pipeline_over,
    register_site,
    send_alarms,
    stored_events,
    wait_for,
    write_config,
)
from tests.platform_procs import Proc

from eldercare.devices import messages as m
from eldercare.gateway import config as gateway_config
from eldercare.gateway import service as service_module
from eldercare.gateway.config import LocalConfig
from eldercare.gateway.config import MqttSource as MqttSourceConfig
from eldercare.gateway.errors import GatewayError
from eldercare.gateway.local import AlarmHub, LocalAlarm
from eldercare.gateway.mqtt import MqttLink
from eldercare.gateway.pipeline import UNSTORED_AFTER_S, Delivery, Pipeline
from eldercare.gateway.sources import mqtt as mqtt_source
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Batch, Item, Lane, Store, Stored, StoreFullError
from eldercare.gateway.supervision import Supervisor
from eldercare.gateway.worker import StoreWorker
from eldercare.platform.stack.model import StackInfo

MIB = 1024 * 1024
T0 = 1_763_775_000_000


def shown(pipeline: Pipeline) -> list[tuple[str, int]]:
    """(device, time) of the alarms on the local page, oldest first."""
    return [(d["dev"], d["ts"]) for d in reversed(pipeline._hub.recent)]


def lianke(dev: str, ts: int | None = None) -> Delivery:
    """A press of a Lianke button; ``ts`` None: a button with no clock, stamped with the time of receipt."""
    when = "" if ts is None else f"ts={ts};"
    return Delivery(source="home", vendor="lianke", payload=f"id={dev};{when}ev=key;act=1".encode(), topic=f"l/{dev}")


def fill(store: Store) -> None:
    """Alarms until the store refuses even one smaller than any press of the tests."""
    fill_with_alarms(store)
    for n in itertools.count():
        press = m.Button(dev="X", ts=n, action=m.ButtonAction.PRESS)
        try:
            store.commit([Batch(items=[Item(Lane.ALARM, m.encode(press), press)])])
        except StoreFullError:
            return


async def outcome(future: asyncio.Future[Stored]) -> str:
    try:
        await future
    except GatewayError:
        return "refused"
    return "stored"


async def with_pipeline(path: Path, body: Any) -> Stats:
    store = Store(path, max_bytes=4 * MIB)
    worker = StoreWorker(store)
    stats = Stats()
    pipeline = pipeline_over(store, worker, stats, None)
    task = asyncio.create_task(worker.run())
    try:
        await body(store, worker, pipeline)
    finally:
        worker.stop()
        await task
        store.close()
    return stats


def test_an_alarm_a_full_store_refuses_is_shown_at_once_and_only_once(tmp_path: Path) -> None:
    async def body(store: Store, worker: StoreWorker, pipeline: Pipeline) -> None:
        await worker.call(partial(fill, store))
        press = lianke("BT-1", T0 + 1)
        for _ in range(3):  # refused; the device sends it again, and again
            future, problems = pipeline.submit(press)
            assert problems == []
            assert await outcome(future) == "refused"
        assert shown(pipeline) == [("BT-1", T0 + 1)]  # at once, though not stored, and once
        other = lianke("BT-2", T0 + 2)  # another alarm meanwhile is another alarm
        assert await outcome(pipeline.submit(other)[0]) == "refused"
        assert shown(pipeline) == [("BT-1", T0 + 1), ("BT-2", T0 + 2)]

        await worker.call(partial(send_alarms, store))  # the uplink is back and empties the store
        assert await outcome(pipeline.submit(press)[0]) == "stored"
        assert await outcome(pipeline.submit(other)[0]) == "stored"
        assert shown(pipeline) == [("BT-1", T0 + 1), ("BT-2", T0 + 2)]  # stored now: not shown again
        again = lianke("BT-1", T0 + 3)  # the resident presses again
        assert await outcome(pipeline.submit(again)[0]) == "stored"
        assert shown(pipeline)[-1] == ("BT-1", T0 + 3)

    stats = asyncio.run(with_pipeline(tmp_path / "store.db", body))
    assert stats.shown_unstored == 2
    assert stats.refused == 4


def test_a_button_with_no_clock_sent_again_is_shown_once_and_a_new_press_again(tmp_path: Path) -> None:
    """The gateway stamps such a press with the time it receives it, so each repeat differs in its bytes: the
    delivery it came in tells them apart while the store refuses it. Once stored, the same payload is a new press."""

    async def body(store: Store, worker: StoreWorker, pipeline: Pipeline) -> None:
        await worker.call(partial(fill, store))
        for _ in range(3):
            assert await outcome(pipeline.submit(lianke("BT-9"))[0]) == "refused"
            await asyncio.sleep(0.01)  # another millisecond of receipt
        assert [dev for dev, _ in shown(pipeline)] == ["BT-9"]

        await worker.call(partial(send_alarms, store))
        assert await outcome(pipeline.submit(lianke("BT-9"))[0]) == "stored"  # the device's last repeat
        assert [dev for dev, _ in shown(pipeline)] == ["BT-9"]
        await asyncio.sleep(0.01)
        assert await outcome(pipeline.submit(lianke("BT-9"))[0]) == "stored"  # pressed again: a new alarm
        assert [dev for dev, _ in shown(pipeline)] == ["BT-9", "BT-9"]

    asyncio.run(with_pipeline(tmp_path / "store.db", body))


def test_an_alarm_whose_commit_hangs_is_shown_before_it_is_stored(tmp_path: Path) -> None:
    async def body(store: Store, worker: StoreWorker, pipeline: Pipeline) -> None:
        hang = asyncio.ensure_future(worker.call(partial(time.sleep, 3 * UNSTORED_AFTER_S + 1)))  # the disk hangs
        await asyncio.sleep(0.05)
        future, _ = pipeline.submit(lianke("BT-3", T0))
        await asyncio.sleep(UNSTORED_AFTER_S + 0.5)
        assert not future.done()
        assert shown(pipeline) == [("BT-3", T0)]
        await hang
        assert await outcome(future) == "stored"
        assert shown(pipeline) == [("BT-3", T0)]  # stored: not shown a second time

        quick = lianke("BT-4", T0 + 1)  # a disk that answers: shown after the commit, as before
        assert await outcome(pipeline.submit(quick)[0]) == "stored"
        assert shown(pipeline)[-1] == ("BT-4", T0 + 1)

    stats = asyncio.run(with_pipeline(tmp_path / "store.db", body))
    assert stats.shown_unstored == 1


def home_source(home: HomeBroker, pipeline: Pipeline) -> mqtt_source.MqttSource:
    """The gateway's source on the home broker, for Lianke devices, feeding ``pipeline``."""
    config = MqttSourceConfig.model_validate(
        {
            "kind": "mqtt",
            "name": "home",
            "host": "127.0.0.1",
            "port": home.port,
            "subscriptions": [{"topic": "lianke/up/+", "vendor": "lianke"}],
        }
    )
    supervisor = Supervisor(
        config=gateway_config.SupervisionConfig(), devices={}, active=(), now=time.monotonic(), clock_ms=now_ms
    )
    return mqtt_source.MqttSource(config, gateway="GW-1", pipeline=pipeline, supervisor=supervisor, stats=Stats())


@contextlib.asynccontextmanager
async def failing_disk_behind_a_source(
    home: HomeBroker, store: Store, worker: StoreWorker, pipeline: Pipeline
) -> AsyncIterator[tuple[mqtt_source.MqttSource, MqttDevices]]:
    """The home broker source running and connected, its store's disk failing from now on, and devices on the
    home broker; all stopped afterwards."""
    source = home_source(home, pipeline)
    task = asyncio.create_task(source.run())
    try:
        await until(lambda: source.connected, 10)
        await worker.call(partial(disk_fails, store, failing=True))
        devices = await asyncio.to_thread(MqttDevices, home.port)
        try:
            yield source, devices
        finally:
            await asyncio.to_thread(devices.close)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_refusing_store_does_not_slow_the_home_broker_source(tmp_path: Path, home: HomeBroker) -> None:
    """The source disconnects to have a refused message sent again; that is no failure of the broker, so it
    connects again at once each time, not after a back-off doubling to half a minute."""
    took: list[float] = []

    async def body(store: Store, worker: StoreWorker, pipeline: Pipeline) -> None:
        async with failing_disk_behind_a_source(home, store, worker, pipeline) as (source, devices):
            press = m.Button(dev="BT-7", ts=now_ms(), action=m.ButtonAction.PRESS)
            await asyncio.to_thread(lambda: devices.send("lianke", press).wait_for_publish(5))
            started, connects = time.monotonic(), source.connects
            # refused each time: the broker sends it again on each new connection
            await until(lambda: source.connects >= connects + 6, 60)
            took.append(time.monotonic() - started)
            await worker.call(partial(disk_fails, store, failing=False))
            await until(lambda: store.depth().alarm == 1, 10)
        assert [dev for dev, _ in shown(pipeline)] == ["BT-7"]

    asyncio.run(with_pipeline(tmp_path / "store.db", body))
    assert took[0] < 6 * (mqtt_source.REFUSED_RETRY_S + 0.5), took


def test_refused_messages_sent_again_before_the_subscription_is_confirmed_retry_soon_too(
    tmp_path: Path, home: HomeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several refused messages waiting, the broker sends them again right after the CONNACK, before the
    SUBACK: the first refusal closes the link while the subscription is still being confirmed. That is the store's
    trouble too: the source connects again after 1 s, not after the broker back-off."""
    attempts: list[float] = []
    connect = MqttLink.connect

    async def counted(self: MqttLink, within_s: float) -> None:
        attempts.append(time.monotonic())
        await connect(self, within_s)

    monkeypatch.setattr(MqttLink, "connect", counted)

    async def body(store: Store, worker: StoreWorker, pipeline: Pipeline) -> None:
        async with failing_disk_behind_a_source(home, store, worker, pipeline) as (_, devices):
            t = now_ms()
            for i in range(50):
                devices.send("lianke", m.BedSample(dev=f"BS-{i % 10}", ts=t + i, presence=True))
            attempts.clear()
            await asyncio.sleep(12)

    asyncio.run(with_pipeline(tmp_path / "store.db", body))
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
    assert len(attempts) >= 8, gaps
    assert max(gaps) < mqtt_source.REFUSED_RETRY_S + 1.0, gaps


async def until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s")
        await asyncio.sleep(0.02)


# --- the whole gateway, its disk failing ------------------------------------------------------------------


@dataclass
class InProcess:
    """The gateway service run in a thread of the test, as ``eldercare gateway`` runs it, with its store worker
    at hand (to make the disk fail), and what ended it if it ended."""

    loop: asyncio.AbstractEventLoop
    worker: StoreWorker
    thread: threading.Thread
    ended: list[BaseException | None]

    def on_store(self, fn: Any) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(self.worker.call(fn), self.loop)
        future.result(10)


@contextlib.contextmanager
def gateway_in_process(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcess]:
    workers: list[StoreWorker] = []

    class Recorded(StoreWorker):
        def __init__(self, store: Store) -> None:
            super().__init__(store)
            workers.append(self)

    monkeypatch.setattr(service_module, "StoreWorker", Recorded)
    gateway = service_module.Gateway(gateway_config.load(config_path), config_path=config_path)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ended: list[BaseException | None] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        await gateway.run(stop[0], on_ready=ready.set)

    def target() -> None:
        try:
            loop.run_until_complete(main())
            ended.append(None)
        except BaseException as exc:  # the test reports it
            ended.append(exc)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(30), "the gateway did not start"
    assert not ended, ended
    try:
        yield InProcess(loop, workers[0], thread, ended)
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(stop[0].set)
            thread.join(30)
        loop.close()


def test_a_failing_disk_stops_nothing_and_its_alarms_are_shown_and_sent_when_it_is_back(
    stack: StackInfo,
    platform: Proc,
    home: HomeBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="eldercare.gateway")
    devices = fleet("dsk", {"button": 2})
    site = register_site(stack, seed=311, devices=devices)
    link = LinkCutter(stack.ports.mqtt_tls)  # down: the first press waits in the store, not yet in a frame
    setup = write_config(
        tmp_path / "gw",
        site=site,
        stack=stack,
        home_port=home.port,
        http=False,
        uplink={"port": link.port},
        storage={"memory_after_s": 3600},  # refusing, not in memory (tests/gateway/test_store_memory.py)
    )
    first, second = sorted(devices)
    local = f"http://127.0.0.1:{setup.local_port}"

    def status() -> dict[str, Any]:
        document: dict[str, Any] = httpx.get(f"{local}/api/status", timeout=5).json()
        return document

    def on_page() -> list[tuple[str, int]]:
        return [(d["dev"], d["ts"]) for d in reversed(httpx.get(f"{local}/api/alarms", timeout=5).json())]

    with gateway_in_process(setup.config, monkeypatch) as gateway:
        wait_for(lambda: status()["sources"]["home"], 30, "the home broker source")
        sensors = MqttDevices(home.port)
        try:
            a = m.Button(dev=first, ts=now_ms(), action=m.ButtonAction.PRESS)
            sensors.send("lianke", a).wait_for_publish(5)
            wait_for(lambda: status()["queue"]["alarm"] == 1, 10, "the first press stored")

            gateway.on_store(partial(disk_fails, gateway.worker.store, failing=True))
            b = m.Button(dev=second, ts=now_ms(), action=m.ButtonAction.PRESS)
            sensors.send("lianke", b).wait_for_publish(5)
            wait_for(lambda: on_page() == [(a.dev, a.ts), (b.dev, b.ts)], 3, "the refused press on the local page")

            link.restore()  # the uplink connects, and the store cannot cut the waiting press into a frame
            wait_for(lambda: status()["uplink"]["connected"], 30, "the uplink")
            wait_for(lambda: "no frames from the store" in caplog.text, 10, "the uplink's error")
            time.sleep(3)  # the uplink tries again, the source is sent the press again: nothing ends
            assert gateway.thread.is_alive(), gateway.ended
            assert status()["uplink"]["connected"]
            assert stored_events(stack.database_url, site) == []

            gateway.on_store(partial(disk_fails, gateway.worker.store, failing=False))
            wanted = [(a.dev, a.ts, "button"), (b.dev, b.ts, "button")]
            wait_for(
                lambda: [(d, t, k) for d, t, k, _ in stored_events(stack.database_url, site)] == wanted,
                30,
                "both presses on the platform",
            )
            assert on_page() == [(a.dev, a.ts), (b.dev, b.ts)]  # each shown once
            assert status()["stats"]["shown_unstored"] == 1
        finally:
            sensors.close()
            link.cut()
    assert gateway.ended == [None]


def test_a_local_command_that_hangs_in_a_child_is_killed_with_it(tmp_path: Path) -> None:
    """The nurse-call command is a script whose child hangs (a relay tool that never returns): at the timeout the
    whole process group is killed, so the slot is free again. Before, only the script was killed, the child kept
    its pipe open, and the slot stayed taken as long as the child ran: four such alarms and no call rang."""
    script = tmp_path / "relay.sh"
    pids = tmp_path / "pids"
    script.write_text(f"#!/bin/sh\ncat > /dev/null\nsleep 60 &\necho $! >> {pids}\nwait\n")
    script.chmod(0o755)
    marker = tmp_path / "rang"

    async def body() -> float:
        stats = Stats()
        config = LocalConfig(command=[str(script)], command_timeout_s=0.5)
        hub = AlarmHub(config, institution="524205024154895658", gateway="GW-1", stats=stats)
        hanging = [m.Button(dev=f"BT-{i}", ts=T0 + i, action=m.ButtonAction.PRESS) for i in range(4)]
        hub.publish([LocalAlarm(x, m.encode(x)) for x in hanging])
        started = time.monotonic()
        await until(lambda: hub.commands_failed == 4, 5)  # every slot free again
        took = time.monotonic() - started
        script.write_text(f"#!/bin/sh\ncat > /dev/null\ntouch {marker}\n")  # the relay works again
        press = m.Button(dev="BT-9", ts=T0 + 9, action=m.ButtonAction.PRESS)
        hub.publish([LocalAlarm(press, m.encode(press))])
        await until(marker.exists, 5)
        await hub.drain()
        return took

    took = asyncio.run(body())
    assert took < 3, took

    def running(pid: str) -> bool:  # a killed child may show as a zombie until it is reaped
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 3
    while (alive := [pid for pid in pids.read_text().split() if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:  # (the old code left them: do not leave them to the next test)
        subprocess.run(["kill", "-9", pid], check=False)
    assert alive == [], "the relay's children outlived its timeout"
