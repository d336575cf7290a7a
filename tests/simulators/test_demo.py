"""``eldercare demo`` (what ``make demo`` runs) fills the platform with the world simulator and drives it: a
stack of its own in a throwaway state folder, the world made through the API, the run's ground truth, and
the address and logins printed; the logins work. Before going live, the world lives last month through (once
a month): its claims are submitted and verified by the demo's regulator, and every finding planted in the
month is caught while the honest lines are paid."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg
from tests.platform_procs import run_eldercare, wait_http
from tests.registry.support import login
from tests.simulators.support import SISFALL
from tests.subsidy.support import CAUGHT, held_by

from eldercare.platform.stack import service as stack_service
from eldercare.platform.stack.model import Ports
from eldercare.simulators import demo_month
from eldercare.simulators.run import truth as truth_log
from eldercare.simulators.world import model as world_model
from eldercare.simulators.world.residents import CHINA


def test_demo_fills_the_platform_with_a_simulated_world(
    throwaway_state_dir: Path, stack_ports: Callable[[], Ports]
) -> None:
    ports = stack_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env |= {
        "ELDERCARE_STATE_DIR": str(throwaway_state_dir),
        "ELDERCARE_PG_PORT": str(ports.postgres),
        "ELDERCARE_MQTT_PLAIN_PORT": str(ports.mqtt),
        "ELDERCARE_MQTT_TLS_PORT": str(ports.mqtt_tls),
        "ELDERCARE_API_PORT": str(ports.api),
        "ELDERCARE_SISFALL": str(SISFALL),
        # ingest's retention job runs whenever it is not held off, and keeps a day of raw readings (all of last
        # month is older, whatever today's date): a start cut short must still make the month
        "ELDERCARE_INGEST_RETENTION_INTERVAL_S": "1",
        "ELDERCARE_INGEST_RAW_RETENTION_DAYS": "1",
    }
    old_rows = _stopped_while_living_last_month(env, throwaway_state_dir)
    # the first press comes at 15 s; the first home's carer answers within 30 s; 20 s more for a loaded machine
    done = _demo(env, "65")
    output = done.stdout + done.stderr
    assert "  staff:      the carer on shift answers alarms" in done.stdout, output
    assert re.search(r"\.\. alarm \d+ button: acknowledged by (nurse|head)-\S+ \(", done.stdout), (
        output + _what_happened(throwaway_state_dir)
    )
    assert "could not reach the platform" not in done.stdout, output
    assert f"API:        http://127.0.0.1:{ports.api}/api/v1" in done.stdout, output
    assert "logins:     admin demo-admin / " in done.stdout and "head  head-" in done.stdout
    world = world_model.load(throwaway_state_dir / "demo-world.json")
    assert [i.kind for i in world.plan.institutions] == ["residential_home", "home_care_provider"]
    events = [r["event"] for r in truth_log.read(throwaway_state_dir / "demo-truth.jsonl") if r["kind"] == "run"]
    assert events == ["start", "end"]
    # the world was registered through the API (the platform issued its codes), and the printed login is its head's
    inst = world.plan.institutions[0]
    issued = world.issued.institutions[inst.key]
    assert (
        issued.id > 0
        and len(issued.beds) == len(inst.beds)
        and all(code.startswith("B") for _, code in issued.beds.values())
    )
    assert f"head  {inst.staff[0].username} / {issued.users[inst.staff[0].username][1]}" in done.stdout

    # last month, lived through once before going live, claimed and verified by the demo's regulator
    (folder,) = throwaway_state_dir.glob("demo-month-*")
    verified = demo_month.Verified(**json.loads((folder / "verified.json").read_text()))
    assert "living last month" in done.stdout and f"  last month: {verified.line()}" in done.stdout, output
    with psycopg.connect(stack_service.load(throwaway_state_dir).database_url) as conn:
        kept = conn.execute(  # the first start's readings were there when the month was rolled up
            "SELECT sum(observed_minutes) FROM bed_daily WHERE day < %s",
            (date.fromisoformat(verified.month + "-01") + timedelta(days=10),),
        ).fetchone()
    assert kept is not None and kept[0] > 0 and old_rows > 0
    regulator = json.loads((throwaway_state_dir / "demo-regulator.json").read_text())
    assert f"regulator {demo_month.REGULATOR} / {regulator['password']}   (4205)" in done.stdout
    again = _demo(env, "5")  # a second start in the month takes the month as it is
    assert "living last month" not in again.stdout and f"  last month: {verified.line()}" in again.stdout
    _killed_leaves_nothing_running(env)

    planted = [r["detail"] for r in truth_log.read(folder / "truth.jsonl") if r["kind"] == "expect_claim_finding"]
    assert [p["finding"] for p in planted] == verified.planted and "absent_in_hospital" in verified.planted
    serve_env = env | {"ELDERCARE_ENV_FILE": str(throwaway_state_dir / "eldercare.env")}
    with run_eldercare("serve", ["serve", "--port", str(ports.api)], serve_env):
        base = f"http://127.0.0.1:{ports.api}"
        wait_http(f"{base}/healthz", timeout=60)
        office = login(base, demo_month.REGULATOR, regulator["password"])
        verdicts = {
            line["ref"]: line
            for home in issued_homes(world)
            for line in office.ok(
                "GET", f"/api/v1/institutions/{home}/subsidy/claims", params={"month": verified.month}
            )["lines"]
        }
        # the home-care provider's elders living alone, visited on time: its coverage at the target (a world of two
        # providers, one of them late, is test_world.py's)
        today = datetime.now(CHINA).date()
        period = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
        coverage = office.ok("GET", "/api/v1/supervision/visits", params=period)
    provider = world.issued.institutions[world.plan.institutions[-1].key].id
    (row,) = [h for h in coverage["homes"] if h["institution_id"] == provider]
    assert row["living_alone"] >= 1 and coverage["region"]["living_alone"] == row["living_alone"], coverage
    assert all(r in (None, 1.0) for r in (row["key_coverage"], row["general_coverage"])), row
    assert len(verdicts) == verified.lines
    report = [held_by(finding, verdicts) for finding in planted]
    assert all(held for *_, held in report), report
    named = {ref for finding in planted for ref in finding["claims"]}
    flagged = [(r, v["verdict"], v["reasons"]) for r, v in verdicts.items() if v["verdict"] in CAUGHT]
    flagged = [f for f in flagged if f[0] not in named]
    assert not flagged, flagged  # the honest lines of the world are paid


def _what_happened(state_dir: Path) -> str:
    """For a failure's message: the alarms and gateways as the database has them, and the ends of the logs."""
    out = ["\n--- alarms (raised, acknowledged, kind, state, occurred) and gateways (seen, status) ---"]
    with psycopg.connect(stack_service.load(state_dir).database_url) as conn:
        rows = conn.execute(
            "SELECT id, raised_at, acknowledged_at, kind, state::text, occurred_at FROM alarms ORDER BY id"
        ).fetchall()
        rows += conn.execute("SELECT gateway_id, last_seen_at, last_status, status_sent_at FROM gateways").fetchall()
        rows += conn.execute("SELECT now()").fetchall()
    out += [" ".join(str(v) for v in row) for row in rows]
    for log in sorted((state_dir / "logs").glob("*.log")):
        out.append(f"--- {log.name} (end) ---")
        out.append(log.read_text(errors="replace")[-3000:])
    return "\n".join(out)


