"""``eldercare demo`` (what ``make demo`` runs) fills the platform with the world simulator and drives it: a
stack of its own in a throwaway state folder, the world made through the API, the run's ground truth, and
the address and logins printed; the logins work. Before going live, the world lives last month through (once
a month): its claims are submitted and verified by the demo's regulator, and every finding planted in the
month is caught while the honest lines are paid."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.platform_procs import run_eldercare, wait_http
from tests.registry.support import login
from tests.simulators.support import SISFALL
from tests.subsidy.support import CAUGHT, held_by

from eldercare.platform.stack.model import Ports
from eldercare.simulators import demo_month
from eldercare.simulators.run import truth as truth_log
from eldercare.simulators.world import model as world_model


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
    }
    done = _demo(env, "55")  # the first press comes at 15 s; the first home's carer answers within 30 s
    output = done.stdout + done.stderr
    assert "  staff:      the carer on shift answers alarms" in done.stdout, output
    assert re.search(r"\.\. alarm \d+ button: acknowledged by (nurse|head)-\S+ \(", done.stdout), output
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
    regulator = json.loads((throwaway_state_dir / "demo-regulator.json").read_text())
    assert f"regulator {demo_month.REGULATOR} / {regulator['password']}   (4205)" in done.stdout
    again = _demo(env, "5")  # a second start in the month takes the month as it is
    assert "living last month" not in again.stdout and f"  last month: {verified.line()}" in again.stdout

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
    assert len(verdicts) == verified.lines
    report = [held_by(finding, verdicts) for finding in planted]
    assert all(held for *_, held in report), report
    named = {ref for finding in planted for ref in finding["claims"]}
    flagged = [(r, v["verdict"], v["reasons"]) for r, v in verdicts.items() if v["verdict"] in CAUGHT]
    flagged = [f for f in flagged if f[0] not in named]
    assert not flagged, flagged  # the honest lines of the world are paid


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
