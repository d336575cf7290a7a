"""Local autonomy: alarms reach the nurse station in the home whether or not the platform can be reached.

Every alarm-lane message the gateway stores (button, fall, SOS, bed exit, environment alarm, device fault)
goes, once it is on disk, to:

- the local alarm page and its server-sent event stream (``GET /`` and ``GET /events`` on the local port),
  which show the newest alarms and whether the uplink is up;
- the configured local command (a buzzer, a nurse-call relay), run once per alarm with the alarm as one
  JSON object on its standard input, always or only while the uplink is down (``local.command_on``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any, Final

from eldercare.devices import messages as m
from eldercare.gateway.config import LocalConfig
from eldercare.gateway.stats import Stats

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE: Final = 256
MAX_COMMANDS: Final = 4  # at most this many local commands at once; more wait their turn


def alarm_json(message: m.DeviceMessage, *, institution: str, gateway: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(m.encode(message))
    document.update(institution=institution, gateway=gateway)
    return document


class AlarmHub:
    def __init__(self, config: LocalConfig, *, institution: str, gateway: str, stats: Stats) -> None:
        self._config = config
        self._institution = institution
        self._gateway = gateway
        self._stats = stats
        self.recent: deque[dict[str, Any]] = deque(maxlen=config.keep_alarms)
        self._subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self.uplink_up = False
        self._commands = asyncio.Semaphore(MAX_COMMANDS)
        self._tasks: set[asyncio.Task[None]] = set()
        self.commands_run = 0
        self.commands_failed = 0

    # --- fan-out ---------------------------------------------------------------------------------

    def publish(self, alarms: list[m.DeviceMessage]) -> None:
        for message in alarms:
            document = alarm_json(message, institution=self._institution, gateway=self._gateway)
            self.recent.appendleft(document)
            self._broadcast("alarm", document)
            if self._config.command and (self._config.command_on == "always" or not self.uplink_up):
                task = asyncio.create_task(self._run_command(document), name=f"local-command-{message.dev}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def set_uplink(self, up: bool) -> None:
        if up != self.uplink_up:
            self.uplink_up = up
            self._broadcast("uplink", {"up": up})

    def _broadcast(self, event: str, document: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= SUBSCRIBER_QUEUE:  # a client that does not read: drop it; it reconnects
                self._subscribers.discard(queue)
                queue.put_nowait(("close", {}))  # the one slot kept free for this (see subscribe)
            else:
                queue.put_nowait((event, document))

    def subscribe(self) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        # One slot kept free for the "close" marker of a client that falls behind.
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(SUBSCRIBER_QUEUE + 1)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._subscribers.discard(queue)

    # --- the local command -------------------------------------------------------------------------

    async def _run_command(self, document: dict[str, Any]) -> None:
        async with self._commands:
            command = self._config.command
            try:
                process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                self.commands_failed += 1
                self._stats.error(f"local command {command[0]!r} cannot start: {exc}")
                return
            try:
                async with asyncio.timeout(self._config.command_timeout_s):
                    _, stderr = await process.communicate(json.dumps(document, ensure_ascii=False).encode() + b"\n")
            except TimeoutError:
                process.kill()
                await process.wait()
                self.commands_failed += 1
                self._stats.error(f"local command {command[0]!r} did not finish in {self._config.command_timeout_s} s")
                return
            self.commands_run += 1
            if process.returncode != 0:
                self.commands_failed += 1
                tail = stderr.decode(errors="replace").strip()[-200:]
                self._stats.error(f"local command {command[0]!r} exited with {process.returncode}: {tail}")

    async def drain(self) -> None:
        """Wait for the local commands still running (at shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._config.command_timeout_s)
