"""SIGKILL of a real `eldercare ingest` process in the middle of a stream, and a process scaled down for good.

Mosquitto 2.0.11 keeps the killed member's unacknowledged messages in its session, and goes on queueing
its share of new ones there, until a client with its id comes back. The first test shows ingest's answer
(the survivors adopt and drain the session); the second shows the broker's behaviour on its own (adoption
off: the messages wait until the process restarts under the same name, then nothing is lost either); the
third, a process stopped cleanly that never comes back: its sessions are drained and ended, and the broker
routes nothing more to them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import psycopg

from eldercare.ingest.mqtt import Connection, Endpoint
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.load import LoadReport, LoadWorld, Target, run_load

from ..platform_procs import Proc, run_eldercare, stack_env
from .conftest import new_world
from .helpers import duplicate_readings, scalar, stored_frames, stored_readings, wait_until

READINGS = 10


def _load_in_background(stack: StackInfo, world: LoadWorld, *, duration: float) -> Callable[[], LoadReport]:
    reports: list[LoadReport] = []
    target = Target(stack.mqtt_host, stack.ports.mqtt_tls, True, stack.ca_file)

    def publish() -> None:
        reports.append(
            run_load(world, target=target, rate=150, duration=duration, readings=READINGS, alarm_rate=4, seed=3)
        )

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()

    def join() -> LoadReport:
        thread.join(duration + 60)
        assert reports, "the load generator failed"
        return reports[0]

    return join


def _events(db: str, world: LoadWorld) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.institution_id = %s",
            (world.institution_id,),
        )
    )


def _assert_exactly_once(db: str, world: LoadWorld, report: LoadReport, *, timeout: float) -> None:
    assert report.unacknowledged == 0
    expected = report.frames + report.alarm_frames
    wait_until(lambda: stored_frames(db, world) >= expected, timeout=timeout, what=f"{expected} frames stored")
    assert stored_frames(db, world) == expected
    assert stored_readings(db, world) == report.frames * READINGS
    assert duplicate_readings(db, world) == 0
    assert _events(db, world) == report.alarm_frames


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def _env(stack: StackInfo, group: str, **extra: str) -> dict[str, str]:
    return stack_env(
        stack,
        ELDERCARE_INGEST_GROUP=group,
        ELDERCARE_INGEST_MAINTAIN="false",
        ELDERCARE_INGEST_ADOPT_GRACE_S="1",
        **extra,
    )


def _wait_subscribed(*procs: Proc) -> None:
    for proc in procs:
        proc.wait_for("subscribed, storing", timeout=30)


@contextmanager
def _two_members(stack: StackInfo, group: str, *, slow: str, other: str, port: int) -> Iterator[tuple[Proc, Proc]]:
    """Two subscribed members of ``group``. ``slow`` commits a telemetry batch every 2 s, so that when it stops
    it surely holds unacknowledged messages; ``other`` serves its metrics on ``port``."""
    slow_env = _env(stack, group, ELDERCARE_INGEST_BATCH_MAX_WAIT_MS="2000")
    other_args = ["ingest", "--name", other, "--metrics-port", str(port)]
    with (
        run_eldercare(slow, ["ingest", "--name", slow], slow_env) as first,
        run_eldercare(other, other_args, _env(stack, group)) as second,
    ):
        _wait_subscribed(first, second)
        yield first, second


def test_the_survivor_adopts_a_killed_process_session_and_every_frame_is_stored_once(
    stack: StackInfo, db: str, group: str, free_port: Callable[[], int]
) -> None:
    world = new_world(stack, db, gateways=3, beds=30)
    port = free_port()
    with _two_members(stack, group, slow="slow", other="survivor", port=port) as (slow, survivor):
        finished = _load_in_background(stack, world, duration=8)
        wait_until(lambda: stored_frames(db, world) > 100, timeout=20, what="the stream to flow")
        slow.popen.send_signal(signal.SIGKILL)
        slow.popen.wait(10)
        report = finished()
        _assert_exactly_once(db, world, report, timeout=60)
        survivor.wait_for(f"{group}-slow-telemetry is gone; adopting its session", timeout=10)
        survivor.wait_for(f"drained {group}-slow-telemetry; ending its session", timeout=30)
        survivor.wait_for(f"drained {group}-slow-alarm; ending its session", timeout=30)
        assert _metric(port, "eldercare_ingest_redeliveries_total") > 0  # what "slow" held came back
    with psycopg.connect(db) as conn:
        members = conn.execute("SELECT client_id FROM ingest_members WHERE grp = %s ORDER BY 1", (group,)).fetchall()
    assert members == [(f"{group}-survivor-alarm",), (f"{group}-survivor-telemetry",)]


def test_without_adoption_the_messages_wait_for_the_process_to_come_back_under_its_name(
    stack: StackInfo, db: str, group: str
) -> None:
    world = new_world(stack, db, gateways=3, beds=30)
    env = _env(stack, group, ELDERCARE_INGEST_ADOPT="false", ELDERCARE_INGEST_BATCH_MAX_WAIT_MS="2000")
    with run_eldercare(
        "other", ["ingest", "--name", "other"], _env(stack, group, ELDERCARE_INGEST_ADOPT="false")
    ) as other:
        with run_eldercare("victim", ["ingest", "--name", "victim"], env) as victim:
            _wait_subscribed(victim, other)
            finished = _load_in_background(stack, world, duration=4)
            wait_until(lambda: stored_frames(db, world) > 50, timeout=20, what="the stream to flow")
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait(10)
            report = finished()
        expected = report.frames + report.alarm_frames
        threading.Event().wait(1)  # the survivor's last batch
        stuck_at = stored_frames(db, world)
        threading.Event().wait(3)  # and then nothing more: the rest waits in the killed member's session
        assert stored_frames(db, world) == stuck_at < expected
        with run_eldercare("victim-again", ["ingest", "--name", "victim"], env) as again:
            _wait_subscribed(again)
            _assert_exactly_once(db, world, report, timeout=60)


def _session_present(stack: StackInfo, client_id: str) -> bool:
    """Connect once with ``client_id`` (clean start off) and say whether the broker still had its session."""
    seen: list[bool] = []
    endpoint = Endpoint(
        stack.mqtt_host, stack.ports.mqtt_tls, True, stack.ca_file, stack.platform_username, stack.platform_password
    )
    link = Connection(
        endpoint=endpoint,
        client_id=client_id,
        session_expiry_s=0,
        reconnect=False,
        on_connected=lambda info: seen.append(info.session_present),
    )
    link.start()
    try:
        assert link.wait_connected(10), link.last_error
    finally:
        link.stop(session_expiry_s=0)
    return seen[0]


def test_a_process_scaled_down_for_good_is_drained_its_sessions_ended_and_nothing_more_routed_to_them(
    stack: StackInfo, db: str, group: str, free_port: Callable[[], int]
) -> None:
    world = new_world(stack, db, gateways=3, beds=30)
    with _two_members(stack, group, slow="leaving", other="staying", port=free_port()) as (leaving, staying):
        finished = _load_in_background(stack, world, duration=6)
        wait_until(lambda: stored_frames(db, world) > 100, timeout=20, what="the stream to flow")
        leaving.popen.send_signal(signal.SIGTERM)  # scaled down: a clean stop, and it never comes back
        assert leaving.popen.wait(30) == 0
        first = finished()
        _assert_exactly_once(db, world, first, timeout=60)
        for lane in ("telemetry", "alarm"):
            staying.wait_for(f"drained {group}-leaving-{lane}; ending its session", timeout=30)
        # the broker no longer has the sessions, so it queues nothing for them: a second stream goes all to
        # the survivor, and is stored completely without anyone coming back
        second = _load_in_background(stack, world, duration=3)()
        expected = first.frames + first.alarm_frames + second.frames + second.alarm_frames
        wait_until(lambda: stored_frames(db, world) >= expected, timeout=30, what=f"{expected} frames stored")
        assert stored_frames(db, world) == expected
        assert stored_readings(db, world) == (first.frames + second.frames) * READINGS
        assert duplicate_readings(db, world) == 0
    for lane in ("telemetry", "alarm"):
        assert not _session_present(stack, f"{group}-leaving-{lane}")
    with psycopg.connect(db) as conn:
        members = conn.execute("SELECT client_id FROM ingest_members WHERE grp = %s ORDER BY 1", (group,)).fetchall()
    assert members == [(f"{group}-staying-alarm",), (f"{group}-staying-telemetry",)]
