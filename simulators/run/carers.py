"""The homes' staff on duty in a live run (``eldercare demo``): they answer alarms and walk night rounds
through the API, in real time, as the carer the platform's roster has on shift.

Each home has a :class:`Diligence`: how soon its carers acknowledge an alarm on the board, walk to the
bedside and close it, and how many of the night's rounds they walk. The demo gives its homes different ones
(:data:`DILIGENCE`, home by home in turn), so that the regulator's figures tell them apart: the first answers
well within the 60 s target, the last misses it and half its rounds.

The platform stamps every action with its own clock (an acknowledgement or a round cannot be dated back), so
carers act only in a run at real speed, and a month lived at full speed has no staff.

Per alarm: acknowledge; then, for an alarm about a person, go to the bedside and close it unless the device
closed it first (a press cancelled at the bedside, a resident back in bed). At the bedside the carer sees what
happened: a fall alarm with no fall in the run's ground truth (a detector fooled by sitting down hard, say) is
closed as a false alarm, anything else as a real event. A device's fault is
acknowledged and left for the device to clear: a carer cannot change a simulated battery. Night rounds: three
a night (about 22:30, 01:30 and 04:30), each a round of every floor of a residential home, logged by the carer
on the night shift.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from eldercare.simulators.world.model import InstitutionPlan, StaffPlan, World

LOCAL = ZoneInfo("Asia/Shanghai")
ROUNDS_AT = (time(22, 30), time(1, 30), time(4, 30))  # local; the last two belong to the night before
ROUND_JITTER_S = 15 * 60
SPREAD = 0.5  # the lognormal's sigma: half of the draws within about 0.7-1.4 times the median
CLIP = (0.3, 2.5)  # draws are kept between these multiples of the median


@dataclass(frozen=True, slots=True)
class Diligence:
    ack_s: float  # median seconds from an alarm on the board to acknowledging it
    walk_s: float  # median seconds from acknowledging to being at the bedside
    care_s: float  # median seconds at the bedside before closing the alarm
    rounds_kept: float  # share of the night's rounds walked


DILIGENCE = (
    Diligence(ack_s=12, walk_s=40, care_s=120, rounds_kept=1.0),
    Diligence(ack_s=30, walk_s=90, care_s=180, rounds_kept=0.9),
    Diligence(ack_s=75, walk_s=240, care_s=240, rounds_kept=0.5),
)


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # seconds since the epoch
    action: str  # acknowledge | attend | resolve


def draw(rng: random.Random, median: float) -> float:
    low, high = CLIP
    return min(high * median, max(low * median, median * math.exp(rng.gauss(0, SPREAD))))


def steps(alarm: dict[str, Any], diligence: Diligence, rng: random.Random, seen: float) -> list[Step]:
    """What the carer does about an alarm first seen at ``seen``, from the state it is in."""
    out: list[Step] = []
    at = seen
    if alarm["state"] == "raised":
        at += draw(rng, diligence.ack_s)
        out.append(Step(at, "acknowledge"))
    if alarm["priority"] == "technical":
        return out
    if alarm["state"] in ("raised", "acknowledged"):
        at += draw(rng, diligence.walk_s)
        out.append(Step(at, "attend"))
    out.append(Step(at + draw(rng, diligence.care_s), "resolve"))
    return out


def on_duty(home: InstitutionPlan, moment: datetime) -> StaffPlan:
    """The carer the roster has on shift (tier 1) at ``moment``, as the platform reads the roster (the weekday
    is the local moment's); the head when no carer is."""
    local = moment.astimezone(LOCAL)
    now, weekday = local.time().replace(tzinfo=None), local.isoweekday()
    for person in home.staff:
        for shift in person.shifts:
            if shift.tier == 1 and weekday in shift.weekdays and _within(now, shift.starts, shift.ends):
                return person
    return home.staff[0]


def _within(t: time, starts: str, ends: str) -> bool:
    a, b = time.fromisoformat(starts), time.fromisoformat(ends)
    if a == b:
        return True
    return a <= t < b if a < b else t >= a or t < b


def round_times(night: date, rng: random.Random) -> list[datetime]:
    """The night's rounds (``night`` is the date the night began on), each moved by up to 15 minutes."""
    out = []
    for at in ROUNDS_AT:
        day = night if at.hour >= 12 else night + timedelta(days=1)
        planned = datetime.combine(day, at, LOCAL)
        out.append(planned + timedelta(seconds=rng.uniform(-ROUND_JITTER_S, ROUND_JITTER_S)))
    return out


FALL_BEFORE_S = 600.0  # a fall in the truth this long before an alarm's event time can be the one it reports
FALL_AFTER_S = 60.0


def outcome(alarm: dict[str, Any], falls: dict[str, list[float]]) -> tuple[str, str]:
    """How the carer closes ``alarm``: its outcome and note. ``falls``: the fall times (epoch seconds) of the
    run's ground truth by person and by device code."""
    if alarm["kind"] != "fall":
        return "real_event", "演示：值班护理员处理"
    at = datetime.fromisoformat(alarm["occurred_at"]).timestamp()
    keys = [k for k in (alarm.get("person_code"), alarm.get("device_code")) if k]
    if any(at - FALL_BEFORE_S <= t <= at + FALL_AFTER_S for k in keys for t in falls.get(k, [])):
        return "real_event", "演示：确认跌倒，已处置"
    return "false_alarm", "演示：误报，老人未跌倒"


@dataclass(slots=True)
class Home:
    plan: InstitutionPlan
    id: int
    passwords: dict[str, str]
    diligence: Diligence
    floors: list[tuple[int, str]] | None = None  # (id, "1号楼 3层"); read at the first round
    rounds: list[datetime] = field(default_factory=list)  # the rounds still to walk
    planned: dict[int, list[Step]] = field(default_factory=dict)  # alarm id -> steps still to take


class Carers:
    """Runs until ``stop``: every second, each home's carer on duty reads the home's open alarms and takes the
    steps that are due. ``say`` gets one line per action."""

    def __init__(
        self,
        base: str,
        world: World,
        *,
        say: Callable[[str], None],
        seed: int,
        diligence: tuple[Diligence, ...] = DILIGENCE,
        stop: threading.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(LOCAL),
    ) -> None:
        self.base = base
        self.say = say
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not secrets
        self.clock = clock
        self.stop = stop
        self.tokens: dict[str, str] = {}
        self.falls: dict[str, list[float]] = {}  # the ground truth's falls, by person and device code
        self._falls_lock = threading.Lock()
        self.homes = [
            Home(
                plan=plan,
                id=world.issued.institutions[plan.key].id,
                passwords={u: p for u, (_, p) in world.issued.institutions[plan.key].users.items()},
                diligence=diligence[i % len(diligence)],
            )
            for i, plan in enumerate(world.plan.institutions)
        ]
        now = clock()
        for home in self.homes:
            if home.plan.kind == "residential_home":
                night = (now - timedelta(hours=12)).date()  # the night that began before now, and the next one
                home.rounds = [t for n in (night, night + timedelta(days=1)) for t in round_times(n, self.rng)]
                home.rounds = [t for t in home.rounds if t > now]

    def on_truth(self, line: dict[str, Any]) -> None:
        """A line of the run's ground truth (called from the run's thread): the falls are kept, for the bedside."""
        if line.get("kind") != "fall":
            return
        with self._falls_lock:
            for key in (line.get("person"), line.get("device")):
                if key:
                    self.falls.setdefault(str(key), []).append(int(line["t"]) / 1000)

    def run(self) -> None:
        with httpx.Client(base_url=self.base + "/api/v1", timeout=10) as http:
            while not self.stop.wait(1.0):
                for home in self.homes:
                    try:
                        self.tick(http, home)
                    except (httpx.HTTPError, KeyError, ValueError) as exc:  # the next tick tries again
                        self.say(f"  .. {home.plan.key}: the carer could not reach the platform ({exc})")

    def tick(self, http: httpx.Client, home: Home) -> None:
        now = self.clock()
        carer = on_duty(home.plan, now)
        open_alarms = {a["id"]: a for a in self._call(http, carer, "GET", "/alarms?open=true")}
        for gone in set(home.planned) - set(open_alarms):
            del home.planned[gone]  # closed by its device, or by a person on the board
        stamp = now.timestamp()
        for alarm_id, alarm in sorted(open_alarms.items()):
            if alarm_id not in home.planned and alarm["institution_code"] == home.plan.code:
                home.planned[alarm_id] = steps(alarm, home.diligence, self.rng, stamp)
            todo = home.planned.get(alarm_id, [])
            while todo and todo[0].at <= stamp:
                if not self._act(http, carer, alarm, todo.pop(0).action):
                    del home.planned[alarm_id]  # someone else moved it on: planned afresh at the next tick
                    break
        if home.rounds and home.rounds[0] <= now:
            home.rounds.pop(0)
            if not home.rounds:
                night = (now - timedelta(hours=6)).date() + timedelta(days=1)
                home.rounds = round_times(night, self.rng)
            if self.rng.random() < home.diligence.rounds_kept:
                self._round(http, home, carer)

    def _act(self, http: httpx.Client, carer: StaffPlan, alarm: dict[str, Any], action: str) -> bool:
        body: dict[str, Any] = {}
        if action == "resolve":
            with self._falls_lock:
                result, note = outcome(alarm, self.falls)
            body = {"outcome": result, "note": note}
        reply = self._request(http, carer, "POST", f"/alarms/{alarm['id']}/{action}", body)
        if reply.status_code in (404, 409):
            return False
        _check(reply)
        raised = datetime.fromisoformat(alarm["raised_at"])
        after = (datetime.now(raised.tzinfo) - raised).total_seconds()
        self.say(
            f"  .. alarm {alarm['id']} {alarm['kind']}: {_DONE[action]}{_AS.get(body.get('outcome', ''), '')}"
            f" by {carer.username} ({carer.display_name}) {after:.0f} s after it was raised"
        )
        return True

    def _round(self, http: httpx.Client, home: Home, carer: StaffPlan) -> None:
        if home.floors is None:
            home.floors = [
                (f["id"], f"{b['name']} {f['name']}")
                for b in self._call(http, carer, "GET", f"/institutions/{home.id}/buildings")
                for f in self._call(http, carer, "GET", f"/buildings/{b['id']}/floors")
            ]
        for floor_id, _ in home.floors:
            self._call(http, carer, "POST", "/supervision/rounds", body={"floor_id": floor_id, "note": "夜间巡房"})
        names = ", ".join(name for _, name in home.floors)
        self.say(f"  .. night round of {home.plan.name} ({names}) by {carer.username} ({carer.display_name})")

    def _call(
        self, http: httpx.Client, carer: StaffPlan, method: str, path: str, *, body: dict[str, Any] | None = None
    ) -> Any:  # noqa: ANN401 - any JSON answer
        reply = self._request(http, carer, method, path, body)
        _check(reply)
        return reply.json()

    def _request(
        self, http: httpx.Client, carer: StaffPlan, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        for _ in range(2):
            token = self.tokens.get(carer.username)
            if token is None:
                home = next(h for h in self.homes if carer.username in h.passwords)
                login = {"username": carer.username, "password": home.passwords[carer.username]}
                reply = http.post("/auth/login", json=login)
                _check(reply)
                token = self.tokens[carer.username] = str(reply.json()["token"])
            reply = http.request(method, path, headers={"Authorization": f"Bearer {token}"}, json=body)
            if reply.status_code != 401:
                return reply
            del self.tokens[carer.username]  # expired: log in again
        return reply


_DONE = {"acknowledge": "acknowledged", "attend": "at the bedside", "resolve": "resolved"}
_AS = {"false_alarm": " as a false alarm"}


def _check(reply: httpx.Response) -> None:
    if reply.status_code >= 400:
        raise httpx.HTTPStatusError(
            f"HTTP {reply.status_code} {reply.text[:300]}", request=reply.request, response=reply
        )
