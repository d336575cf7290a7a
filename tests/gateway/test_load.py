"""Many devices at once, through the real brokers and database: everything acknowledged is stored exactly
once, and the gateway stays within its memory budget (the full-size figures: ``bench/gateway_load.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.gateway.support import (
    Fleet,
    HomeBroker,
    bed_difference,
    expected_beds,
    fleet,
    now_ms,
    register_site,
    sorted_stored_beds,
    stored_events,
    wait_for,
    write_config,
)
from tests.platform_procs import Proc, run_eldercare, stack_env

from eldercare.devices import messages as m
from eldercare.platform.stack.model import StackInfo

BUDGET_MB = 80


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_two_hundred_devices_for_ten_seconds(
    stack: StackInfo, platform: Proc, home: HomeBroker, tmp_path: Path
) -> None:
    devices = fleet("lod", {"bed_sensor": 190, "button": 10})
    site = register_site(stack, seed=305, devices=devices)
    setup = write_config(tmp_path / "gw", site=site, stack=stack, home_port=home.port)
    beds = [d for d, k in devices.items() if k == "bed_sensor"]
    t0 = now_ms() - 5_400_000
    over_broker = Fleet(
        mqtt_beds=beds[:170],
        http_beds=[],
        buttons=[d for d, k in devices.items() if k == "button"],
        home_port=home.port,
        http_url=None,
        t0=t0,
        press_every=2,
    )
    over_http = Fleet(
        mqtt_beds=[],
        http_beds=beds[170:],
        buttons=[],
        home_port=None,
        http_url=f"http://127.0.0.1:{setup.http_port}/v1/devices",
        t0=t0,
    )
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
        gateway.wait_for("running", timeout=30)
        gateway.wait_for("subscribed to", timeout=30)
        over_broker.start()
        over_http.start()
        time.sleep(10)
        acked = over_broker.stop()
        for message in over_http.stop().messages:
            acked.add(message)
        expected = expected_beds(acked)
        presses = sorted((x.dev, x.ts) for x in acked.of_type(m.Button))
        try:
            wait_for(lambda: sorted_stored_beds(stack.database_url, site) == expected or None, 60, "all readings")
        except AssertionError:
            raise AssertionError(bed_difference(expected, sorted_stored_beds(stack.database_url, site))) from None
        wait_for(lambda: len(stored_events(stack.database_url, site)) >= len(presses), 30, "all presses")
        assert sorted((d, t) for d, t, _, _ in stored_events(stack.database_url, site)) == presses
        peak = peak_rss_mb(gateway.popen.pid)
    assert sum(map(len, expected.values())) >= 190 * 9
    assert peak <= BUDGET_MB, f"the gateway's peak RSS was {peak:.1f} MB"
