"""A slow receiver never holds up the sender: each try has a hard deadline on the whole send, and people are
sent to concurrently, so a family's trickling or silent webhook delays nobody else's notification."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg
import pytest
from tests.alerting.conftest import on_shift_all_day, process, put_event, run, with_conn
from tests.alerting.test_delivery import _channel, _family, _user

from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import sender
from eldercare.platform.notify.channels import DeliveryError, EmailChannel, JsonWebhookChannel, Message
from eldercare.simulators.seed import SeededHome


class _Trickle(BaseHTTPRequestHandler):
    """Answers 200 with a long body, one byte every second: each read is well within httpx's timeout."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def log_message(self, *_: object) -> None:
        pass


class _Silent(BaseHTTPRequestHandler):
    """Reads the request and never answers."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(120)

    def log_message(self, *_: object) -> None:
        pass


class _Ok(BaseHTTPRequestHandler):
    hits: list[float]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).hits.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receivers() -> Iterator[tuple[str, str, str, list[float]]]:
    """URLs of a trickling, a silent and a working webhook, and the working one's arrival times."""

    class Ok(_Ok):  # its own list of arrivals, per test
        pass

    Ok.hits = []
    ok_handler = Ok
    servers = [_serve(_Trickle), _serve(_Silent), _serve(ok_handler)]
    urls = [f"http://127.0.0.1:{s.server_port}/hook" for s in servers]
    yield urls[0], urls[1], urls[2], ok_handler.hits
    for server in servers:
        server.shutdown()
        server.server_close()


def _buttons(home: SeededHome) -> list[tuple[str, str]]:
    return [(d.code, d.bed_code or "") for d in home.devices if d.kind == "button"]


def test_a_nurse_is_told_at_once_while_a_familys_webhook_trickles_and_another_is_silent(
    db: str, vault: Vault, home: SeededHome, receivers: tuple[str, str, str, list[float]]
) -> None:
    trickle, silent, ok, hits = receivers
    (first, first_bed), (second, _second_bed) = _buttons(home)[:2]
    slow_family = _family(db, home, first_bed)
    _channel(db, vault, slow_family, "webhook_json", trickle, 1)
    silent_family = _user(db, home, "quiet-family", Role.FAMILY)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO family_links (user_id, resident_id, relation) SELECT %s, ba.resident_id, '儿子'"
            " FROM bed_assignments ba JOIN beds b ON b.id = ba.bed_id WHERE b.code = %s",
            (silent_family, first_bed),
        )
    _channel(db, vault, silent_family, "webhook_json", silent, 1)
    with psycopg.connect(db, autocommit=True) as conn:
        [(nurse,)] = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchall()
        on_shift_all_day(conn, home, nurse, 1)
    _channel(db, vault, nurse, "webhook_json", ok, 1)
    put_event(db, home, first, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)

    async def scenario() -> float | None:
        async with httpx.AsyncClient(timeout=5) as client:
            channels = {"webhook_json": JsonWebhookChannel(client)}
            task = asyncio.create_task(
                sender.run(db, vault=vault, channels=channels, policy=sender.SenderPolicy(), poll_s=0.2)
            )
            await asyncio.sleep(3)  # the sender is inside both families' webhook calls now
            hits.clear()
            started = time.monotonic()
            put_event(db, home, second, "fall", {"source": "radar"}, datetime.now(UTC))  # another resident falls
            await asyncio.to_thread(process, db, vault)
            deadline = started + 20
            while time.monotonic() < deadline and not hits:  # noqa: ASYNC110 - a server thread appends
                await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return (hits[0] - started) if hits else None

    latency = run(scenario())
    assert latency is not None and latency < 3, f"the nurse was told of the fall after {latency!r} s"


def test_a_trickling_webhook_is_a_failed_try_at_the_deadline_and_retried(
    db: str, vault: Vault, home: SeededHome, receivers: tuple[str, str, str, list[float]]
) -> None:
    trickle, _silent, _ok, _hits = receivers
    button, bed = _buttons(home)[0]
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", trickle, 1)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    policy = sender.SenderPolicy(min_interval_s=0, send_timeout_s=1.5, backoff_base_s=0.01)

    async def once(conn: AsyncConn) -> float:
        async with httpx.AsyncClient(timeout=5) as client:
            started = time.monotonic()
            await sender.deliver_due(
                conn, vault=vault, channels={"webhook_json": JsonWebhookChannel(client)}, policy=policy
            )
            return time.monotonic() - started

    took = run(asyncio.wait_for(with_conn(db, once), 30))
    assert took < 4
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT state, attempts, lease_until, last_error FROM notifications WHERE user_id = %s", (family,)
        ).fetchone()
    assert row is not None
    assert row[:3] == ("pending", 1, None)
    assert row[3] == "webhook_json: no answer within 1.5 s"


def test_an_smtp_server_answering_a_byte_at_a_time_is_cut_off_at_the_deadline() -> None:
    """The e-mail channel runs smtplib in a worker thread: the deadline ends the thread's conversation too."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"220 slow.example ESMTP ready\r\n" * 100:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.5)

    threading.Thread(target=serve, daemon=True).start()
    channel = EmailChannel("127.0.0.1", listener.getsockname()[1], "eldercare@localhost", deadline_s=2)
    message = Message(delivery_id="1", subject="s", text="t")
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match="no answer within 2 s"):
            run(channel.send(address="family@example.com", secret=None, message=message))
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 4
