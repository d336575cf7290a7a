"""The demo's last month: a month the regulator's pages can show, lived through before the demo goes live.

The first time ``eldercare demo`` starts in a calendar month, the demo world lives the month before in
simulated time, as fast as the platform takes it: every device of every home through the platform's broker
(the simulator playing each gateway), ordinary life, and what :func:`scenario_for` plants in it to be found —
a resident in hospital for 12 days whose bed is still claimed, an elder registered in an empty bed who is
never there, a bed sensor silent for three nights, an empty bed claimed. Then it does what a civil-affairs
office does with a month: the month is rolled up (it arrived as a backfill, older than the roll-up job's
late-data window), the region's amounts are set if it has none (the simulators' amounts), the homes' claim
file is submitted by the demo's regulator and the month verified.

Everything is kept in ``<state>/demo-month-YYYY-MM/``: the scenario written for this world (``month.yaml``,
runnable with ``eldercare simulate scenario``), the ground truth with the findings the verification is
expected to make, the claim file and the verification's summary (``verified.json``). A later start in the
same month reuses it; a run cut short (Ctrl-C) goes on where it stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from eldercare.ingest import locks, rollups
from eldercare.ingest.registry import Conn
from eldercare.platform.config import SecuritySettings
from eldercare.platform.db.keycheck import checked_vault
from eldercare.platform.envfile import ENV_FILE_NAME
from eldercare.simulators.errors import SimError
from eldercare.simulators.run import commands as run_commands
from eldercare.simulators.run import state as run_state
from eldercare.simulators.run.clock import format_duration, from_iso, iso, month_end, parse_start, real_ms
from eldercare.simulators.run.direct import Target
from eldercare.simulators.scenario import claims as claim_file
from eldercare.simulators.scenario import session
from eldercare.simulators.world import model as world_model

TIMEZONE = "Asia/Shanghai"  # the roll-ups' calendar (ingest's default) and the claims'
REGULATOR = "demo-regulator"
HOSPITAL_DAYS = 12
# The run goes on to the morning after the month: the month's last night ends then (a verification runs
# after the month has closed, when that night's data is in).
MORNING_AFTER = 6 * 3_600_000
SILENT_DAYS = 3


@dataclass(frozen=True, slots=True)
class Verified:
    """What the month's verification said, as the API answered it (``POST /subsidy/runs``)."""

    month: str
    homes: int
    lines: int
    verdicts: dict[str, int]
    claimed_yuan: str
    withheld_yuan: str
    planted: list[str]  # the findings the month was made to contain

    def line(self) -> str:
        said = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))
        return (
            f"{self.month}: {self.lines} claim lines of {self.homes} homes verified ({said}); "
            f"{self.withheld_yuan} of {self.claimed_yuan} yuan withheld"
        )


def folder_of(base_dir: Path, now_ms: int) -> tuple[Path, int]:
    """The last month's folder and the month's first instant (local midnight on the 1st)."""
    start = parse_start("previous month", now=now_ms)
    return base_dir / f"demo-month-{iso(start)[:7]}", start


