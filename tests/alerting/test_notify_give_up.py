"""A notification is not given up silently: staff told of an open emergency are retried for as long as it is
open, and what is given up (or still failing) is listed to the home's staff."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from tests.alerting.conftest import on_shift_all_day, process, put_event
from tests.alerting.receivers import WebhookServer
from tests.alerting.test_api import _auth, _client
from tests.alerting.test_delivery import _button, _channel, _deliver, _family

from eldercare.platform.crypto import Vault
from eldercare.platform.notify import sender
from eldercare.simulators.seed import SeededHome

POLICY = sender.SenderPolicy(min_interval_s=0, max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.05)


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


def _row(db: str, user_id: int) -> tuple[str, int, float]:
    """(state, attempts, seconds until the next try) of the user's one outbox row."""
    with psycopg.connect(db) as conn:
        [row] = conn.execute(
            "SELECT state, attempts, extract(epoch FROM not_before - clock_timestamp())::float8 FROM notifications"
            " WHERE user_id = %s",
            (user_id,),
        ).fetchall()
    return str(row[0]), int(row[1]), float(row[2])


def test_staff_are_retried_while_the_emergency_is_open_and_the_family_is_given_up_and_listed(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/broken", 1)
    with psycopg.connect(db, autocommit=True) as conn:
        [(nurse,)] = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchall()
        on_shift_all_day(conn, home, nurse, 1)
    _channel(db, vault, nurse, "webhook_json", f"{webhooks.url}/broken", 1)  # the provider is down
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    for _ in range(5):
        _deliver(db, vault, None, POLICY)
        time.sleep(0.08)
    assert _row(db, family)[:2] == ("failed", 2)  # a family is given up after max_attempts
    state, attempts, wait = _row(db, nurse)
    assert (state, attempts) == ("pending", 5)  # the nurse never is while the emergency is open
    assert wait <= 0.05  # at the longest backoff

    async def listed(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, home.staff_username, "staff-password-1")
        reply = await client.get("/api/v1/me/notifications/undelivered", headers=headers)
        assert reply.status_code == 200
        rows = {(r["role"], r["state"], r["alarm_kind"]) for r in reply.json()}
        assert ("family", "failed", "button") in rows
        assert all("http" not in (r["last_error"] or "") for r in reply.json())  # no address
        assert all(r["last_error"] for r in reply.json())

    _client(db, vault)(listed)

    with psycopg.connect(db, autocommit=True) as conn:  # resolved: the nurse's row may now be given up
        conn.execute(
            "UPDATE alarms SET state = 'resolved', closed_at = now() WHERE institution_id = %s", (home.institution_id,)
        )
    time.sleep(0.08)
    _deliver(db, vault, None, POLICY)
    assert _row(db, nurse)[:2] == ("failed", 6)


def test_families_may_not_read_the_undelivered_list(db: str, vault: Vault, home: SeededHome) -> None:
    _button_code, bed = _button(home)
    family = _family(db, home, bed)
    with psycopg.connect(db) as conn:
        [(username,)] = conn.execute("SELECT username FROM users WHERE id = %s", (family,)).fetchall()

    async def refused(client: httpx.AsyncClient) -> None:
        headers = await _auth(client, username, "password-123")
        reply = await client.get("/api/v1/me/notifications/undelivered", headers=headers)
        assert reply.status_code == 403

    _client(db, vault)(refused)


def test_a_row_retried_for_days_does_not_overflow_the_backoff(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    button, _bed = _button(home)
    with psycopg.connect(db, autocommit=True) as conn:
        [(nurse,)] = conn.execute("SELECT id FROM users WHERE username = %s", (home.staff_username,)).fetchall()
        on_shift_all_day(conn, home, nurse, 1)
    _channel(db, vault, nurse, "webhook_json", f"{webhooks.url}/broken", 1)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    with psycopg.connect(db, autocommit=True) as conn:  # four days of a retry every 5 minutes
        conn.execute("UPDATE notifications SET attempts = 1200 WHERE user_id = %s", (nurse,))
    _deliver(db, vault, None, POLICY)
    assert _row(db, nurse)[:2] == ("pending", 1201)
