"""One alarm, end to end: a button press published as a gateway publishes it reaches GET /api/v1/alarms
within 1 s, through the real broker (TLS, password, ACL), ingest, TimescaleDB and the alarm engine; a
malformed payload on the same topic is parked with its raw bytes and reason and stops nothing."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from tests.platform_procs import Proc, run_eldercare, stack_env, wait_http

from eldercare.devices import messages as m
from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import PARKED_PAYLOAD, Vault
from eldercare.platform.db.migrate import migrate
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import SeededHome, seed_home
from eldercare.simulators.uplink import SimUplink, now_ms

PROCS: dict[str, Proc] = {}


@pytest.fixture(scope="module")
def platform(stack: StackInfo) -> Iterator[str]:
    migrate(stack.database_url)
    env = stack_env(stack)
    with (
        run_eldercare("ingest", ["ingest", "--name", "e2e"], env) as ingest,
        run_eldercare("serve", ["serve", "--port", str(stack.ports.api)], env) as serve,
    ):
        base = f"http://127.0.0.1:{stack.ports.api}"
        wait_http(f"{base}/healthz", timeout=30)
        ingest.wait_for("subscribed, storing", timeout=30)
        serve.wait_for("alarm engine: listening", timeout=30)
        PROCS["ingest"], PROCS["serve"] = ingest, serve
        yield base


@pytest.fixture(scope="module")
def home(stack: StackInfo, platform: str) -> SeededHome:
    key = SecuritySettings(_env_file=stack.state_dir / "eldercare.env").key_bytes()

    async def seed() -> SeededHome:
        async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
            return await seed_home(
                conn,
                vault=Vault(key),
                broker=LocalBroker(stack.state_dir),
                rng=random.Random(7),
                staff_password="nurse-password-1",
            )

    return asyncio.run(seed())


@pytest.fixture
def uplink(stack: StackInfo, home: SeededHome) -> Iterator[SimUplink]:
    link = SimUplink(
        institution=home.institution_code,
        gateway=home.gateway.gateway_id,
        password=home.gateway.password,
        host=stack.mqtt_host,
        port=stack.ports.mqtt_tls,
        ca_file=stack.ca_file,
    )
    link.connect()
    yield link
    link.close()


def _token(base: str, home: SeededHome) -> str:
    reply = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": home.staff_username, "password": home.staff_password}
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


def _wait_alarm(base: str, token: str, device: str, *, after: float, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.get(
            f"{base}/api/v1/alarms", params={"open": "true"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 200, reply.text
        for alarm in reply.json():
            if alarm["device_code"] == device and alarm["occurred_at"] and _epoch(alarm["occurred_at"]) >= after:
                return dict(alarm)
        time.sleep(0.01)
    raise AssertionError(f"no alarm for {device} within {timeout} s")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _button(home: SeededHome, index: int = 0) -> str:
    return [d for d in home.devices if d.kind == "button"][index].code


def test_button_press_becomes_an_alarm_within_one_second(
    stack: StackInfo, platform: str, home: SeededHome, uplink: SimUplink, vault: Vault
) -> None:
    token = _token(platform, home)
    button = _button(home)
    device = next(d for d in home.devices if d.code == button)
    malformed = b'{"v":1,"epoch":1,"seq":"not a number","sent":1,"msgs":[]}'

    uplink.send_raw(malformed, alarm=True).wait_for_publish(5)
    pressed_at = now_ms()
    started = time.monotonic()
    uplink.send([m.Button(dev=button, ts=pressed_at, action=m.ButtonAction.PRESS)], alarm=True)
    alarm = _wait_alarm(platform, token, button, after=pressed_at / 1000 - 0.001, timeout=5)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"the alarm took {elapsed:.3f} s"
    assert alarm["kind"] == "button"
    assert alarm["priority"] == "emergency"
    assert alarm["state"] == "raised"
    assert alarm["bed_code"] == device.bed_code
    assert alarm["person_code"] == device.person_code
    assert alarm["institution_code"] == home.institution_code

    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT kind::text, reason, topic, payload_enc FROM parked_messages WHERE gateway = %s",
            (home.gateway.gateway_id,),
        ).fetchall()
        parked = [row[:3] for row in rows if vault.open_bytes(row[3], column=PARKED_PAYLOAD) == malformed]
        events = conn.execute(
            "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id"
            " WHERE d.code = %s AND e.time = to_timestamp(%s / 1000.0)",
            (button, pressed_at),
        ).fetchone()
    assert len(parked) == 1
    kind, reason, topic = parked[0]
    assert kind == "dead_letter"
    assert "seq" in reason
    assert topic.endswith(f"/{home.gateway.gateway_id}/up/alarm")
    assert events == (1,)


def test_a_bad_message_in_a_frame_spoils_nothing_and_redelivery_stores_once(
    stack: StackInfo, platform: str, home: SeededHome, uplink: SimUplink
) -> None:
    token = _token(platform, home)
    button = _button(home, 1)
    pressed_at = now_ms()
    frame = uplink.frame([m.Button(dev=button, ts=pressed_at, action=m.ButtonAction.PRESS)])
    good = m.encode(frame)
    # The same frame with a second message that breaks the contract, and one from an unknown device.
    spoiled = good.replace(
        b"]}",
        b',{"t":"button","dev":"'
        + button.encode()
        + b'","ts":'
        + str(pressed_at).encode()
        + b',"action":"explode"},{"t":"battery","dev":"NO-SUCH-DEVICE","ts":'
        + str(pressed_at).encode()
        + b',"level":50}]}',
    )
    uplink.send_raw(spoiled, alarm=True).wait_for_publish(5)
    uplink.send_raw(spoiled, alarm=True).wait_for_publish(5)  # a redelivery: same epoch and seq

    alarm = _wait_alarm(platform, token, button, after=pressed_at / 1000 - 0.001, timeout=5)
    assert alarm["repeat_count"] == 1

    deadline = time.monotonic() + 5
    while True:
        with psycopg.connect(stack.database_url) as conn:
            rows = conn.execute(
                "SELECT kind::text, reason, context->>'index' FROM parked_messages"
                " WHERE context->>'seq' = %s AND gateway = %s ORDER BY id",
                (str(frame.seq), home.gateway.gateway_id),
            ).fetchall()
            events = conn.execute(
                "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.code = %s"
                " AND e.time = to_timestamp(%s / 1000.0)",
                (button, pressed_at),
            ).fetchone()
            frames = conn.execute(
                "SELECT count(*) FROM uplink_frames WHERE epoch = %s AND seq = %s", (frame.epoch, frame.seq)
            ).fetchone()
        if len(rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rows == [
        ("dead_letter", rows[0][1], "1"),
        ("quarantine", "msgs[2]: unknown device 'NO-SUCH-DEVICE'", "2"),
    ]
    assert "action" in rows[0][1]
    assert events == (1,)
    assert frames == (1,)


def test_the_staff_stream_shows_a_press_within_one_second(
    stack: StackInfo, platform: str, home: SeededHome, uplink: SimUplink
) -> None:
    import json
    import queue
    import threading

    token = _token(platform, home)
    button = _button(home, 2)  # a button with no open alarm: this press is a new alarm
    events: queue.Queue[tuple[str, str]] = queue.Queue()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{platform}/api/v1/alarms/stream", params={"token": token}, timeout=30) as reply:
                name = ""
                for line in reply.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        events.put((name, line[6:]))
        except httpx.HTTPError:
            return  # the platform stopped at the end of the module

    threading.Thread(target=listen, daemon=True).start()
    try:
        kind, _ = events.get(timeout=10)
    except queue.Empty:
        raise AssertionError("no snapshot on the stream; serve said:\n" + PROCS["serve"].log()[-4000:]) from None
    assert kind == "snapshot"
    pressed = now_ms()
    started = time.monotonic()
    uplink.send([m.Button(dev=button, ts=pressed, action=m.ButtonAction.PRESS)], alarm=True)
    while True:
        kind, data = events.get(timeout=5)
        alarm = json.loads(data)
        if (
            kind == "alarm"
            and alarm["device_code"] == button
            and _epoch(alarm["occurred_at"]) >= pressed / 1000 - 0.001
        ):
            break
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"the stream showed the alarm after {elapsed:.3f} s"
    assert alarm["priority"] == "emergency"
