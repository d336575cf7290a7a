"""The HTTP source's answers, with the real store behind it: 200 only once on disk, 4xx that say why, and
503 (the device keeps the message) when the store is full of alarms."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.support import pipeline_over

from eldercare.devices import messages as m
from eldercare.gateway import mapping_files
from eldercare.gateway.config import DevicesConfig, HttpSource, LocalConfig, SupervisionConfig
from eldercare.gateway.local import AlarmHub
from eldercare.gateway.pipeline import Pipeline, now_ms
from eldercare.gateway.stats import Stats
from eldercare.gateway.store import Store
from eldercare.gateway.supervision import DeviceBook, Supervisor
from eldercare.gateway.uplink import Backoff
from eldercare.gateway.web import http_source_app
from eldercare.gateway.worker import StoreWorker

T0 = 1_763_775_000_000


async def scenario(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", max_bytes=1024 * 1024)
    worker = StoreWorker(store)
    stats = Stats()
    hub = AlarmHub(LocalConfig(), institution="524205024154895658", gateway="GW-1", stats=stats)
    book = DeviceBook(DevicesConfig(auto_discover=True), {})
    supervisor = Supervisor(config=SupervisionConfig(), devices={}, active=(), now=time.monotonic(), clock_ms=now_ms)
    pipeline = Pipeline(
        mappings=mapping_files.load_all(),
        book=book,
        supervisor=supervisor,
        falls=None,
        forward_samples=True,
        worker=worker,
        stats=stats,
        hub=hub,
        on_stored=lambda: None,
    )
    config = HttpSource(kind="http", name="lan", vendors=["acme", "contract"], max_body_bytes=2048)
    app = http_source_app(config, pipeline)
    task = asyncio.create_task(worker.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        ok = await client.post(
            "/v1/devices/acme", content=b'{"deviceId":"BS-1","type":"vitals","time":1763775000,"inBed":0}'
        )
        assert (ok.status_code, ok.json()) == (200, {"stored": 1, "repeats": 0, "problems": []})
        assert store.depth().telemetry == 1  # on disk before the answer
        mixed = await client.post(
            "/v1/devices/contract",
            content=b'[{"t":"button","dev":"BT-1","ts":1763775000000,"action":"press"},{"t":"button","dev":"BT-2"}]',
        )
        assert mixed.status_code == 200  # the good one is stored, the bad one is reported
        assert mixed.json()["stored"] == 1
        assert [p["reason"] for p in mixed.json()["problems"]] == ["[1]: Object missing required field `ts`"]
        assert (await client.post("/v1/devices/lianke", content=b"id=1")).status_code == 404
        big = await client.post("/v1/devices/acme", content=b"x" * 4096)
        assert big.status_code == 413
        assert big.json() == {"error": "body too large", "limit_bytes": 2048}

        acknowledged = 1  # the press of the mixed payload
        rng = random.Random(1)
        for i in range(100_000):
            dev = "BT-" + "".join(rng.choice("ABCDEFGH") for _ in range(40))
            press = m.Button(dev=dev, ts=T0 + i, action=m.ButtonAction.PRESS)
            reply = await client.post("/v1/devices/contract", content=m.encode(press))
            if reply.status_code == 503:
                assert reply.headers["retry-after"] == "5"
                break
            assert reply.status_code == 200, reply.text
            acknowledged += 1
        else:
            raise AssertionError("the store never filled up")
    assert acknowledged > 1000
    assert store.depth().alarm == acknowledged  # every acknowledged alarm is kept; the refused one is not
    assert store.dropped == 1  # the one reading made room first: telemetry goes before alarms are refused
    assert store.disk_bytes() <= 1024 * 1024 + 64 * 4096
    assert stats.refused >= 1
    worker.stop()
    await task
    store.close()


def test_http_answers_come_after_the_commit_and_say_why(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))


def test_backoff_is_jittered_grows_and_resets() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(5))
    delays = [backoff.next() for _ in range(12)]
    assert all(1.0 <= d <= 60.0 for d in delays)
    ceilings = [min(60.0, 2.0**i) for i in range(12)]
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays}) == 12  # random, not a fixed schedule
    assert max(delays[6:]) > 10  # it grows
    backoff.reset()
    assert backoff.next() == 1.0  # the first delay after a reset is the minimum


def test_a_payload_the_gateway_chokes_on_is_a_problem_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault in preparing one delivery (here, supervision failing on one device, as a bug would) is that
    delivery's problem: it is answered and the next payload is stored. Raised into an MQTT source's
    callback it would have left the message unacknowledged and, repeated, blocked the whole source."""
    observe = Supervisor.observe

    def failing(self: Supervisor, message: m.DeviceMessage, *args: Any, **kwargs: Any) -> list[m.DeviceFault]:
        if message.dev == "BT-BUG":
            raise RuntimeError("supervision bug")
        return observe(self, message, *args, **kwargs)

    monkeypatch.setattr(Supervisor, "observe", failing)

    async def go() -> None:
        store = Store(tmp_path / "s.db", max_bytes=1024 * 1024)
        worker = StoreWorker(store)
        stats = Stats()
        pipeline = pipeline_over(store, worker, stats, None)
        app = http_source_app(HttpSource(kind="http", name="lan", vendors=["contract"], max_body_bytes=2048), pipeline)
        task = asyncio.create_task(worker.run())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            bug = await client.post(
                "/v1/devices/contract", content=m.encode(m.Button(dev="BT-BUG", ts=T0, action=m.ButtonAction.PRESS))
            )
            assert bug.status_code == 422, bug.text
            assert bug.json()["problems"][0]["reason"] == "gateway error: RuntimeError: supervision bug"
            press = await client.post(
                "/v1/devices/contract", content=m.encode(m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.PRESS))
            )
            assert press.json()["stored"] == 1, press.text
        assert store.depth().alarm == 1 and stats.unmapped == 1
        worker.stop()
        await task
        store.close()

    asyncio.run(go())
