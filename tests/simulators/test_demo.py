"""``eldercare demo`` (what ``make demo`` runs) fills the platform with the world simulator and drives it: a
stack of its own in a throwaway state folder, the world made through the API, the run's ground truth, and
the address and logins printed; the logins work."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.simulators.support import SISFALL

from eldercare.platform.stack.model import Ports
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
    exe = str(Path(sys.executable).with_name("eldercare"))
    done = subprocess.run(
        [exe, "demo", "--duration", "20", "--institutions", "1", "--via", "direct"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
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
