"""CPU per received and acknowledged QoS 1 message: paho-mqtt (manual acks) against ingest's own client.

    .venv/bin/python bench/ingest_client.py [--messages 100000] [--readings 1]

The question it answers: ingest reads MQTT with its own client (``ingest/mqtt.py``) although the project
prefers paho-mqtt for hot paths; what does that buy? Both clients get the same job, the receiving half of
an ingest lane, and nothing else: a persistent session holding ``--messages`` queued QoS 1 messages (frames
of ``--readings`` bed samples, as gateways send them), which the client receives with a receive maximum of
10,000 and hands to a worker thread that acknowledges them in batches (what a lane does after a commit;
paho acknowledges one message per call, ``Client.ack``, ingest's client a batch per call). The messages are
queued at the broker before the client connects, so the publisher's CPU is not in the figure; the figure is
the consumer process's CPU (all its threads, ``getrusage``) from before it connects until it has
disconnected, divided by the messages. After each run the session is opened again: nothing may be left in
it (everything was acknowledged). Plain MQTT on the broker's local listener, as ingest reads it.

Run alone it starts a throwaway stack; ``bench/ingest_throughput.py`` runs it on its own stack.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ingest_support import throwaway_stack

from eldercare.ingest.mqtt import Connection, Endpoint, Message
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.publisher import Publisher

CLIENTS = ("ingest/mqtt.py", "paho-mqtt")
_RECEIVE_MAXIMUM = 10_000
_SESSION_S = 3600
T = TypeVar("T")


def _endpoint(stack: StackInfo) -> Endpoint:
    return Endpoint("127.0.0.1", stack.ports.mqtt, False, None, stack.platform_username, stack.platform_password)


def _payload(readings: int) -> bytes:
    body = b",".join(
        b'{"t":"bed","dev":"LB-000001-%05d","ts":%d,"presence":true,"hr":71.8,"rr":15.9,"move":0.12}'
        % (i, 1_760_000_000_000 + i)
        for i in range(readings)
    )
    return b'{"v":1,"epoch":1760000000000,"seq":1,"sent":1760000000000,"msgs":[%s]}' % body


def _preload(stack: StackInfo, *, client_id: str, topic: str, messages: int, payload: bytes) -> None:
    """A persistent session subscribed to ``topic`` and disconnected, then ``messages`` published to it."""
    session = Connection(endpoint=_endpoint(stack), client_id=client_id, session_expiry_s=_SESSION_S, subscribe=[topic])
    session.start()
    try:
        if not session.subscribed.wait(10):
            raise RuntimeError(f"{client_id} did not subscribe: {session.last_error}")
    finally:
        session.stop()
    publisher = Publisher()
    try:
        publisher.connect(_endpoint(stack), client_id=f"{client_id}-publisher")
        for _ in range(messages):
            while not publisher.queue(0, topic, payload):
                publisher.pump(0.01)
        deadline = time.monotonic() + 120
        while publisher.inflight() and time.monotonic() < deadline:
            publisher.pump(0.05)
        if publisher.inflight():
            raise RuntimeError(f"the broker did not take every message: {publisher.inflight()} unacknowledged")
    finally:
        publisher.close()


def _leftover(stack: StackInfo, *, client_id: str) -> int:
    """Open the session again: how many messages it still had (unacknowledged ones come back); then end it."""
    got: list[Message] = []
    link = Connection(endpoint=_endpoint(stack), client_id=client_id, session_expiry_s=0, on_message=got.append)
    link.start()
    try:
        link.wait_connected(10)
        time.sleep(1.0)
    finally:
        link.stop(session_expiry_s=0)
    return len(got)


# --- the consumer process ---------------------------------------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _acker(inbox: queue.SimpleQueue[T], count: int, ack: Callable[[list[T]], object], done: threading.Event) -> None:
    """A lane's writer without the database: take what has arrived (up to 2,000), acknowledge it all."""
    acked = 0
    while acked < count:
        batch = [inbox.get()]
        while len(batch) < 2000:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        ack(batch)
        acked += len(batch)
    done.set()


def _consume_ours(stack: StackInfo, client_id: str, count: int) -> None:
    inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
    done = threading.Event()
    link = Connection(
        endpoint=_endpoint(stack),
        client_id=client_id,
        session_expiry_s=_SESSION_S,
        receive_maximum=_RECEIVE_MAXIMUM,
        on_message=inbox.put,
    )
    threading.Thread(target=_acker, args=(inbox, count, link.ack, done), daemon=True).start()
    link.start()
    if not done.wait(300):
        raise RuntimeError("ingest/mqtt.py: not every message arrived")
    link.stop()  # the acknowledgements still queued are written before the DISCONNECT


