"""The simulated gateway's uplink against a real Mosquitto with nobody subscribed yet: a frame the broker
answers with reason 16 (no matching subscribers) is not lost but sent again until someone takes it."""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tests.gateway.support import home_broker

from eldercare.devices import codes, topics
from eldercare.devices import messages as m
from eldercare.simulators import uplink as sim
from eldercare.simulators.uplink import SimUplink, now_ms


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


def test_a_frame_nobody_subscribed_to_is_sent_again_until_taken() -> None:
    institution = codes.generate_uscc(random.Random(3), region6="420525")
    with home_broker() as broker:
        link = SimUplink(institution=institution, gateway="GW-RESEND", password="x", host="127.0.0.1",
                         port=broker.port, ca_file=None)  # fmt: skip
        link.connect()
        try:
            button = m.Button(dev="BTN-1", ts=now_ms(), action=m.ButtonAction.PRESS)
            link.send([button], alarm=True)
            # nobody subscribed: the broker answers 16, and the frame is still owed
            _wait(lambda: link.resent >= 2, 3 * sim.RESEND_AFTER_S + 2, "the frame was not sent again")
            assert link.unacknowledged() == 1
            got: queue.Queue[bytes] = queue.Queue()
            listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingest-late", protocol=mqtt.MQTTv5)
            listener.on_message = lambda _c, _u, msg: got.put(bytes(msg.payload))
            listener.connect("127.0.0.1", broker.port)
            listener.subscribe(topics.uplink(institution, "GW-RESEND", topics.Channel.ALARM), qos=1)
            listener.loop_start()
            try:
                frame = m.decode_frame(got.get(timeout=3 * sim.RESEND_AFTER_S + 2))
                assert (frame.seq, frame.msgs) == (0, [button])
                _wait(lambda: link.unacknowledged() == 0, 5, "the broker's acknowledgement was not counted")
            finally:
                listener.loop_stop()
                listener.disconnect()
        finally:
            link.close()
