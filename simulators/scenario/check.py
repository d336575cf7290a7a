"""Did the platform notice what the scenario says it must? Alarms read through the API, as each home's head.

For every expectation and every injection it is for (by id or kind), an alarm of the expected kind must be
found on the same device (the gateway, for ``gateway_offline``; the elder, when the injection has no device),
raised after the injection's messages went out, and: within ``within_s`` real seconds of them (the platform's
delay), its event within ``within_sim`` simulated time of the injection (what the platform saw), and in the
expected ``state`` (an accidental press cancelled at the bedside, a gateway back online). Alarms keep coming
for a while after a run, so the check polls until every expectation is met or its time is up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from eldercare.simulators.errors import SimError
from eldercare.simulators.run.clock import iso, parse_duration
from eldercare.simulators.scenario import model as sm
from eldercare.simulators.scenario.resolve import origin
from eldercare.simulators.world.model import World

# Injection kinds as the scenario names them -> happening kinds in the ground truth.
_KIND = {"silence": "silent"}


@dataclass
class Verdict:
    expectation: int
    alarm_kind: str
    truth_line: int
    target: str
    ok: bool
    alarm_id: int | None = None
    latency_s: float | None = None  # raised - sent, real seconds
    sim_delay_s: float | None = None  # event - injection, simulated seconds
    state: str | None = None
    reason: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "MISS"
        measured = []
        if self.latency_s is not None:
            measured.append(f"raised {self.latency_s:.2f} s after its messages")
        if self.sim_delay_s is not None:
            measured.append(f"{self.sim_delay_s:.0f} s of simulated time after it happened")
        found = f"alarm {self.alarm_id} ({self.state}): " + ", ".join(measured) if self.alarm_id else self.reason
        about = f"expect[{self.expectation}] {self.alarm_kind} for truth line {self.truth_line} ({self.target})"
        return f"{mark} {about}: {found}"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def targets(scenario: sm.Scenario, truth: list[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    tag = origin(scenario)
    kind = _KIND.get(ref, ref)
    return [
        r
        for r in truth
        if r.get("origin") == tag
        and r.get("kind") not in ("registry", "run")
        and (r["detail"].get("id") == ref or r["kind"] == kind)
    ]


class Alarms:
    """The alarms of the world's homes raised since ``since_ms``, as their heads see them."""

    def __init__(self, world: World, base: str, since_ms: int) -> None:
        self.world = world
        self.base = base.rstrip("/")
        self.since = iso(since_ms)
        self._http = httpx.Client(timeout=30)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def _token(self, inst_key: str) -> str:
        if inst_key not in self._tokens:
            inst = self.world.institution(inst_key)
            head = inst.staff[0].username
            password = self.world.issued.institutions[inst_key].users[head][1]
            reply = self._http.post(f"{self.base}/api/v1/auth/login", json={"username": head, "password": password})
            if reply.status_code != 200:
                raise SimError(f"cannot log in as {head} to read alarms: {reply.status_code} {reply.text[:200]}")
            self._tokens[inst_key] = str(reply.json()["token"])
        return self._tokens[inst_key]

    def fetch(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for inst in self.world.plan.institutions:
            reply = self._http.get(
                f"{self.base}/api/v1/alarms",
                params={"since": self.since, "limit": 1000},
                headers={"Authorization": f"Bearer {self._token(inst.key)}"},
            )
            if reply.status_code != 200:
                raise SimError(f"GET /api/v1/alarms as the head of {inst.key}: {reply.status_code} {reply.text[:200]}")
            out.extend(reply.json())
        return out


def _judge(n: int, e: sm.Expect, record: dict[str, Any], alarms: list[dict[str, Any]]) -> Verdict:
    target = record.get("device") or record.get("gateway") or record.get("person") or "?"
    verdict = Verdict(n, e.alarm, int(record["n"]), str(target), ok=False, reason="no such alarm yet")
    sent = int(record.get("sent_ms", 0))
    for alarm in sorted(alarms, key=lambda a: a["raised_at"]):
        if alarm["kind"] != e.alarm or (e.priority is not None and alarm["priority"] != e.priority):
            continue
        if e.alarm == "gateway_offline":
            if alarm["detail"].get("gateway") != record.get("gateway"):
                continue
        elif record.get("device"):
            if alarm["device_code"] != record["device"]:
                continue
        elif alarm["person_code"] != record.get("person"):
            continue
        raised = _ms(alarm["raised_at"])
        if raised < sent - 2000:
            continue  # from before this injection
        verdict.alarm_id, verdict.state = int(alarm["id"]), str(alarm["state"])
        verdict.latency_s = round((raised - sent) / 1000, 3)
        verdict.sim_delay_s = round((_ms(alarm["occurred_at"]) - int(record["t"])) / 1000, 1)
        problems = []
        if e.within_s is not None and verdict.latency_s > e.within_s:
            problems.append(f"raised {verdict.latency_s:.1f} s after its messages (expected within {e.within_s:g} s)")
        if e.within_sim is not None and not -1 <= verdict.sim_delay_s <= parse_duration(e.within_sim) / 1000:
            problems.append(
                f"its event {verdict.sim_delay_s:.0f} s after the injection (expected within {e.within_sim})"
            )
        if e.state is not None and alarm["state"] != e.state:
            problems.append(f"state {alarm['state']} (expected {e.state})")
        verdict.ok = not problems
        verdict.reason = "; ".join(problems)
        if verdict.ok:
            return verdict
    return verdict


def check(
    scenario: sm.Scenario, world: World, truth: list[dict[str, Any]], *, base: str, wait_s: float | None = None
) -> list[Verdict]:
    """Judge every expectation against the platform's alarms, waiting up to ``wait_s`` (default: the largest
    ``within_s`` plus 15 s) for late ones."""
    jobs = [(n, e, r) for n, e in enumerate(scenario.expect) for r in targets(scenario, truth, e.for_)]
    if not jobs:
        return []
    since = min(int(r.get("sent_ms", r["t"])) for _, _, r in jobs) - 60_000
    wait = wait_s if wait_s is not None else max((e.within_s or 0) for _, e, _ in jobs) + 15
    alarms = Alarms(world, base, since)
    deadline = time.monotonic() + wait
    try:
        while True:
            current = alarms.fetch()
            verdicts = [_judge(n, e, r, current) for n, e, r in jobs]
            if all(v.ok for v in verdicts) or time.monotonic() > deadline:
                return verdicts
            time.sleep(1.0)
    finally:
        alarms.close()