def scenario_for(world: world_model.World, start: int) -> tuple[str, list[str]] | None:
    """The month's scenario for this world as YAML, with the findings planted in it; None when the world has no
    residential home with a resident admitted before the month. Each plant is made only where the world has
    room for it: targets are residents admitted before the month, whose bed sensor was bound before it."""
    homes = [(n, inst) for n, inst in enumerate(world.plan.institutions, 1) if inst.kind == "residential_home"]

    def settled(inst: world_model.InstitutionPlan, *, sensor: bool) -> list[int]:
        watched = {d.bed for d in inst.devices if d.kind == "bed_sensor" and from_iso(d.bound_at) < start}
        return [
            i
            for i, p in enumerate(inst.persons, 1)
            if p.bed and p.admitted_at and from_iso(p.admitted_at) < start and (not sensor or p.bed in watched)
        ]

    first = next(((n, inst) for n, inst in homes if settled(inst, sensor=False)), None)
    if first is None:
        return None
    inject: list[str] = []
    findings: list[str] = []  # as YAML
    planted: list[str] = []  # their names
    n, inst = first
    people = settled(inst, sensor=False)
    hospital = people[1] if len(people) > 1 else people[0]
    inject.append(
        f"  - {{id: hospital, kind: hospital, at: 'day 5 09:00', home: {n}, person: {hospital},"
        f" duration: {HOSPITAL_DAYS}d, hospital: 宜昌市中心人民医院}}"
    )
    findings.append("  - {finding: absent_in_hospital, programme: operating_subsidy, for: hospital}")
    planted.append("absent_in_hospital")
    # the silent sensor: in another home when there is one, so that each home has something to show
    silent = [(m, h, p) for m, h in homes for p in settled(h, sensor=True) if (m, p) != (n, hospital)]
    silent.sort(key=lambda t: t[0] == n)
    if silent:
        m, _, p = silent[0]
        inject.append(
            f"  - {{id: sensor-fails, kind: silence, at: 'day 12 22:00', home: {m}, person: {p},"
            f" device: bed_sensor, duration: {SILENT_DAYS}d}}"
        )
        findings.append("  - {finding: unverifiable_days, programme: operating_subsidy, for: sensor-fails}")
        planted.append("unverifiable_days")
    # the ghost and the empty bed: where there is room, in a home that has nothing planted yet if one has
    used = {n} | ({silent[0][0]} if silent else set())
    empty = {m: len(h.beds) - len({p.bed for p in h.persons if p.bed}) for m, h in homes}
    ghost_home = max(empty, key=lambda m: (empty[m] > 0, m not in used, empty[m], -m))
    if empty[ghost_home] > 0:
        empty[ghost_home] -= 1
        used.add(ghost_home)
        inject.append(f"  - {{id: ghost, kind: ghost, home: {ghost_home}, admitted_before: 120d}}")
        findings.append("  - {finding: never_present, programme: operating_subsidy, for: ghost}")
        planted.append("never_present")
    pad_home = max(empty, key=lambda m: (empty[m] > 0, m not in used, empty[m], -m))
    pad = ""
    if empty[pad_home] > 0:
        pad = f"\n  pad_empty_beds: [{{home: {pad_home}, beds: 1}}]"
        findings.append(f"  - {{finding: empty_bed_claimed, programme: operating_subsidy, home: {pad_home}}}")
        planted.append("empty_bed_claimed")
    plan = world.plan
    text = f"""\
# Written by `eldercare demo` for the world in {plan.region} (seed {plan.seed}): its last month, with what a
# verification of the month's subsidy claims must find.
scenario: demo-last-month
version: 1
schema: 1
title: The demo world's last month, with a hospital stay, a ghost, a silent sensor and an empty bed claimed
world: {{region: "{plan.region}", institutions: {plan.institutions_asked}, households: {plan.households_asked},\
 seed: {plan.seed}, beds: "{plan.beds_min}-{plan.beds_max}"}}
run:
  start: '{iso(start)}'
  duration: {format_duration(month_end(start) - start + MORNING_AFTER)}
  speed: max
  via: direct
  incidents: quiet
  bed_sample_s: 600
inject:
{chr(10).join(inject)}
claims:
  programmes: [operating_subsidy, old_age_allowance, home_care_bed]{pad}
expect_claim_findings:
{chr(10).join(findings)}
"""
    return text, planted


