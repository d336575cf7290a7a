"""Local autonomy: alarms reach the nurse station in the home whether or not the platform can be reached.

Every alarm-lane message the gateway takes in (button, fall, SOS, bed exit, environment alarm, device fault)
goes, once it is on disk, to:

- the local alarm page and its server-sent event stream (``GET /`` and ``GET /events`` on the local port),
  which show the newest alarms and whether the uplink is up;
- the configured local command (a buzzer, a nurse-call relay), run once per alarm with the alarm as one
  JSON object on its standard input, always or only while the uplink is down (``local.command_on``). At most
  :data:`MAX_COMMANDS` run at once, one of them kept for emergencies; the alarms waiting for one go by
  :func:`command_priority`, so a press never waits behind a backlog of low batteries, nor for relays hung on them.
  An emergency that finds every slot taken runs at once anyway, over the slots (up to :data:`EMERGENCIES_OVER` at
  a time): it never waits for a command to end (see :class:`CommandSlots`). Each command is killed, with what it
  started, :attr:`LocalConfig.command_timeout_s` after it started; at shutdown each command running is given that
  time of its own (:meth:`AlarmHub.drain`).

An alarm the store cannot take at once goes there too, before it is on disk: when the store refuses it (full of
alarms after a long outage, or its disk failing), and when its commit has not finished within
:data:`eldercare.gateway.pipeline.UNSTORED_AFTER_S` (a disk that hangs). The device keeps it and sends it again
until the store takes it; the nurse station must not wait for that. So the hub shows each alarm once, whichever
way it comes first: by its bytes (the same alarm sent again is the same message), and, while it is not stored yet,
by the delivery it came in (a device that sends again a payload with no time of its own gets the time of receipt,
so its message's bytes differ each time; see :class:`LocalAlarm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
import signal
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from eldercare.devices import messages as m
from eldercare.gateway.config import LocalConfig
from eldercare.gateway.stats import Stats

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE: Final = 256
MAX_COMMANDS: Final = 4  # at most this many local commands at once; more wait their turn
EMERGENCY_SLOTS: Final = 1  # of those, kept for emergencies (see CommandSlots)
EMERGENCIES_OVER: Final = 16  # emergencies that may run at once over the slots, when every slot is taken
KILL_WAIT_S: Final = 5.0  # a command killed at its timeout: how long to wait for it to go (one stuck in the kernel)
SHOWN_KEYS: Final = 4096  # alarms remembered as shown, by their bytes, and unstored ones by their delivery


@dataclass(frozen=True, slots=True)
class LocalAlarm:
    """An alarm to show, and what tells it apart from the same alarm sent again.

    ``origin`` names the delivery and the alarm's place in it (a digest of source, topic, payload and position),
    for an alarm a device sent; the gateway's own (a detected fall, a fault) have none. It matters only while the
    alarm is not stored: a device's button with no clock sends the same payload for every press, so once the alarm
    is stored, the same origin is a new press.
    """

    message: m.DeviceMessage
    body: bytes  # the message as stored (``devices.messages.encode``)
    origin: bytes | None = None


class CommandPriority(IntEnum):
    """Which waiting alarm gets the next free slot of the local command: the lowest first."""

    EMERGENCY = 0  # a person in danger: button, SOS, fall, smoke, gas
    URGENT = 1  # bed exit, water leak
    TECHNICAL = 2  # device faults: offline, low battery, sensor error, tamper


def command_priority(message: m.DeviceMessage) -> CommandPriority:
    """The priority of ``message``'s local command, by its type (and an environment alarm's kind).

    Never by whether it raises or clears (a cancel key, a sensor back to normal, a fault cleared): a clearing
    waits in the same queue as what it clears, so it never runs before it (or a relay would ring on). The
    platform's default rules agree: buttons, SOS, falls and environment alarms are emergencies, faults technical;
    a water leak is an emergency there, and only urgent here, behind a person in danger.
    """
    match message:
        case m.Button() | m.Sos() | m.Fall():
            return CommandPriority.EMERGENCY
        case m.EnvAlarm(kind="smoke" | "gas"):
            return CommandPriority.EMERGENCY
        case m.DeviceFault():
            return CommandPriority.TECHNICAL
        case _:
            return CommandPriority.URGENT


class CommandSlots:
    """At most ``n`` holders at a time. A free slot goes to the waiter of the lowest priority number, and among
    those to the one that came first (an :class:`asyncio.Semaphore` serves in arrival order only: four slots held
    by slow relays and a backlog of faults queued before a press made the press wait for all of them).

    ``reserved`` slots are kept for emergencies: what is not one waits while only those are free. Ordering alone
    lets a press wait for a running command: four relays hung on low batteries held it up to the timeout.

    ``over``: an emergency that finds no slot free does not wait either (the slot kept for it may be taken by an
    emergency before it, hung): it runs over the slots, up to ``over`` of them at once. Only past that does it wait,
    first in line. Pre-empting a command instead (killing the lowest one running) would cut a relay off mid-ring
    and need it run again; a few commands more at once cost nothing that matters."""

    def __init__(self, n: int, *, reserved: int = 0, over: int = 0) -> None:
        assert 0 <= reserved < n
        assert over >= 0
        self._free = n
        self._reserved = reserved
        self._over = over  # emergencies that may still run over the slots
        self._waiting: list[tuple[int, int, asyncio.Future[bool]]] = []  # a heap: (priority, arrival, future)
        self._arrivals = itertools.count()

    def _may_take(self, priority: int) -> bool:
        return self._free > (0 if priority == CommandPriority.EMERGENCY else self._reserved)

    def _may_go_over(self, priority: int) -> bool:
        return priority == CommandPriority.EMERGENCY and self._over > 0

    @contextlib.asynccontextmanager
    async def held(self, priority: int) -> AsyncIterator[None]:
        over = await self._acquire(priority)
        try:
            yield
        finally:
            self._release(over=over)

    async def _acquire(self, priority: int) -> bool:
        """Wait for a slot (False) or for leave to run over them (True)."""
        if self._may_take(priority):  # then nobody waits who may: a release hands its slot to a waiter directly
            self._free -= 1
            return False
        if self._may_go_over(priority):
            self._over -= 1
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), future))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # handed a slot (or leave) just as it was cancelled: pass it on, or it is lost for good
                self._release(over=future.result())
            raise  # (a cancelled waiter's entry stays in the heap and is passed over)

    def _release(self, *, over: bool) -> None:
        if over:
            self._over += 1
        else:
            self._free += 1
        while self._waiting:
            priority, _, future = self._waiting[0]
            if future.done():  # cancelled while waiting: passed over
                heapq.heappop(self._waiting)
            elif self._may_take(priority):  # the best waiter may not: nobody may
                heapq.heappop(self._waiting)
                self._free -= 1
                future.set_result(False)
                return
            elif self._may_go_over(priority):
                heapq.heappop(self._waiting)
                self._over -= 1
                future.set_result(True)
                return
            else:
                return


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
        self._shown: OrderedDict[bytes, None] = OrderedDict()  # bodies of the alarms shown, oldest first
        self._unstored: OrderedDict[bytes, None] = OrderedDict()  # origins of those shown before they were stored
        self._subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self.uplink_up = False
        self._commands = CommandSlots(MAX_COMMANDS, reserved=EMERGENCY_SLOTS, over=EMERGENCIES_OVER)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], CommandPriority] = {}  # commands not started yet (no slot yet)
        self.commands_run = 0
        self.commands_failed = 0

    # --- fan-out ---------------------------------------------------------------------------------

    def publish(self, alarms: Sequence[LocalAlarm], *, stored: bool = True) -> int:
        """Show ``alarms`` that were not shown yet; how many were. ``stored`` false: they are not on disk (yet)."""
        shown = 0
        for alarm in alarms:
            if not self._first_time(alarm, stored=stored):
                continue
            shown += 1
            message = alarm.message
            document = alarm_json(message, institution=self._institution, gateway=self._gateway)
            self.recent.appendleft(document)
            self._broadcast("alarm", document)
            if self._config.command and (self._config.command_on == "always" or not self.uplink_up):
                priority = command_priority(message)
                task = asyncio.create_task(self._run_command(document, priority), name=f"local-command-{message.dev}")
                self._tasks.add(task)
                self._waiting[task] = priority
                task.add_done_callback(self._forget_task)
        return shown

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._waiting.pop(task, None)

    def _first_time(self, alarm: LocalAlarm, *, stored: bool) -> bool:
        """Whether ``alarm`` is to be shown; remembers it (see the module's text)."""
        origin = alarm.origin
        if origin is not None and origin in self._unstored:
            if stored:  # it is on disk now: the next alarm from the same payload is a new one
                del self._unstored[origin]
            return False
        if alarm.body in self._shown:
            self._shown.move_to_end(alarm.body)
            return False
        _remember(self._shown, alarm.body)
        if origin is not None and not stored:
            _remember(self._unstored, origin)
        return True

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

    async def _run_command(self, document: dict[str, Any], priority: CommandPriority) -> None:
        async with self._commands.held(priority):
            if (task := asyncio.current_task()) is not None:
                self._waiting.pop(task, None)  # started: drain gives it its time
            command = self._config.command
            try:
                process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,  # its own process group: a timeout kills what it started too
                )
            except OSError as exc:
                self.commands_failed += 1
                self._stats.error(f"local command {command[0]!r} cannot start: {exc}")
                return
            try:
                async with asyncio.timeout(self._config.command_timeout_s):
                    _, stderr = await process.communicate(json.dumps(document, ensure_ascii=False).encode() + b"\n")
            except TimeoutError:
                # The whole group: a child left holding the pipes (a shell's "sleep") would keep the slot, and
                # with four slots hung the nurse call would ring no more.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):  # (stuck in the kernel: its slot is freed all the same)
                    async with asyncio.timeout(KILL_WAIT_S):
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
        """At shutdown: let every local command running end, each in its own time.

        Each ends by itself at the latest ``command_timeout_s`` after it started (then it is killed, and given
        :data:`KILL_WAIT_S` to go), so this waits for each to end, with no deadline of its own. (It waited
        ``command_timeout_s`` in all: a command that started during that time, in a slot another freed, was cut
        short, and those still waiting were left to be cancelled with the event loop.) Commands still waiting for a
        slot are not started, except emergencies: they wait only past :data:`EMERGENCIES_OVER` running at once,
        never behind other commands (see :class:`CommandSlots`), and a press must ring.
        The others waiting (faults, bed exits behind relays that hang) are counted as failed and said: run one
        after the other, each up to its timeout, they could hold the stop for minutes, and with it the store's
        close (a store in memory is written back to its disk then)."""
        left = [task for task, priority in self._waiting.items() if priority != CommandPriority.EMERGENCY]
        for task in left:
            task.cancel()
        if left:
            self.commands_failed += len(left)
            self._stats.error(f"local command: the gateway is stopping; {len(left)} alarm(s) waiting were not run")
        while self._tasks:
            await asyncio.wait(list(self._tasks))


def _remember(keys: OrderedDict[bytes, None], key: bytes) -> None:
    keys[key] = None
    if len(keys) > SHOWN_KEYS:
        keys.popitem(last=False)
