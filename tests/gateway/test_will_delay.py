"""The gateway's last will is held back by the platform's broker (MQTT 5 will delay): a gateway whose connection
dropped and came straight back is never marked dead, one that is gone is, ``WILL_DELAY_S`` later."""

from __future__ import annotations

import queue
import time
from pathlib import Path

from tests.gateway.support import LinkCutter, fleet, register_site, write_config
from tests.gateway.test_end_to_end import StatusWatcher
from tests.platform_procs import Proc, run_eldercare, stack_env

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.gateway.uplink import WILL_DELAY_S
from eldercare.platform.stack.model import StackInfo


def statuses_for(watcher: StatusWatcher, seconds: float) -> list[m.StatusMessage]:
    """Every status the platform's broker delivers in the next ``seconds``."""
    seen: list[m.StatusMessage] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(watcher.messages.get(timeout=left)[1])
        except queue.Empty:
            break
    return seen


def test_a_gateway_back_at_once_is_never_marked_dead_and_one_gone_is_after_the_will_delay(
    stack: StackInfo, platform: Proc, tmp_path: Path
) -> None:
    site = register_site(stack, seed=314, devices=fleet("wil", {"button": 1}))
    link = LinkCutter(stack.ports.mqtt_tls)
    link.restore()
    setup = write_config(tmp_path / "gw", site=site, stack=stack, uplink={"port": link.port})
    watcher = StatusWatcher(stack, topics.uplink(site.institution, site.gateway, topics.Channel.STATUS))
    try:
        with run_eldercare("gateway", ["gateway", "--config", str(setup.config)], stack_env(stack)) as gateway:
            watcher.next(m.Birth, timeout=30)
            link.cut()  # the connection drops (the broker sees it closed) and comes straight back
            time.sleep(1)
            link.restore()
            seen = statuses_for(watcher, WILL_DELAY_S + 5)
            assert [s for s in seen if isinstance(s, m.Birth)], seen  # it is back
            # Before, the broker published the will as the connection dropped: a live gateway marked dead.
            assert not [s for s in seen if isinstance(s, m.Death)], seen

            gateway.popen.kill()  # gone for good: no goodbye
            killed = time.monotonic()
            _, death = watcher.next(m.Death, timeout=WILL_DELAY_S + 30)
            took = time.monotonic() - killed
    finally:
        watcher.close()
        link.cut()
    assert not death.clean
    assert WILL_DELAY_S - 1 <= took <= WILL_DELAY_S + 30, took
