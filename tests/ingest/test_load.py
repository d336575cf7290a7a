"""`eldercare simulate load` reports what it sent, and ingest stores exactly that, once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from ..platform_procs import stack_env
from .helpers import duplicate_readings, scalar, stored_frames, stored_readings, wait_until


def test_the_load_generator_reports_what_it_sent_and_all_of_it_is_stored_once(
    stack: StackInfo, db: str, run_ingest: Callable[..., Any], tmp_path: Path
) -> None:
    exe = Path(sys.executable).with_name("eldercare")
    world_file = tmp_path / "world.json"
    args = ["simulate", "load", "--beds", "20", "--gateways", "2", "--rate", "100", "--duration", "2"]
    args += ["--readings", "7", "--alarm-rate", "2", "--world", str(world_file), "--json"]
    with run_ingest(name="load"):
        done = subprocess.run(
            [str(exe), *args], env=stack_env(stack), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        world = LoadWorld.load(world_file)
        assert report["institution_code"] == world.institution_code
        assert report["frames"] == 200
        assert report["readings"] == 1400
        assert report["alarm_frames"] >= 3
        assert report["acknowledged"] == report["frames"] + report["alarm_frames"]
        assert report["unacknowledged"] == 0
        assert 80 <= report["frames_per_s"] <= 120
        expected = report["frames"] + report["alarm_frames"]
        wait_until(lambda: stored_frames(db, world) == expected, timeout=30, what=f"{expected} frames stored")
    assert stored_readings(db, world) == 1400
    assert duplicate_readings(db, world) == 0
    events = scalar(
        db,
        "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.institution_id = %s",
        (world.institution_id,),
    )
    assert events == report["alarm_frames"]
    assert world_file.stat().st_mode & 0o777 == 0o600  # it holds the gateways' passwords
    sent = scalar(
        db,
        "SELECT min(extract(epoch FROM sent_at) * 1000)::bigint FROM uplink_frames f JOIN gateways g"
        " ON g.id = f.gateway_pk WHERE g.institution_id = %s AND f.lane = 'telemetry'",
        (world.institution_id,),
    )
    assert sent == report["first_sent_ms"]  # the send time travels in the payload
