"""The lean MQTT 5 client against the real Mosquitto (TLS, passwords, ACL)."""

from __future__ import annotations

import threading

from eldercare.ingest.mqtt import Backoff, Connection, Endpoint, Message
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .helpers import Gateway, wait_until


def _platform(stack: StackInfo, *, password: str | None = None) -> Endpoint:
    return Endpoint(
        stack.mqtt_host,
        stack.ports.mqtt_tls,
        True,
        stack.ca_file,
        stack.platform_username,
        password if password is not None else stack.platform_password,
    )


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)


def test_a_wrong_password_is_refused_with_the_brokers_reason(stack: StackInfo) -> None:
    link = Connection(
        endpoint=_platform(stack, password="not-the-password"), client_id="test-refused", session_expiry_s=0
    )
    link.start()
    try:
        wait_until(lambda: link.last_error, timeout=10, what="the refusal")
        assert not link.connected
        assert "refused 'test-refused'" in link.last_error
        assert "not authorized" in link.last_error or "bad user name or password" in link.last_error
    finally:
        link.stop()


def test_unacknowledged_messages_come_back_after_a_reconnect_and_only_they(stack: StackInfo, world: LoadWorld) -> None:
    gateway = Gateway(stack, world)
    inbox = _Inbox()
    topic = gateway.topic(alarm=False)
    first = Connection(
        endpoint=_platform(stack), client_id="test-resume", session_expiry_s=300, subscribe=[topic], on_message=inbox
    )
    first.start()
    try:
        assert first.subscribed.wait(10)
        for i in range(5):
            gateway.send(gateway.frame(gateway.beds(1), seq=i))
        wait_until(lambda: len(inbox.messages) == 5, timeout=10, what="five messages")
        assert first.ack(inbox.messages[:2]) == 2
        gateway.flush()
    finally:
        first.stop()
    assert {m.generation for m in inbox.messages} == {1}
    old = list(inbox.messages)
    inbox.messages.clear()
    again = Connection(endpoint=_platform(stack), client_id="test-resume", session_expiry_s=300, on_message=inbox)
    again.start()
    try:
        wait_until(lambda: len(inbox.messages) == 3, timeout=10, what="the three unacknowledged messages")
        assert [m.payload for m in inbox.messages] == [m.payload for m in old[2:]]
        assert all(m.dup and m.generation == 1 for m in inbox.messages)  # generation of the new connection
        assert again.ack(inbox.messages) == 3
        assert again.ack(old) == 0 or again.generation == 1  # a message of another connection is never acked
    finally:
        again.stop(session_expiry_s=0)
        gateway.close()


def test_old_generation_messages_are_not_acknowledged(stack: StackInfo, world: LoadWorld) -> None:
    gateway = Gateway(stack, world)
    inbox = _Inbox()
    link = Connection(
        endpoint=_platform(stack),
        client_id="test-generations",
        session_expiry_s=300,
        subscribe=[gateway.topic(alarm=True)],
        on_message=inbox,
        backoff=Backoff(first_s=0.05, max_s=0.1),
    )
    link.start()
    try:
        assert link.subscribed.wait(10)
        gateway.send(gateway.frame([gateway.press()]), alarm=True)
        wait_until(lambda: inbox.messages, timeout=10, what="the alarm frame")
        stale = inbox.messages[0]
        # take the session over from outside: the link reconnects (generation 2) and gets the frame again
        intruder = Connection(endpoint=_platform(stack), client_id="test-generations", session_expiry_s=300)
        intruder.start()
        assert intruder.wait_connected(10)
        intruder.stop()
        wait_until(lambda: link.generation >= 2 and link.connected, timeout=10, what="the link to reconnect")
        wait_until(lambda: len(inbox.messages) >= 2, timeout=10, what="the resent frame")
        assert link.ack([stale]) == 0
        resent = inbox.messages[-1]
        assert resent.payload == stale.payload and resent.dup
        assert link.ack([resent]) == 1
    finally:
        link.stop(session_expiry_s=0)
        gateway.close()


def test_a_connection_told_not_to_reconnect_ends_when_its_session_is_taken_over(stack: StackInfo) -> None:
    adopted = Connection(endpoint=_platform(stack), client_id="test-takeover", session_expiry_s=60, reconnect=False)
    adopted.start()
    owner = Connection(endpoint=_platform(stack), client_id="test-takeover", session_expiry_s=60)
    try:
        assert adopted.wait_connected(10)
        owner.start()
        assert owner.wait_connected(10)
        assert adopted.ended.wait(10), "the taken-over connection went on"
        assert not adopted.connected
        assert owner.connected and owner.generation == 1
    finally:
        owner.stop(session_expiry_s=0)
        adopted.stop()


def test_backoff_is_exponential_with_full_jitter() -> None:
    backoff = Backoff(first_s=0.5, max_s=30)
    for attempt, step in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 150  # jittered, not a fixed schedule
