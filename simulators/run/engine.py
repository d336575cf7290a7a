"""The run loop: move simulated time on, let every device speak, inject what happens, write it down.

Each turn takes the stretch of simulated time from where the run is to where the clock says it should be
(at most ``MAX_STEP``), asks the devices what they said in it, hands that to the transport (direct or through
gateways), cuts and restores uplinks whose outage starts or ends in it, does the registry actions that fall
in it, and writes the ground truth of what started in it. Every few seconds (real) the truth is flushed and
the state saved; a stop request ends the turn, saves, and leaves a run that ``--resume`` continues.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eldercare.simulators.errors import SimError
from eldercare.simulators.run import state as run_state
from eldercare.simulators.run.clock import MINUTE, SimClock, format_duration, iso, real_ms
from eldercare.simulators.run.devices import Devices, Said
from eldercare.simulators.run.incidents import FOREVER, Happening, Incidents
from eldercare.simulators.run.registry import Registrar
from eldercare.simulators.run.scene import Scene
from eldercare.simulators.run.state import RunState
from eldercare.simulators.run.truth import Truth

log = logging.getLogger(__name__)
TURN_S = 0.2  # real seconds between turns when paced
MAX_STEP = 5 * MINUTE  # simulated time per turn at most
SAVE_EVERY_S = 2.0
BACKLOG_LIMIT = 20_000  # messages in flight before a free-running clock waits


class Transport(Protocol):
    name: str

    def start(self) -> None: ...
    def deliver(self, said: list[Said]) -> None: ...
    def tick(self, sim_now: int) -> None: ...
    def cut(self, gateway: str) -> None: ...
    def restore(self, gateway: str) -> None: ...
    def backlog(self) -> int: ...
    def close(self) -> None: ...


@dataclass
class Outcome:
    position_ms: int
    finished: bool
    messages: int
    happenings: int


class Engine:
    def __init__(
        self,
        *,
        scene: Scene,
        state: RunState,
        state_path: Path,
        transport: Transport,
        incidents: Incidents,
        devices: Devices,
        truth: Truth,
        registrar: Registrar | None,
        stop: threading.Event,
        progress: Callable[[str], None] | None = None,
        progress_s: float = 10.0,
        on_truth: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.scene = scene
        self.state = state
        self.state_path = state_path
        self.transport = transport
        self.incidents = incidents
        self.devices = devices
        self.truth = truth
        self.registrar = registrar
        self.stop = stop
        self.progress = progress
        self.progress_s = progress_s
        self.on_truth = on_truth
        self.happenings = 0

    # --- the loop ------------------------------------------------------------------------------------

    def run(self, *, first_records: list[dict[str, Any]] | None = None) -> Outcome:
        st = self.state
        resumed = st.position_ms > st.start_ms or st.truth_lines > 0
        self._record({"kind": "run", "event": "resume" if resumed else "start", "t": st.position_ms, **self._about()})
        for record in first_records or []:
            self._record(record)
        try:
            self.transport.start()
            self._setup()
            for gateway in self._outages_at(st.position_ms):
                self.transport.cut(gateway)
            self._loop()
        finally:
            finished = st.end_ms is not None and st.position_ms >= st.end_ms
            self._record({"kind": "run", "event": "end" if finished else "stop", "t": st.position_ms})
            st.finished = finished
            self.transport.close()
            self._save()
        return Outcome(st.position_ms, st.finished, st.messages, self.happenings)

    def _about(self) -> dict[str, Any]:
        st = self.state
        return {
            "detail": {
                "world": st.world,
                "scenario": st.scenario,
                "via": st.via,
                "speed": st.speed if st.speed is not None else "max",
                "incidents": st.incidents,
                "start": iso(st.start_ms),
                "end": iso(st.end_ms) if st.end_ms is not None else None,
                "seed": self.scene.seed,
            }
        }

    def _loop(self) -> None:
        st = self.state
        clock = SimClock(sim_ms=st.position_ms, speed=st.speed)
        last_save = last_progress = time.monotonic()
        while not self.stop.is_set() and (st.end_ms is None or st.position_ms < st.end_ms):
            if st.speed is None:
                if self.transport.backlog() > BACKLOG_LIMIT:
                    time.sleep(0.05)
                    continue
                target = st.position_ms + MAX_STEP
            else:
                target = min(clock.now(), st.position_ms + MAX_STEP)
            if st.end_ms is not None:
                target = min(target, st.end_ms)
            if target <= st.position_ms:
                self.transport.tick(st.position_ms)
                time.sleep(TURN_S)
                continue
            self._turn(st.position_ms, target)
            st.position_ms = target
            clock.advance(target)
            now = time.monotonic()
            if now - last_save >= SAVE_EVERY_S:
                self._save()
                last_save = now
            if self.progress is not None and now - last_progress >= self.progress_s:
                self.progress(self._progress_line())
                last_progress = now
            if st.speed is not None:
                time.sleep(max(0.0, TURN_S - (time.monotonic() - now)))

    def _turn(self, begin: int, end: int) -> None:
        started = self.incidents.started(begin, end)
        ended = [h for h in self.incidents.between(begin, end) if h.until is not None and begin <= h.until < end]
        for h in started:
            if h.kind == "outage" and h.gateway is not None:
                self.transport.cut(h.gateway)
        said, notes = self.devices.window(begin, end)
        if self.state.settle and end == self.state.end_ms:
            said.extend(self.devices.owed(end))  # later than the window: after what it sent
        self.transport.deliver(said)
        self.transport.tick(end)
        sent = real_ms()
        self.state.messages += len(said)
        for h in ended:
            if h.kind == "outage" and h.gateway is not None:
                self.transport.restore(h.gateway)
        for h in started:
            self._record(self._happening(h, sent))
        for note in notes:
            record: dict[str, Any] = {"kind": note.kind, "t": note.t, "origin": "life" if note.person else "device"}
            if note.until is not None:
                record["until"] = note.until
            codes = self.scene.codes(device=note.device, person=note.person)
            self._record({**record, **codes, "detail": note.detail, "sent_ms": sent})
        self._registry(begin, end)

    # --- registry actions ----------------------------------------------------------------------------

    def _setup(self) -> None:
        """Registrations a scenario makes before its days begin (a person registered twice, a ghost)."""
        for h in self.incidents.scripted:
            if h.kind in ("twin", "ghost"):
                key = f"{h.kind}:{h.person or h.detail.get('name')}:{h.detail.get('home')}"
                if key not in self.state.done:
                    self._record(self._happening(h, real_ms()))
                self._act(key, h, "register")

    def _registry(self, begin: int, end: int) -> None:
        for h in self.incidents.scripted:
            if h.kind == "hospital":
                if begin <= h.t < end:
                    self._act(f"hospital:{h.person}:{h.t}", h, "hospital_start")
                if h.until is not None and begin <= h.until < end:
                    stay = self.state.done.get(f"hospital:{h.person}:{h.t}", 0)
                    self._act(f"hospital-end:{h.person}:{h.t}", h, "hospital_end", stay)
            elif h.kind == "death":
                when = int(h.detail.get("recorded_at", h.t))
                if begin <= when < end and h.detail.get("recorded", True):
                    self._act(f"death:{h.person}", h, "death")

    def _registrar(self) -> Registrar:
        if self.registrar is None:
            raise SimError(
                "this run changes the registry (a scenario's hospital stay, death or registration): give --api"
            )
        return self.registrar

    def _act(self, key: str, h: Happening, action: str, stay: int = 0) -> None:
        """Do a registry action once (its key is kept in the state) and write down what the platform said."""
        if key in self.state.done:
            return
        registrar = self._registrar()
        match action:
            case "register":
                result = registrar.register(h)
            case "hospital_start":
                result = registrar.hospital_start(h)
            case "hospital_end":
                result = registrar.hospital_end(h, stay)
            case _:
                result = registrar.death(h)
        self.state.done[key] = int(result.get("stay_id", 0))
        codes = self.scene.codes(person=h.person, device=h.device)
        about = {k: h.detail[k] for k in ("id",) if k in h.detail}
        self._record(
            {
                "kind": "registry",
                "t": self.state.position_ms,
                "action": key.split(":", maxsplit=1)[0],
                "origin": h.origin,
                **codes,
                "detail": {**about, **result},
            }
        )
        self._save()

    # --- records and state ---------------------------------------------------------------------------

    def _happening(self, h: Happening, sent: int) -> dict[str, Any]:
        self.happenings += 1
        codes = self.scene.codes(person=h.person, device=h.device)
        if "institution" not in codes:  # about a home, not one of its elders or devices (an outage, a ghost)
            inst = self.scene.institution(h.institution)
            codes |= {"institution": inst.code, "gateway": inst.gateway_id}
        record: dict[str, Any] = {"kind": h.kind, "t": h.t, "origin": h.origin, **codes, "detail": h.detail}
        if h.until is not None and h.until < FOREVER:
            record["until"] = h.until
        record["sent_ms"] = sent  # when its first messages (or its cut, for an outage) went out
        return record

    def _record(self, record: dict[str, Any]) -> None:
        line = self.truth.write(record)
        if self.on_truth is not None:
            self.on_truth(line)

    def _save(self) -> None:
        self.truth.flush()
        self.state.truth_lines = self.truth.lines
        run_state.save(self.state, self.state_path)

    def _outages_at(self, t: int) -> list[str]:
        return [
            h.gateway
            for h in self.incidents.between(t, t + 1)
            if h.kind == "outage" and h.gateway and h.t < t < (h.until or t)
        ]

    def _progress_line(self) -> str:
        st = self.state
        done = st.position_ms - st.start_ms
        total = "" if st.end_ms is None else f" of {format_duration(st.end_ms - st.start_ms)}"
        share = "" if st.end_ms is None else f" ({100 * done / max(1, st.end_ms - st.start_ms):.0f} %)"
        return (
            f"sim {iso(st.position_ms)[:19]}: {format_duration(done)}{total}{share}, {st.messages} messages,"
            f" {self.happenings} happenings, backlog {self.transport.backlog()}"
        )
