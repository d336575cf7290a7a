"""The gateway killed with SIGKILL in the middle of a stream and started again: nothing it had acknowledged
to a device (HTTP 200; for devices on the home broker, the gateway's PUBACK to it) is lost, nothing is stored
twice, and the store's epoch and sequence carry on. A fall a killed gateway carried (its store had refused it)
reaches the platform after the restart."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.gateway.support import (
    Fleet,
    HomeBroker,
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
from eldercare.gateway.carried import CarriedFile, path_for
from eldercare.platform.stack.model import StackInfo


def test_sigkill_mid_stream_loses_nothing_acknowledged(
    stack: StackInfo, platform: Proc, home: HomeBroker, tmp_path: Path
) -> None:
    devices = fleet("kil", {"bed_sensor": 40, "button": 4})
    site = register_site(stack, seed=303, devices=devices)
    setup = write_config(tmp_path / "gw", site=site, stack=stack, home_port=home.port)
    beds = [d for d, k in devices.items() if k == "bed_sensor"]
    env = stack_env(stack)
    devices_out = Fleet(
        mqtt_beds=[],
        http_beds=beds[20:],
        buttons=[d for d, k in devices.items() if k == "button"],
        home_port=None,
        http_url=f"http://127.0.0.1:{setup.http_port}/v1/devices",
        t0=now_ms() - 3_600_000,
        period_s=0.2,  # 5 readings a second per device: 200 a second
        press_every=4,
    )
    # Half the beds on the home broker: their own fleet object, same clock.
    on_broker = Fleet(
        mqtt_beds=beds[:20],
        http_beds=[],
        buttons=[],
        home_port=home.port,
        http_url=None,
        t0=devices_out.t0,
        period_s=0.2,
    )
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], env) as first:
        first.wait_for("running", timeout=30)
        first.wait_for("subscribed to", timeout=30)
        devices_out.start()
        on_broker.start()
        time.sleep(3)
        first.popen.kill()  # SIGKILL: no goodbye, no flush, nothing
        first.popen.wait()
    time.sleep(1.5)  # devices keep sending into the void (HTTP fails and is retried; the broker keeps the rest)
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], env) as second:
        second.wait_for("running", timeout=30)
        second.wait_for("subscribed to", timeout=30)
        time.sleep(3)
        acked = devices_out.stop()
        for message in on_broker.stop().messages:
            acked.add(message)
        expected = expected_beds(acked)
        presses = sorted((x.dev, x.ts) for x in acked.of_type(m.Button))

        def complete() -> bool:
            stored = sorted_stored_beds(stack.database_url, site)
            return all(set(times) <= set(stored.get(dev, [])) for dev, times in expected.items())

        wait_for(complete, 60, "every acknowledged reading on the platform")
        stored = sorted_stored_beds(stack.database_url, site)
        for dev, times in stored.items():
            assert len(times) == len(set(times)), f"{dev} stored twice: {Counter(times).most_common(3)}"
        events = wait_for(lambda: stored_events(stack.database_url, site) or None, 30, "the presses")
        wait_for(lambda: len(stored_events(stack.database_url, site)) >= len(presses), 30, "all presses")
        events = stored_events(stack.database_url, site)
        stored_presses = [(d, t) for d, t, k, _ in events if k == "button"]
        assert set(presses) <= set(stored_presses)
        assert len(stored_presses) == len(set(stored_presses))
        assert [k for _, _, k, _ in events if k != "button"] == []  # no device went "offline"
    assert devices_out.http_failures > 0, "the kill did not hit the stream"
    assert sum(len(t) for t in expected.values()) > 1000
    frames = frames_received(stack.database_url, site)
    seqs = sorted(seq for _, seq, _ in frames)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the sequence has gaps or repeats"


def test_a_fall_the_killed_gateway_carried_is_sent_after_the_restart(
    stack: StackInfo, platform: Proc, tmp_path: Path
) -> None:
    """The carried file a gateway killed while its store refused leaves beside the store (tests/gateway/
    test_carried.py makes one that way): the started gateway stores its fall before anything else, sends it,
    and removes the file."""
    site = register_site(stack, seed=304, devices=fleet("car", {"fall_radar": 1}))
    setup = write_config(tmp_path / "gw", site=site, stack=stack)
    (radar,) = site.devices
    fall = m.Fall(dev=radar, ts=now_ms() - 60_000, source="radar", confidence=0.9)
    carried = CarriedFile(path_for(setup.store))
    carried.save([fall])
    with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
        gateway.wait_for("1 message(s) of refused commits carried from before the restart", timeout=30)
        events = wait_for(lambda: stored_events(stack.database_url, site), 30, "the carried fall on the platform")
        assert [(d, t, k) for d, t, k, _ in events] == [(radar, fall.ts, "fall")]
        assert not carried.path.exists()
