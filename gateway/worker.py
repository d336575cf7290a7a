"""The store's thread and group commit, for the asyncio side of the gateway.

A thread, not the loop: every commit waits for an fsync (``synchronous=FULL``), which takes milliseconds
on a good disk and far longer on the SD cards gateways often run from; on the loop that wait would hold
up alarms, the local page and MQTT keep-alives. ``bench/gateway_load.py`` prints the commit times.

Group commit: deliveries that arrive while a commit is running wait for the next one, which takes them
all in one transaction (one fsync), so the fsync rate does not limit the message rate. Acknowledgements
of frames (PUBACKs) ride along in the same transactions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from eldercare.gateway.errors import StoreError
from eldercare.gateway.store import Batch, Store, Stored, StoreFullError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class CommitStats:
    commits: int = 0
    batches: int = 0
    seconds: float = 0.0
    max_seconds: float = 0.0


class StoreWorker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.stats = CommitStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-store")
        self._pending: list[tuple[Batch, asyncio.Future[Stored]]] = []
        self._acked: list[int] = []
        self._wake = asyncio.Event()
        self._stopping = False

    def submit(self, batch: Batch) -> asyncio.Future[Stored]:
        """Queue ``batch`` for the next commit; the future completes when it is on disk."""
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        if self._stopping:
            future.set_exception(StoreError(self.store.path, "the gateway is stopping"))
        else:
            self._pending.append((batch, future))
            self._wake.set()
        return future

    def ack(self, seq: int) -> None:
        """The broker has frame ``seq``: forget it (in the next commit)."""
        self._acked.append(seq)
        self._wake.set()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store's thread (between commits)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def run(self) -> None:
        """Commit until :meth:`stop`; what was submitted before ``stop`` is committed first."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush()
                if self._stopping:
                    return
        finally:
            self._executor.shutdown(wait=True)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _flush(self) -> None:
        one_by_one = False  # after StoreFullError: an alarm alone may still fit where a group did not
        while self._pending or self._acked:
            take = 1 if one_by_one else len(self._pending)
            pending, self._pending = self._pending[:take], self._pending[take:]
            acked, self._acked = self._acked, []
            batches = [b for b, _ in pending]
            try:
                results = await self.call(partial(self._timed, batches, acked))
            except StoreFullError as exc:
                if acked:  # deleting frames needs no room; do not lose the acknowledgements
                    await self.call(partial(self.store.commit, [], acked=acked))
                if len(pending) > 1:
                    self._pending[:0] = pending
                    one_by_one = True
                    continue
                _fail(pending, exc)
                continue
            except StoreError as exc:
                log.exception("store failed")
                self._acked[:0] = acked
                _fail(pending, exc)
                return
            for (_, future), result in zip(pending, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _timed(self, batches: list[Batch], acked: list[int]) -> list[Stored]:
        started = time.perf_counter()
        results = self.store.commit(batches, acked=acked)
        elapsed = time.perf_counter() - started
        self.stats.commits += 1
        self.stats.batches += len(batches)
        self.stats.seconds += elapsed
        self.stats.max_seconds = max(self.stats.max_seconds, elapsed)
        return results


def _fail(pending: list[tuple[Batch, asyncio.Future[Stored]]], exc: Exception) -> None:
    for _, future in pending:
        if not future.done():
            future.set_exception(exc)