def _stopped_while_living_last_month(env: dict[str, str], state_dir: Path) -> int:
    """A first start stopped with Ctrl-C while it lives last month, once ingest has stored readings of the month
    in chunks older than the raw retention (a day); how many it had stored."""
    args = ["demo", "--duration", "55", "--institutions", "1", "--via", "direct"]
    with run_eldercare("demo", args, env) as demo:
        demo.wait_for("living last month", timeout=300)
        url = stack_service.load(state_dir).database_url
        deadline = time.monotonic() + 300
        while True:
            with psycopg.connect(url) as conn:
                old = "SELECT count(*) FROM bed_readings WHERE time < now() - interval '2 days'"
                row = conn.execute(old).fetchone()
            assert row is not None
            if row[0] >= 1000:
                break
            assert time.monotonic() < deadline and demo.popen.poll() is None, demo.log()
            time.sleep(1)
        demo.popen.send_signal(signal.SIGINT)
        assert demo.popen.wait(timeout=120) == 0, demo.log()
    assert not (next(state_dir.glob("demo-month-*")) / "verified.json").exists(), demo.log()
    return int(row[0])


def _killed_leaves_nothing_running(env: dict[str, str]) -> None:
    """A demo killed outright (SIGKILL: no handler runs) takes its processes with it: ingest, the API, the
    gateways and their home broker would otherwise run on beside the next start's, under the same logins."""
    args = ["demo", "--duration", "300", "--institutions", "1", "--no-last-month", "--via", "gateway"]
    with run_eldercare("demo", args, env) as demo:
        deadline = time.monotonic() + 180
        while not {"ingest", "serve", "gateway", "mosquitto"} <= {
            _kind(c) for c in _descendants(demo.popen.pid).values()
        }:
            assert time.monotonic() < deadline and demo.popen.poll() is None, demo.log()
            time.sleep(0.5)
        left = _descendants(demo.popen.pid)
        demo.popen.kill()
        demo.popen.wait()
        deadline = time.monotonic() + 30
        while (alive := {pid: cmd for pid, cmd in left.items() if _running(pid)}) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not alive, alive


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root``, with its command line (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid in [p for p, pp in parents.items() if pp == parent]:
            try:
                found[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            frontier.append(pid)
    return found


def _kind(cmdline: str) -> str:
    """``ingest`` for ``…/python3 …/bin/eldercare ingest --name demo`` (a script runs under its interpreter)."""
    words = cmdline.split()
    for at, word in enumerate(words[:-1]):
        if word.endswith("/eldercare"):
            return words[at + 1]
    return Path(words[0]).name if words else ""


def _running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has ended; only its parent has not reaped it


def issued_homes(world: world_model.World) -> list[int]:
    return [issued.id for issued in world.issued.institutions.values()]


def _demo(env: dict[str, str], seconds: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("eldercare"))
    done = subprocess.run(
        [exe, "demo", "--duration", seconds, "--institutions", "1", "--via", "direct"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done
