"""The platform's broker stopped while 50 devices keep sending: afterwards every reading and alarm is
stored exactly once, with the devices' own times, the backlog's alarms sent before its telemetry, and no
device reported offline. Runs on a stack of its own, since it stops the broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.gateway.support import (
    Fleet,
    HomeBroker,
    bed_difference,
    expected_beds,
    fleet,
    frames_received,
    now_ms,
    register_site,
    sorted_stored_beds,
    stored_events,
    wait_for,
    write_config,
)
from tests.platform_procs import Proc, run_eldercare, stack_env

from eldercare.devices import messages as m
from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack import broker as stack_broker
from eldercare.platform.stack.model import StackInfo

OUTAGE_S = 10


@pytest.fixture(scope="module")
def own_stack() -> Iterator[StackInfo]:
    from tests.conftest import free_stack_ports, remove_stack, short_state_dir, start_stack

    state_dir = short_state_dir("gwout")
    info = start_stack(state_dir, free_stack_ports())
    try:
        yield info
    finally:
        remove_stack(state_dir)


@pytest.fixture(scope="module")
def own_platform(own_stack: StackInfo) -> Iterator[Proc]:
    migrate(own_stack.database_url)
    with run_eldercare("ingest", ["ingest", "--name", "outage"], stack_env(own_stack)) as ingest:
        ingest.wait_for("subscribed, storing", timeout=30)
        yield ingest


def test_broker_outage_loses_nothing_and_sends_alarms_first(
    own_stack: StackInfo, own_platform: Proc, home: HomeBroker, tmp_path: Path
) -> None:
    stack = own_stack
    devices = fleet("out", {"bed_sensor": 45, "button": 5})
    site = register_site(stack, seed=304, devices=devices)
    setup = write_config(tmp_path / "gw", site=site, stack=stack, home_port=home.port, http=False)
    beds = [d for d, k in devices.items() if k == "bed_sensor"]
    devices_out = Fleet(
        mqtt_beds=beds,
        http_beds=[],
        buttons=[d for d, k in devices.items() if k == "button"],
        home_port=home.port,
        http_url=None,
        t0=now_ms() - 7_200_000,
        period_s=1.0,
        press_every=3,
    )
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
        gateway.wait_for("running", timeout=30)
        gateway.wait_for("subscribed to", timeout=30)
        devices_out.start()
        time.sleep(4)
        assert stack_broker.stop(stack.state_dir)
        time.sleep(OUTAGE_S)
        stack_broker.start(
            state_dir=stack.state_dir,
            host=stack.mqtt_host,
            port=stack.ports.mqtt_tls,
            ca_file=stack.ca_file,
            password=stack.platform_password,
        )
        restarted_at = time.time()
        time.sleep(4)
        acked = devices_out.stop()
        expected = expected_beds(acked)
        presses = sorted((x.dev, x.ts) for x in acked.of_type(m.Button))
        try:
            wait_for(
                lambda: sorted_stored_beds(stack.database_url, site) == expected or None, 60, "every reading, once"
            )
        except AssertionError:
            stored = sorted_stored_beds(stack.database_url, site)
            print(gateway.log()[-5000:])
            print(own_platform.log()[-5000:])
            raise AssertionError(bed_difference(expected, stored)) from None
        wait_for(lambda: len(stored_events(stack.database_url, site)) >= len(presses), 30, "every press")
        events = stored_events(stack.database_url, site)
        assert sorted((d, t) for d, t, _, _ in events) == presses  # exactly once, and nothing else: no faults
        assert all(k == "button" for _, _, k, _ in events)
        status = httpx.get(f"http://127.0.0.1:{setup.local_port}/api/status").json()
        assert status["dropped"] == 0
        assert status["offline_devices"] == []
        assert status["uplink"]["connects"] >= 2
    assert sum(len(v) for v in expected.values()) >= 45 * (4 + OUTAGE_S + 4) - 45

    # Alarms first: the backlog's first frame cut after the outage is the alarm frame (one counter for both
    # lanes, so seq is the order the gateway cut and sent them), and telemetry was only cut after its PUBACK.
    frames = frames_received(stack.database_url, site)
    after = sorted((seq, lane) for lane, seq, at in frames if at >= restarted_at)
    assert after, "nothing was received after the broker came back"
    assert after[0][1] == "alarm", after[:5]
    backlog_alarm = after[0][0]
    assert all(seq > backlog_alarm for seq, lane in after if lane == "telemetry")
