"""Frames built to break the parser, on the alarm lane of a real ingest: what is too deep is parked, the
presses beside and after it are stored, and a writer that fails for any other reason stops ingest instead of
leaving it subscribed and storing nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.platform_procs import TEST_SESSION_EXPIRY_S

from eldercare.devices import messages as m
from eldercare.ingest import service
from eldercare.ingest.lane import Lane
from eldercare.ingest.settings import IngestSettings
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadWorld

from .conftest import broker_settings
from .helpers import Gateway, now_ms, scalar, wait_until

DEEP = b"[" * 5000 + b"]" * 5000


def _presses(db: str, world: LoadWorld) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.code = %s",
            (world.gateways[0].button,),
        )
    )


def test_a_frame_too_deep_to_parse_does_not_stop_the_alarm_lane(
    stack: StackInfo, world: LoadWorld, db: str, run_ingest: Callable[..., Any]
) -> None:
    gateway = Gateway(stack, world)
    before = _presses(db, world)
    last = scalar(db, "SELECT coalesce(max(id), 0) FROM parked_messages")
    with run_ingest() as ingest:
        press = m.encode(gateway.press()).decode()
        epoch, sent = gateway.epoch, now_ms()
        deep_neighbour = b'{"v":1,"epoch":%d,"seq":0,"sent":%d,"msgs":[%s,{"t":"button","x":%s}]}' % (
            epoch, sent, press.encode(), DEEP
        )  # fmt: skip
        unterminated = b'{"v":1,"epoch":%d,"seq":1,"sent":%d,"msgs":[%s,%s' % (epoch, sent, press.encode(), DEEP[:5000])
        gateway.seq = 2
        gateway.send(deep_neighbour, alarm=True)
        gateway.send(unterminated, alarm=True)
        gateway.send(gateway.frame([gateway.press(ts=now_ms() + 1)]), alarm=True)
        gateway.flush()
        wait_until(lambda: _presses(db, world) == before + 2, timeout=20, what="the two storable presses")
        parked = scalar(
            db,
            "SELECT array_agg(reason ORDER BY reason) FROM parked_messages WHERE topic = %s AND id > %s",
            (gateway.topic(alarm=True), last),
        )
        assert parked == ["frame: JSON nested too deeply", "msgs[1]: JSON nested too deeply"]
        assert ingest.alarm._writer.is_alive()
    gateway.close()


@pytest.fixture
def failing_commit(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A lane's commit that raises once, as a bug of ours would (nothing a message can do reaches it now)."""
    raised = threading.Event()
    commit = Lane._commit

    def once(self: Lane, items: Any, decoded: Any) -> None:
        if self.kind == "alarm" and not raised.is_set():
            raised.set()
            raise RuntimeError("a bug")
        commit(self, items, decoded)

    monkeypatch.setattr(Lane, "_commit", once)
    yield raised


def test_a_writer_that_fails_stops_ingest_and_its_messages_wait_for_the_next_start(
    stack: StackInfo, world: LoadWorld, db: str, vault: Vault, group: str, failing_commit: threading.Event
) -> None:
    reasons: list[str] = []
    settings = IngestSettings(
        ingest_name="f",
        ingest_group=group,
        ingest_maintain=False,
        ingest_metrics_port=None,
        ingest_session_expiry_s=TEST_SESSION_EXPIRY_S,
    )
    broker = broker_settings(stack)
    before = _presses(db, world)
    gateway = Gateway(stack, world)
    ingest = service.build(settings=settings, broker=broker, database_url=db, vault=vault, on_fatal=reasons.append)
    ingest.start()
    try:
        assert ingest.wait_subscribed(20)
        gateway.send(gateway.frame([gateway.press()]), alarm=True)
        wait_until(lambda: reasons, timeout=20, what="the failure to be reported")
        assert reasons == [f"the {ingest.alarm.config.client_id} writer failed"] and failing_commit.is_set()
        wait_until(lambda: not ingest.alarm._writer.is_alive(), timeout=5, what="the writer to end")
        assert _presses(db, world) == before
    finally:
        ingest.stop()
    again = service.build(settings=settings, broker=broker, database_url=db, vault=vault)  # as its supervisor would
    again.start()
    try:
        wait_until(lambda: _presses(db, world) == before + 1, timeout=20, what="the press, from the kept session")
    finally:
        again.stop()
        gateway.close()