def wait_stored(url: str, *, start: datetime, end: datetime, timeout: float = 600) -> None:
    """Wait until ingest has stored a run's bed readings of [start, end): the run's last hour is there and
    nothing more has arrived for a few seconds (the simulator is done when it has published, not ingest)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, datetime | None] | None = None
    steady = 0
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), max(time) FROM bed_readings WHERE time >= %s AND time < %s", (start, end)
            ).fetchone()
        assert row is not None
        now = (int(row[0]), row[1])
        steady = steady + 1 if now == last else 0
        if steady >= 3 and now[1] is not None and now[1] >= end - timedelta(hours=1):
            return
        last = now
        time.sleep(1)
    raise SimError(f"ingest did not store the month's readings within {timeout:.0f} s (stored so far: {last})")


class Office:
    """The API as the region's civil-affairs office uses it at the end of a month."""

    def __init__(self, base: str, http: httpx.Client) -> None:
        self.base = base
        self.http = http

    def login(self, username: str, password: str) -> dict[str, str]:
        reply = self.http.post(f"{self.base}/api/v1/auth/login", json={"username": username, "password": password})
        self._ok(reply, "log in as " + username)
        return {"Authorization": f"Bearer {reply.json()['token']}"}

    def call(
        self,
        what: str,
        method: str,
        path: str,
        auth: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> Any:  # noqa: ANN401 - any JSON answer
        reply = self.http.request(
            method, f"{self.base}/api/v1{path}", headers=auth, params=params, json=json, files=files
        )
        self._ok(reply, what)
        return reply.json() if reply.content else None

    @staticmethod
    def _ok(reply: httpx.Response, what: str) -> None:
        if reply.status_code >= 400:
            raise SimError(f"could not {what}: HTTP {reply.status_code} {reply.text[:500]}")


def set_amounts(office: Office, admin: dict[str, str], *, region: str, month: str) -> list[str]:
    """The simulators' amounts for the region, for each programme that has none in force for the month."""
    listed = office.call(
        "read the programmes", "GET", "/subsidy/programmes", admin, params={"region": region, "month": month}
    )
    missing = [p["code"] for p in listed if p["in_force"] is None and p["code"] in claim_file.SCHEDULES]
    for code in missing:
        rates = claim_file.SCHEDULES[code]
        body = {"programme": code, "region_code": region, "effective_from": "2020-01", "rates": rates}
        office.call(f"set the amounts of {code}", "POST", "/subsidy/schedules", admin, json=body)
    return missing


def pending(base_dir: Path) -> bool:
    """Last month is not verified yet: it is lived (or goes on) at this start."""
    folder, _ = folder_of(base_dir, real_ms())
    return not (folder / "verified.json").exists()


class RetentionHold:
    """The retention job's lock, held in a transaction on a connection of its own until :meth:`release`.

    Part of the month is older than the raw retention: no retention job (ingest's schedule, under this lock) may
    drop its chunks before they are rolled up. ``eldercare demo`` takes it before it starts ingest, whose schedule
    would otherwise run the job at once over what an interrupted start stored of the month, and releases it
    after stopping ingest when the month was cut short again."""

    def __init__(self, database_url: str) -> None:
        self._held = ExitStack()
        try:
            self.conn: Conn = self._held.enter_context(psycopg.connect(database_url))
            self._held.enter_context(self.conn.transaction())
            locks.hold(self.conn, "retention", wait=True)
        except BaseException:
            self._held.close()
            raise

    def release(self) -> None:
        """Commit what was done on the connection (the month's roll-ups) and let retention run; once."""
        self._held.close()

    def __enter__(self) -> RetentionHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_month(
    *,
    base_dir: Path,
    world_path: Path,
    base: str,
    database_url: str,
    target: Target,
    admin: tuple[str, str],
    regulator: tuple[str, str],
    stop: threading.Event,
    progress: Callable[[str], None],
    hold: RetentionHold | None = None,
) -> Verified | None:
    """Last month lived, rolled up, claimed and verified (once a month); None when the world has nothing to
    claim or the run was stopped before the month's end (it goes on at the next start). What it does is
    printed; ``progress`` takes the simulator's progress lines. ``hold`` is the caller's
    :class:`RetentionHold`, released once the month is rolled up; without it the month takes one of its own."""
    folder, start = folder_of(base_dir, real_ms())
    done = folder / "verified.json"
    if done.exists():
        return Verified(**json.loads(done.read_text()))
    world = world_model.load(world_path)
    made = scenario_for(world, start)
    if made is None:
        return None
    text, planted = made
    folder.mkdir(parents=True, exist_ok=True)
    path, state_path = folder / "month.yaml", folder / "state.json"
    if state_path.exists():
        state = run_state.load(state_path)
    else:
        path.write_text(text, encoding="utf-8")
        state = run_commands.new_state(
            world=world_path,
            truth=folder / "truth.jsonl",
            api=base,
            speed="max",
            duration=format_duration(month_end(start) - start + MORNING_AFTER),
            start=iso(start),
            via="direct",
            incidents="quiet",
            bed_sample_s=600.0,
            scenario=path,
            claims=folder / "claims.csv",
            settle=True,  # the residents up before 06:00 on the 1st go back to bed: no alarm left for today
        )
        session.happenings(session.load(str(path)), world, state, None)  # a target that does not fit: now
        run_state.save(state, state_path)
    label = iso(start)[:7]
    print(f"living last month ({label}) through at full speed, once: {', '.join(planted)} to be found ...", flush=True)
    with ExitStack() as owned:
        hold = hold or owned.enter_context(RetentionHold(database_url))
        outcome = session.run(
            state, state_path=state_path, target=target, stop=stop, progress=progress, progress_s=15.0
        )
        if not outcome.finished:
            return None
        first = datetime.fromtimestamp(start / 1000, UTC)
        end = datetime.fromtimestamp((month_end(start) + MORNING_AFTER) / 1000, UTC)
        print(f"{label} published; waiting for ingest to store it, then rolling it up ...", flush=True)
        wait_stored(database_url, start=first, end=end)
        # On the connection holding the retention lock: the rebuild takes that lock too, and would wait for
        # this block on any other.
        security = SecuritySettings(_env_file=base_dir / ENV_FILE_NAME)
        vault = checked_vault(database_url, security.key_bytes(), previous=security.previous_key_bytes())
        rollups.rebuild(hold.conn, vault=vault, start=first, end=end, timezone=TIMEZONE)  # rates opened, sealed
        hold.release()  # committed before the month is verified from its roll-ups; its raw chunks may go now
    with httpx.Client(timeout=120) as http:
        office = Office(base, http)
        admin_auth = office.login(*admin)
        set_amounts(office, admin_auth, region=world.plan.region, month=label)
        auth = office.login(*regulator)
        data = (folder / "claims.csv").read_bytes()
        office.call("submit the claims", "POST", "/subsidy/claims/upload", auth, files={"file": ("claims.csv", data)})
        run = office.call("verify the month", "POST", "/subsidy/runs", auth, params={"month": label})
    verified = Verified(
        month=label,
        homes=int(run["homes"]),
        lines=int(run["lines"]),
        verdicts={str(k): int(v) for k, v in run["verdicts"].items()},
        claimed_yuan=str(run["claimed_yuan"]),
        withheld_yuan=str(run["withheld_yuan"]),
        planted=planted,
    )
    done.write_text(json.dumps(asdict(verified), ensure_ascii=False) + "\n")
    return verified