def _consume_paho(stack: StackInfo, client_id: str, count: int) -> None:
    inbox: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
    client.username_pw_set(stack.platform_username, stack.platform_password)
    client.on_message = lambda _c, _u, message: inbox.put(message)

    def ack(batch: list[mqtt.MQTTMessage]) -> None:
        for message in batch:  # paho has no batch acknowledgement
            client.ack(message.mid, message.qos)

    threading.Thread(target=_acker, args=(inbox, count, ack, done), daemon=True).start()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
    properties.SessionExpiryInterval = _SESSION_S
    properties.ReceiveMaximum = _RECEIVE_MAXIMUM
    client.connect("127.0.0.1", stack.ports.mqtt, clean_start=False, properties=properties)
    client.loop_start()
    if not done.wait(300):
        raise RuntimeError("paho-mqtt: not every message arrived")
    client.disconnect()  # queued after the acknowledgements
    client.loop_stop()


def consume(stack: StackInfo, *, client: str, client_id: str, count: int) -> dict[str, float]:
    """In the consumer process: receive and acknowledge ``count`` queued messages; CPU and wall seconds."""
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    if client == CLIENTS[0]:
        _consume_ours(stack, client_id, count)
    else:
        _consume_paho(stack, client_id, count)
    return {"cpu_s": _cpu_s() - cpu0, "wall_s": time.perf_counter() - wall0}


# --- the comparison ---------------------------------------------------------------------------------------


def compare(stack: StackInfo, *, messages: int, readings: int) -> dict[str, Any]:
    """Each client in a fresh process on ``messages`` queued frames of ``readings`` readings."""
    payload = _payload(readings)
    results: dict[str, Any] = {"messages": messages, "readings_per_message": readings, "payload_bytes": len(payload)}
    for index, client in enumerate(CLIENTS):
        client_id = f"bench-client-{index}-{os.getpid()}-{readings}"
        topic = f"eldercare/v1/BENCH/CLIENT{index}/cmd/bench"
        _preload(stack, client_id=client_id, topic=topic, messages=messages, payload=payload)
        args = [sys.executable, __file__, "--consume", client, "--client-id", client_id, "--messages", str(messages)]
        env = dict(os.environ, ELDERCARE_STATE_DIR=str(stack.state_dir))
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=600)
        if done.returncode:
            raise RuntimeError(f"{client} consumer failed:\n{done.stdout}\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["us_per_message"] = figures["cpu_s"] / messages * 1e6
        figures["messages_per_s"] = messages / figures["wall_s"]
        figures["left_unacknowledged"] = _leftover(stack, client_id=client_id)
        results[client] = figures
    ours, paho = results[CLIENTS[0]], results[CLIENTS[1]]
    results["paho_over_ours"] = paho["us_per_message"] / ours["us_per_message"]
    return results


def describe(results: dict[str, Any]) -> str:
    ours, paho = results[CLIENTS[0]], results[CLIENTS[1]]
    lines = [
        f"receive + acknowledge, {results['messages']:,} queued QoS 1 messages of {results['readings_per_message']}"
        f" reading(s) ({results['payload_bytes']} bytes), receive maximum {_RECEIVE_MAXIMUM:,}:"
    ]
    for name, figures in ((CLIENTS[0], ours), (CLIENTS[1], paho)):
        lines.append(
            f"  {name:<15} {figures['us_per_message']:6.1f} µs CPU a message, {figures['messages_per_s']:9,.0f}"
            f" messages/s, {figures['left_unacknowledged']} left unacknowledged"
        )
    lines.append(f"  paho-mqtt / ingest/mqtt.py: {results['paho_over_ours']:.1f}x the CPU a message")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--readings", type=int, default=1, help="bed samples per message (frame)")
    parser.add_argument("--consume", choices=CLIENTS, help=argparse.SUPPRESS)  # the consumer process
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        from eldercare.platform.stack import service

        stack = service.load(Path(os.environ["ELDERCARE_STATE_DIR"]))
        print(json.dumps(consume(stack, client=args.consume, client_id=args.client_id, count=args.messages)))
        return 0
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    with throwaway_stack() as stack:
        print(describe(compare(stack, messages=args.messages, readings=args.readings)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
