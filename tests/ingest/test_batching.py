"""Telemetry batches close at a number of frames, at a number of rows, or when the first frame has waited
the maximum time; the alarm lane never waits for them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from eldercare.ingest.service import Ingest
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import Gateway, now_ms, scalar, stored_frames, wait_until


def _batches(ingest: Ingest, lane: str = "telemetry") -> list[float]:
    """The frames of each committed batch, from the histogram's buckets (as upper bounds)."""
    text = ingest.metrics.render()
    buckets = [
        (float(le), int(count))
        for le, count in re.findall(
            rf'eldercare_ingest_batch_frames_bucket\{{lane="{lane}",le="([0-9.]+)"\}} ([0-9]+)', text
        )
    ]
    out: list[float] = []
    previous = 0
    for bound, running in buckets:
        out += [bound] * (running - previous)
        previous = running
    return out


def test_a_batch_closes_at_its_frame_limit(
    stack: StackInfo, world: LoadWorld, db: str, run_ingest: Callable[..., Any]
) -> None:
    gateway = Gateway(stack, world)
    with run_ingest(ingest_batch_max_frames=5, ingest_batch_max_wait_ms=3000) as ingest:
        for _ in range(12):
            gateway.send(gateway.frame(gateway.beds(2)))
        gateway.flush()
        wait_until(lambda: stored_frames(db, world) == 12, timeout=20, what="twelve frames")
        assert _batches(ingest) == [2, 5, 5]  # buckets: two batches of 5, then 2 after the wait
    gateway.close()


def test_a_batch_closes_at_its_row_limit(
    stack: StackInfo, world: LoadWorld, db: str, run_ingest: Callable[..., Any]
) -> None:
    gateway = Gateway(stack, world)
    with run_ingest(ingest_batch_max_rows=100, ingest_batch_max_wait_ms=3000) as ingest:
        for _ in range(6):
            gateway.send(gateway.frame(gateway.beds(40)))
        gateway.flush()
        wait_until(lambda: stored_frames(db, world) == 6, timeout=20, what="six frames")
        assert _batches(ingest) == [5, 5]  # 3 frames (120 rows) each: the bucket of 3 is "5"
        assert ingest.metrics.batch_rows.render() is not None
        assert 'eldercare_ingest_batch_rows_sum{lane="telemetry"} 240' in ingest.metrics.render()
    gateway.close()


def test_a_lone_frame_waits_for_company_at_most_the_maximum_and_alarms_never_wait(
    stack: StackInfo, world: LoadWorld, db: str, run_ingest: Callable[..., Any]
) -> None:
    gateway = Gateway(stack, world)
    with run_ingest(ingest_batch_max_wait_ms=1500):
        gateway.send(gateway.frame(gateway.beds(1)))
        sent = time.monotonic()
        pressed = now_ms()
        gateway.send(gateway.frame([gateway.press(ts=pressed)]), alarm=True)
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM alarm_inbox a JOIN devices d ON d.id = a.device_id"
                           " WHERE d.code = %s", (world.gateways[0].button,)),
            timeout=10,
            what="the alarm",
        )  # fmt: skip
        alarm_after = time.monotonic() - sent
        assert stored_frames(db, world) == 1  # the alarm frame; the telemetry frame is still waiting
        assert alarm_after < 1.2
        wait_until(lambda: stored_frames(db, world) == 2, timeout=10, what="the telemetry frame")
        waited = time.monotonic() - sent
        assert waited >= 1.2  # it waited for more frames ...
        assert waited < 6  # ... but not for ever
    gateway.close()
