"""The sender decides per outbox row: give-up and backoff on the row's own attempts, the rate limit
waived for every event of an emergency, and a row whose recipient may no longer be told suppressed."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from tests.alerting.conftest import alarms_of, on_shift_all_day, process, put_event, run, with_conn
from tests.alerting.receivers import WebhookServer
from tests.alerting.test_delivery import _button, _channel, _deliver, _family, _user

from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import Vault
from eldercare.platform.notify import outbox, sender
from eldercare.simulators.seed import SeededHome


@pytest.fixture
def webhooks(free_port: Callable[[], int]) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port())
    yield server
    server.close()


def _rows(db: str, user_id: int) -> list[tuple[int, str, int]]:
    """(alarm, state, attempts) of the user's outbox rows, oldest first."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT alarm_id, state, attempts FROM notifications WHERE user_id = %s ORDER BY id", (user_id,)
        ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


def test_a_new_alarm_is_not_given_up_because_an_older_one_for_the_same_person_failed_often(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    policy = sender.SenderPolicy(min_interval_s=0, max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05)
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/broken", 1)  # the provider is down
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    for _ in range(3):
        _deliver(db, vault, None, policy)
        time.sleep(0.08)
    [(first, state, attempts)] = _rows(db, family)
    assert (state, attempts) == ("pending", 3)

    put_event(db, home, button, "fall", {"source": "radar"}, datetime.now(UTC))  # a new, different alarm
    process(db, vault)
    time.sleep(0.08)
    _deliver(db, vault, None, policy)  # one message for both rows; it fails again
    [old, new] = _rows(db, family)
    assert old == (first, "failed", 4)  # its own fourth attempt: given up
    assert new[1:] == ("pending", 1)  # its first: retried
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT not_before - clock_timestamp() < interval '1 second', last_error FROM notifications"
            " WHERE alarm_id = %s AND user_id = %s",
            (new[0], family),
        ).fetchone()
    assert row is not None and row[0] and "HTTP 500" in row[1]  # backoff from its own attempt count

    for _ in range(2):
        time.sleep(0.08)
        _deliver(db, vault, None, policy)
    assert _rows(db, family)[1][1:] == ("pending", 3)  # still retried, up to its own max_attempts


def test_every_event_of_an_emergency_skips_the_rate_limit(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer
) -> None:
    """Escalations of two emergencies a moment apart reach the tier-2 nurse at once, not min_interval later."""
    buttons = [d for d in home.devices if d.kind == "button"][:2]
    tier2 = _user(db, home, "tier2", Role.STAFF)
    _channel(db, vault, tier2, "webhook_json", f"{webhooks.url}/tier2", 1)
    with psycopg.connect(db, autocommit=True) as conn:
        on_shift_all_day(conn, home, tier2, 2)
    for device in buttons:
        put_event(db, home, device.code, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    first, second = (a["id"] for a in alarms_of(db, home))
    assert all(a["priority"] == "emergency" for a in alarms_of(db, home))
    policy = sender.SenderPolicy(min_interval_s=600)

    def escalate(alarm_id: int) -> Callable[[AsyncConn], Awaitable[int]]:
        async def go(conn: AsyncConn) -> int:
            return await outbox.enqueue(conn, alarm_id=alarm_id, event=outbox.Event.ESCALATED, level=1)

        return go

    run(with_conn(db, escalate(first)))
    assert _deliver(db, vault, None, policy) >= 1
    run(with_conn(db, escalate(second)))
    assert _deliver(db, vault, None, policy) >= 1  # not deferred by 600 s
    assert [h.path for h in webhooks.hits] == ["/tier2", "/tier2"]
    assert [(r[1], r[2]) for r in _rows(db, tier2)] == [("sent", 1), ("sent", 1)]


@pytest.mark.parametrize("change", ["unlink", "deactivate"])
def test_a_family_that_may_no_longer_be_told_is_not_told(
    db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer, change: str
) -> None:
    """The link is removed (or the user deactivated) after the row was enqueued, while it waited (quiet
    hours, a retry): the row is suppressed when it comes due, and nothing is sent."""
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/json", 1)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    assert [r[1] for r in _rows(db, family)] == ["pending"]
    with psycopg.connect(db, autocommit=True) as conn:
        if change == "unlink":
            conn.execute("DELETE FROM family_links WHERE user_id = %s", (family,))
        else:
            conn.execute("UPDATE users SET active = false WHERE id = %s", (family,))

    _deliver(db, vault, None, sender.SenderPolicy(min_interval_s=0))
    assert webhooks.hits == []
    assert [r[1] for r in _rows(db, family)] == ["suppressed"]
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT last_error FROM notifications WHERE user_id = %s", (family,)).fetchone()
    assert row is not None
    assert row[0] == ("family link removed" if change == "unlink" else "user deactivated")


def test_a_lapsed_lease_is_rechecked_too(db: str, vault: Vault, home: SeededHome, webhooks: WebhookServer) -> None:
    """A row left 'sending' by a sender that died is claimed again only if its recipient still qualifies."""
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "webhook_json", f"{webhooks.url}/json", 1)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE notifications SET state = 'sending', lease_until = clock_timestamp() - interval '1 second',"
            " attempts = 1 WHERE user_id = %s",
            (family,),
        )
        conn.execute("DELETE FROM family_links WHERE user_id = %s", (family,))
    _deliver(db, vault, None, sender.SenderPolicy(min_interval_s=0))
    assert webhooks.hits == []
    assert [r[1] for r in _rows(db, family)] == ["suppressed"]
