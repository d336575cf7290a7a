"""Every shipped scenario, run against the real platform (``eldercare ingest`` and ``eldercare serve`` as
child processes on a database of their own, the test stack's broker): its world is made with ``eldercare
simulate world`` through the API, it runs with ``eldercare simulate scenario --check``, and then

- the ground truth holds what the scenario declares: one line per injection, with its codes, at its time;
  the registry actions (hospital stay, death, second registration, ghost) done through the API; the claim
  findings it expects, with claim lines that exist in its claim file;
- the platform raised the alarms the scenario expects (``--check`` exits 1 otherwise);
- what the registry says afterwards agrees (read back through the API).

Also: a run stopped and resumed writes the same truth as one that was not, and ``simulate run`` stops on
SIGINT with its state saved and goes on with ``--resume``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import free_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http
from tests.registry.support import ADMIN_PASSWORD, Database, create_database, drop_database, login, make_admin

from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.run import commands as run_commands
from eldercare.simulators.run import state as run_state
from eldercare.simulators.run import truth as truth_log
from eldercare.simulators.run.clock import parse_at
from eldercare.simulators.run.direct import Target
from eldercare.simulators.run.runner import execute
from eldercare.simulators.scenario import claims as claim_file
from eldercare.simulators.scenario import session
from eldercare.simulators.world import model as world_model

EXE = str(Path(sys.executable).with_name("eldercare"))
KIND = {"silence": "silent"}


@dataclass
class Platform:
    base: str
    env: dict[str, str]
    db: Database
    target: Target


@pytest.fixture(scope="module")
def platform(stack: StackInfo) -> Iterator[Platform]:
    db = create_database(stack, "ec_sims")
    make_admin(db, "sim-admin")
    port = free_ports(1)[0]
    env = stack_env(stack, ELDERCARE_DATABASE_URL=db.url, ELDERCARE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        with (
            run_eldercare("ingest", ["ingest", "--name", "sim"], env) as ingest,
            run_eldercare("serve", ["serve", "--port", str(port)], env) as serve,
        ):
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", timeout=60)
            ingest.wait_for("subscribed, storing", timeout=60)
            serve.wait_for("alarm engine: listening", timeout=60)
            yield Platform(base, env, db, Target(stack.mqtt_host, stack.ports.mqtt_tls, str(stack.ca_file)))
    finally:
        drop_database(stack, db)


@pytest.fixture(scope="module")
def world(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenarios' world (all shipped scenarios share its spec), made with the CLI through the API."""
    path = tmp_path_factory.mktemp("world") / "world.json"
    spec = session.load("night-fall").scenario.world
    done = subprocess.run(
        [
            EXE,
            "simulate",
            "world",
            "--region",
            spec.region,
            "--institutions",
            str(spec.institutions),
            "--households",
            str(spec.households),
            "--seed",
            str(spec.seed),
            "--beds",
            spec.beds,
            "--api",
            platform.base,
            "--admin",
            "sim-admin",
            "--out",
            str(path),
        ],
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registered H01" in done.stdout and path.stat().st_mode & 0o777 == 0o600
    return path


def _records(truth: list[dict[str, Any]], tag: str, ident: str) -> list[dict[str, Any]]:
    return [r for r in truth if r.get("origin") == tag and r.get("detail", {}).get("id") == ident]


@pytest.mark.parametrize("name", sorted(session.shipped()))
def test_scenario(name: str, platform: Platform, world: Path, tmp_path: Path) -> None:
    loaded = session.load(name)
    sc = loaded.scenario
    out = tmp_path / name
    done = subprocess.run(
        [
            EXE,
            "simulate",
            "scenario",
            name,
            "--world",
            str(world),
            "--out",
            str(out),
            "--api",
            platform.base,
            "--check",
            "--progress-s",
            "30",
        ],
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "run finished" in done.stdout, report
    if sc.expect:
        assert f"{sum(1 for _ in sc.expect)} of" in done.stdout or "expectations met" in done.stdout, report
    truth = truth_log.read(out / "truth.jsonl")
    state = run_state.load(out / "state.json")
    assert state.finished and state.end_ms is not None
    tag = f"scenario:{sc.scenario}"
    assert truth[0]["kind"] == "run" and truth[0]["event"] == "start"
    assert [r for r in truth if r["kind"] == "run"][-1]["event"] == "end"

    # one truth line per injection, with its codes, at its time
    for n, item in enumerate(sc.inject):
        ident = item.id or f"{item.kind}-{n + 1}"
        lines = [r for r in _records(truth, tag, ident) if r["kind"] != "registry"]
        assert len(lines) == 1, (ident, lines)
        line = lines[0]
        assert line["kind"] == KIND.get(item.kind, item.kind)
        assert line["institution"] and line["gateway"]
        if item.kind not in ("ghost", "twin"):
            assert line["t"] == parse_at(item.at, start=state.start_ms, end=state.end_ms)
        if item.kind in ("fall", "press", "wander", "smoke", "silence"):
            assert line["device"] and line["sent_ms"] > 0
        if item.kind in ("hospital", "death", "ghost", "twin"):
            registry = [r for r in _records(truth, tag, ident) if r["kind"] == "registry"]
            assert registry, f"{ident}: the registry action is in the truth"

    # the claim findings it expects, with lines of its claim file
    if sc.claims is not None:
        claims = {c["claim_id"]: c for c in claim_file.read(out / "claims.csv")}
        assert claims and all(set(c) == set(claim_file.HEADER) for c in claims.values())
        found = [r["detail"] for r in truth if r["kind"] == "expect_claim_finding"]
        assert {(f["finding"], f["programme"]) for f in found} == {
            (f.finding, f.programme) for f in sc.expect_claim_findings
        }
        for f in found:
            assert f["claims"] and all(c in claims and claims[c]["programme"] == f["programme"] for c in f["claims"])
    _registry_agrees(name, platform, world_model.load(world), truth)


def _registry_agrees(name: str, platform: Platform, world: world_model.World, truth: list[dict[str, Any]]) -> None:
    admin = login(platform.base, "sim-admin", ADMIN_PASSWORD)
    for r in (r for r in truth if r["kind"] in ("hospital", "death", "ghost", "twin")):
        if r["kind"] == "hospital":
            inst, key = _person(world, r["person"])
            rid = world.issued.institutions[inst].persons[key][0]
            stays = admin.ok("GET", f"/api/v1/residents/{rid}/hospital-stays")
            assert any(s["hospital"] == r["detail"]["hospital"] and s["end"] is not None for s in stays), stays
        elif r["kind"] == "death":
            inst, key = _person(world, r["person"])
            resident = admin.ok("GET", f"/api/v1/residents/{world.issued.institutions[inst].persons[key][0]}")
            assert resident["status"] == "deceased" and resident["bed_id"] is None
        else:
            reg = next(x for x in truth if x["kind"] == "registry" and x["detail"].get("id") == r["detail"]["id"])[
                "detail"
            ]
            home = world.institution(r["detail"]["home"])
            residents = admin.ok("GET", f"/api/v1/institutions/{world.issued.institutions[home.key].id}/residents")
            mine = next(x for x in residents if x["person_code"] == reg["registered_person"])
            assert mine["bed_code"] == reg["registered_bed"] and mine["status"] == "admitted", name


def _person(world: world_model.World, code: str) -> tuple[str, str]:
    for key, issued in world.issued.institutions.items():
        for person, (_, person_code) in issued.persons.items():
            if person_code == code:
                return key, person
    raise AssertionError(f"no person {code} in the world")


def _run(world: Path, folder: Path, platform: Platform, *, start: str, stop_after: int | None) -> list[dict[str, Any]]:
    """A run of 10 simulated hours at full speed, direct mode, many incidents; stopped after ``stop_after``
    truth lines and resumed, or not."""
    state_path = folder / "state.json"
    state = run_commands.new_state(
        world=world,
        truth=folder / "truth.jsonl",
        api=platform.base,
        speed="max",
        duration="10h",
        start=start,
        via="direct",
        incidents="busy",
        bed_sample_s=30,
    )
    run_state.save(state, state_path)
    stop = threading.Event()
    seen: list[int] = []

    def count(_line: dict[str, Any]) -> None:
        seen.append(1)
        if stop_after is not None and len(seen) >= stop_after:
            stop.set()

    first = execute(state, state_path=state_path, target=platform.target, stop=stop, on_truth=count)
    if stop_after is not None:
        assert not first.finished
        resumed = run_state.load(state_path)
        assert resumed.position_ms == first.position_ms < resumed.end_ms  # type: ignore[operator]
        again = execute(resumed, state_path=state_path, target=platform.target)
        assert again.finished
    else:
        assert first.finished
    return truth_log.read(folder / "truth.jsonl")


def test_a_stopped_and_resumed_run_writes_the_same_truth(platform: Platform, world: Path, tmp_path: Path) -> None:
    start = "2026-03-10T18:00:00+08:00"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _run(world, tmp_path / "a", platform, start=start, stop_after=None)
    broken = _run(world, tmp_path / "b", platform, start=start, stop_after=15)

    def content(truth: list[dict[str, Any]]) -> list[str]:
        return sorted(
            repr({k: v for k, v in r.items() if k not in ("n", "sent_ms")}) for r in truth if r["kind"] != "run"
        )

    assert [r["event"] for r in broken if r["kind"] == "run"] == ["start", "stop", "resume", "end"]
    assert len(whole) > 20
    assert content(whole) == content(broken)


def test_simulate_run_stops_on_sigint_and_resumes(platform: Platform, world: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.json"
    copy.write_bytes(world.read_bytes())
    command = [
        EXE,
        "simulate",
        "run",
        "--world",
        str(copy),
        "--speed",
        "120",
        "--duration",
        "1h",
        "--via",
        "direct",
        "--api",
        platform.base,
        "--progress-s",
        "0.5",
    ]
    process = subprocess.Popen(command, env=platform.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith("sim "), first  # progress is shown
    os.kill(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "go on with: eldercare simulate run --resume" in out
    state_path = tmp_path / "w.state.json"
    assert not run_state.load(state_path).finished
    resumed = subprocess.run(
        [EXE, "simulate", "run", "--resume", str(state_path), "--progress-s", "60"],
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "run finished" in resumed.stdout
    events = [r["event"] for r in truth_log.read(tmp_path / "w.truth.jsonl") if r["kind"] == "run"]
    assert events == ["start", "stop", "resume", "end"]
