"""The sender: takes due outbox rows, tells each person once per cycle on their first working channel.

Rows are claimed with a lease (``state = 'sending'``) in a short statement and sent outside it; a platform
that dies mid-send leaves the lease to expire and the row is sent again (at least once; the delivery id in
every message lets a receiver drop the repeat). The lease is renewed before each channel is tried, and each
try has a hard deadline (``send_timeout_s``, shorter than the lease) on the whole send, not on each read: a
receiver that answers a byte at a time, or not at all, costs one failed try on that channel, never the sender.

People are sent to concurrently (``concurrency`` at once, plus ``emergency_reserve`` slots that only a message
about an emergency may take), emergencies first; one person has one send in flight at a time (a row is not
claimed while another row of the same person is leased), so a person's messages keep their order and the rate
limit holds. All due rows of one person go out as one message (storm control: a home going offline does not
send a family a hundred messages), and a person is sent at most one message per ``min_interval_s`` except about
an emergency (every event of it: raised, escalated, resolved). A failed channel (whatever it raised, or its
deadline) falls back to the next one at once; when all fail, each row is retried with exponential backoff on
its own attempts (at most ``backoff_max_s`` apart), and given up (``failed``) after ``max_attempts`` of its
own, except a row that tells staff of an emergency that is still open: that one is never given up while the
alarm is open, and is retried every ``backoff_max_s``. Rows given up, or still failing past ``max_attempts``,
are listed to staff by ``GET /api/v1/me/notifications/undelivered``. A row whose recipient has since been
deactivated, or whose family link to the resident was removed, is not sent but marked ``suppressed`` when it
comes due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from eldercare.platform.alarms import text as alarm_text
from eldercare.platform.alarms.retry import Retry
from eldercare.platform.auth.service import AsyncConn
from eldercare.platform.crypto import DecryptionError, Vault
from eldercare.platform.notify.channels import Channel, DeliveryError
from eldercare.platform.notify.texts import compose

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SenderPolicy:
    lease_s: float = 30.0  # renewed before each try (at most send_timeout_s): a crash re-sends this soon
    min_interval_s: float = 30.0
    max_attempts: int = 12
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    batch: int = 200
    send_timeout_s: float = 15.0  # one try on one channel, all of it (connect, send, every read)
    concurrency: int = 16  # people sent to at once
    emergency_reserve: int = 4  # further slots only for messages about an emergency

    def __post_init__(self) -> None:
        if not 0 < self.send_timeout_s < self.lease_s:
            raise ValueError("send_timeout_s must be positive and shorter than lease_s (the lease covers one try)")
        if self.concurrency < 1 or self.emergency_reserve < 0:
            raise ValueError("concurrency must be at least 1 and emergency_reserve at least 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


# Due rows whose recipient may no longer be told are suppressed, not sent. Whether they may was checked
# when they were enqueued, but a family link can be removed or a user deactivated while a row waits (quiet
# hours, a retry's backoff, the rate limit); so it is checked again here, just before each claim of due rows.
_SUPPRESS = """
UPDATE notifications n SET state = 'suppressed', lease_until = NULL,
       last_error = CASE WHEN u.active THEN 'family link removed' ELSE 'user deactivated' END
FROM users u
WHERE u.id = n.user_id
  AND ((n.state = 'pending' AND n.not_before <= clock_timestamp())
       OR (n.state = 'sending' AND n.lease_until < clock_timestamp()))
  AND (NOT u.active OR (u.role = 'family' AND NOT EXISTS (
        SELECT 1 FROM family_links f JOIN alarms a ON a.resident_id = f.resident_id
        WHERE a.id = n.alarm_id AND f.user_id = n.user_id)))
"""

# The due rows of at most %(people)s people, those with an emergency first, then the longest waiting. A person
# with a row under a live lease (a send in flight, here or in another process) is skipped until it ends.
_CLAIM = """
WITH due AS (
    SELECT n.id, n.user_id, n.not_before, a.priority = 'emergency' AS emergency
    FROM notifications n JOIN alarms a ON a.id = n.alarm_id
    WHERE ((n.state = 'pending' AND n.not_before <= clock_timestamp())
           OR (n.state = 'sending' AND n.lease_until < clock_timestamp()))
      AND NOT EXISTS (SELECT 1 FROM notifications b WHERE b.user_id = n.user_id AND b.state = 'sending'
                      AND b.lease_until >= clock_timestamp())
    ORDER BY a.priority = 'emergency' DESC, n.not_before LIMIT %(batch)s
    FOR UPDATE OF n SKIP LOCKED
),
people AS (
    SELECT user_id FROM due GROUP BY user_id
    HAVING bool_or(emergency) OR NOT %(emergency_only)s
    ORDER BY bool_or(emergency) DESC, min(not_before) LIMIT %(people)s
)
UPDATE notifications n SET state = 'sending', lease_until = clock_timestamp() + make_interval(secs => %(lease)s),
       attempts = attempts + 1
FROM due d
WHERE n.id = d.id AND d.user_id IN (SELECT user_id FROM people)
RETURNING n.id, n.alarm_id, n.user_id, n.event, n.attempts
"""

# Before each channel is tried: the try has its deadline, the lease outlasts it.
_RENEW = """
UPDATE notifications SET lease_until = clock_timestamp() + make_interval(secs => %s)
WHERE id = ANY(%s) AND state = 'sending'
"""

# Give-up and backoff are per row, from that row's own attempts (rows of one person share only the message). A
# row telling staff of an open emergency is never given up: it is retried at the longest backoff. (The exponent
# is capped so that a row retried for days does not overflow.)
_FAILED = """
UPDATE notifications n SET lease_until = NULL, last_error = %(error)s,
       state = CASE WHEN n.attempts >= %(max_attempts)s AND NOT k.keep THEN 'failed' ELSE 'pending' END,
       not_before = CASE WHEN n.attempts >= %(max_attempts)s AND NOT k.keep THEN n.not_before
           ELSE clock_timestamp()
                + make_interval(secs => least(%(base)s * power(2, least(n.attempts - 1, 40)), %(cap)s)) END
FROM (SELECT o.id, a.priority = 'emergency' AND a.state IN ('raised', 'acknowledged', 'attending')
             AND u.role <> 'family' AS keep
      FROM notifications o JOIN alarms a ON a.id = o.alarm_id JOIN users u ON u.id = o.user_id
      WHERE o.id = ANY(%(ids)s)) k
WHERE n.id = k.id
RETURNING n.id, n.state, n.attempts >= %(max_attempts)s
"""

# The outcome is encrypted at rest (``alarms/text.py``): opened by :func:`_alarm_rows`.
_ALARMS = """
SELECT a.id, a.kind, a.priority::text, a.state::text, a.occurred_at, a.outcome, i.name, b.label, b.code,
       r.person_code, a.outcome_enc
FROM alarms a JOIN institutions i ON i.id = a.institution_id
LEFT JOIN beds b ON b.id = a.bed_id LEFT JOIN residents r ON r.id = a.resident_id
WHERE a.id = ANY(%s)
"""

Row = tuple[int, int, str, int]  # notification id, alarm id, event, attempts


@dataclass(frozen=True, slots=True)
class _Group:
    """The claimed rows of one person and the alarms they are about."""

    user_id: int
    rows: list[Row]
    alarms: Mapping[int, tuple[Any, ...]]

    @property
    def emergency(self) -> bool:
        return any(self.alarms[r[1]][2] == "emergency" for r in self.rows)  # every event of one, not only the first


async def _alarm_rows(conn: AsyncConn, vault: Vault, alarm_ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """The alarms of the claimed rows as ``texts.compose`` takes them, their outcome in clear (a family is told how
    its elder's alarm ended)."""
    rows = await (await conn.execute(_ALARMS, (alarm_ids,))).fetchall()
    found: dict[int, tuple[Any, ...]] = {}
    for *row, outcome_enc in rows:
        row[5] = alarm_text.open_text(vault, outcome_enc, row[5], column=alarm_text.OUTCOME, row=row[0])
        found[row[0]] = tuple(row)
    return found


async def _recently_told(conn: AsyncConn, user_id: int, min_interval_s: float) -> bool:
    row = await (
        await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM notifications WHERE user_id = %s AND state = 'sent'"
            " AND delivered_at > clock_timestamp() - make_interval(secs => %s))",
            (user_id, min_interval_s),
        )
    ).fetchone()
    return bool(row and row[0])


async def _suppress(conn: AsyncConn) -> None:
    """Mark ``suppressed`` the due rows whose recipient may no longer be told: once before claiming."""
    suppressed = await conn.execute(_SUPPRESS)
    if suppressed.rowcount > 0:
        log.info("notification sender: %d due notifications suppressed (recipient gone)", suppressed.rowcount)


async def _claim(
    conn: AsyncConn, *, vault: Vault, policy: SenderPolicy, people: int, emergency_only: bool
) -> list[_Group]:
    """Lease the due rows of at most ``people`` people (only people with an emergency if ``emergency_only``);
    :func:`_suppress` first."""
    params = {"lease": policy.lease_s, "batch": policy.batch, "people": people, "emergency_only": emergency_only}
    claimed = await (await conn.execute(_CLAIM, params)).fetchall()
    if not claimed:
        return []
    by_user: dict[int, list[Row]] = defaultdict(list)
    for nid, alarm_id, user_id, event, attempts in sorted(claimed):
        by_user[user_id].append((nid, alarm_id, event, attempts))
    alarms = await _alarm_rows(conn, vault, [c[1] for c in claimed])
    groups = [_Group(user_id, rows, alarms) for user_id, rows in by_user.items()]
    return sorted(groups, key=lambda g: not g.emergency)


async def deliver_due(
    conn: AsyncConn, *, vault: Vault, channels: Mapping[str, Channel], policy: SenderPolicy = SenderPolicy()
) -> int:
    """One send cycle: the due rows of up to ``concurrency + emergency_reserve`` people, sent to at once; returns
    how many outbox rows were delivered. (``run`` does not wait for a cycle: it claims as sends end.)"""
    await _suppress(conn)
    groups = await _claim(
        conn, vault=vault, policy=policy, people=policy.concurrency + policy.emergency_reserve, emergency_only=False
    )
    if not groups:
        return 0
    sent = await asyncio.gather(
        *(_deliver_group(conn, group, vault=vault, channels=channels, policy=policy) for group in groups)
    )
    return sum(sent)


async def _deliver_group(
    conn: AsyncConn, group: _Group, *, vault: Vault, channels: Mapping[str, Channel], policy: SenderPolicy
) -> int:
    ids = [r[0] for r in group.rows]
    if not group.emergency and await _recently_told(conn, group.user_id, policy.min_interval_s):
        await conn.execute(
            "UPDATE notifications SET state = 'pending', attempts = attempts - 1, lease_until = NULL,"
            " not_before = clock_timestamp() + make_interval(secs => %s) WHERE id = ANY(%s)",
            (policy.min_interval_s, ids),
        )
        return 0
    return await _deliver_to(
        conn, group.user_id, group.rows, group.alarms, vault=vault, channels=channels, policy=policy
    )


async def _deliver_to(
    conn: AsyncConn,
    user_id: int,
    rows: list[Row],
    alarms: Mapping[int, tuple[Any, ...]],
    *,
    vault: Vault,
    channels: Mapping[str, Channel],
    policy: SenderPolicy,
) -> int:
    ids = [r[0] for r in rows]
    prefs = await (
        await conn.execute("SELECT language FROM notification_prefs WHERE user_id = %s", (user_id,))
    ).fetchone()
    language = prefs[0] if prefs else "zh-CN"
    message = compose(
        delivery_id="-".join(str(i) for i in ids),
        language=language,
        items=[(event, alarms[alarm_id]) for _, alarm_id, event, _ in rows],
    )
    targets = await (
        await conn.execute(
            "SELECT id, kind, address_enc, secret_enc FROM notification_channels"
            " WHERE user_id = %s AND active ORDER BY position, id",
            (user_id,),
        )
    ).fetchall()
    errors: list[str] = []
    for channel_id, kind, address_enc, secret_enc in targets:
        channel = channels.get(kind)
        if channel is None:
            errors.append(f"{kind}: not configured on this platform")
            continue
        await conn.execute(_RENEW, (policy.lease_s, ids))
        try:
            address = vault.decrypt(address_enc, column="notification_channels.address")
            secret = vault.decrypt(secret_enc, column="notification_channels.secret") if secret_enc else None
            async with asyncio.timeout(policy.send_timeout_s):
                receipt = await channel.send(address=address, secret=secret, message=message)
        except (DeliveryError, DecryptionError) as exc:
            detail = str(exc)
        except TimeoutError:
            # The whole try, not one read: a receiver trickling its answer is cut off here.
            detail = f"{kind}: no answer within {policy.send_timeout_s:g} s"
        except Exception as exc:
            # Anything else (a bug, a library's surprise) fails this channel only: the next one is tried.
            # Only the class is kept: the message may repeat the address.
            log.exception("notification %s: channel %s (%s) failed unexpectedly", ids, channel_id, kind)
            detail = f"{kind}: unexpected {exc.__class__.__name__}"
        else:
            await _attempt(conn, ids, channel_id, ok=True, detail=receipt)
            await conn.execute(
                "UPDATE notifications SET state = 'sent', delivered_at = clock_timestamp(), channel_id = %s,"
                " lease_until = NULL, last_error = NULL WHERE id = ANY(%s)",
                (channel_id, ids),
            )
            return len(ids)
        errors.append(detail)
        await _attempt(conn, ids, channel_id, ok=False, detail=detail)
    error = "; ".join(errors) or "no active channel"
    outcome = await (
        await conn.execute(
            _FAILED,
            {
                "error": error,
                "max_attempts": policy.max_attempts,
                "base": policy.backoff_base_s,
                "cap": policy.backoff_max_s,
                "ids": ids,
            },
        )
    ).fetchall()
    given_up = [nid for nid, state, _ in outcome if state == "failed"]
    kept = [nid for nid, state, past_max in outcome if state == "pending" and past_max]
    if given_up:
        log.error("notification %s to user %s failed for good: %s", given_up, user_id, error)
    if kept:
        log.error(
            "notification %s to user %s (staff, open emergency) still failing after %d attempts, retried every"
            " %g s: %s",
            kept,
            user_id,
            policy.max_attempts,
            policy.backoff_max_s,
            error,
        )
    return 0


async def _attempt(conn: AsyncConn, ids: list[int], channel_id: int, *, ok: bool, detail: str) -> None:
    await conn.execute(
        "INSERT INTO notification_attempts (notification_id, channel_id, ok, detail)"
        " SELECT unnest(%s::bigint[]), %s, %s, %s",
        (ids, channel_id, ok, detail[:1000]),
    )


class _Dispatcher:
    """Claims due rows whenever a slot is free and sends each person's in a task of its own."""

    def __init__(self, conn: AsyncConn, *, vault: Vault, channels: Mapping[str, Channel], policy: SenderPolicy) -> None:
        self.conn = conn
        self.vault = vault
        self.channels = channels
        self.policy = policy
        self.in_flight: dict[asyncio.Task[int], list[int]] = {}  # task -> its notification ids
        self.wake = asyncio.Event()
        self.failure: BaseException | None = None

    def _ended(self, task: asyncio.Task[int]) -> None:
        self.in_flight.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None and self.failure is None:
            self.failure = exc  # the database went away under a send: the loop reconnects; the leases re-send
        self.wake.set()

    async def fill(self) -> None:
        """Claim and start sends until every slot is taken or nothing is due."""
        slots = self.policy.concurrency + self.policy.emergency_reserve
        if len(self.in_flight) < slots:
            await _suppress(self.conn)
        while True:
            if self.failure is not None:
                raise self.failure
            busy = len(self.in_flight)
            free = slots - busy
            if free <= 0:
                return
            emergency_only = busy >= self.policy.concurrency
            groups = await _claim(
                self.conn, vault=self.vault, policy=self.policy, people=free, emergency_only=emergency_only
            )
            for group in groups:
                task = asyncio.create_task(
                    _deliver_group(self.conn, group, vault=self.vault, channels=self.channels, policy=self.policy),
                    name=f"notify-user-{group.user_id}",
                )
                self.in_flight[task] = [r[0] for r in group.rows]
                task.add_done_callback(self._ended)
            if len(groups) < free:
                return

    async def stop(self, *, release: bool) -> None:
        """Cancel the sends in flight. On a shutdown (``release``) their rows are handed back at once, so that the
        next sender sends them without waiting for the leases to lapse (a message that did go out is sent twice;
        its delivery id lets the receiver drop the repeat); otherwise, or if that fails, the leases lapse."""
        ids = [nid for task_ids in self.in_flight.values() for nid in task_ids]
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        if not release or not ids:
            return
        try:
            await self.conn.execute(
                "UPDATE notifications SET state = 'pending', lease_until = NULL, attempts = attempts - 1,"
                " not_before = clock_timestamp() WHERE id = ANY(%s) AND state = 'sending'",
                (ids,),
            )
        except Exception:  # noqa: BLE001 - nothing is lost: the leases lapse and the rows are sent again then
            log.warning(
                "notification sender: could not hand back %d rows on shutdown; their leases will lapse", len(ids)
            )


async def _listen(listener: AsyncConn, wake: asyncio.Event) -> None:
    async for _ in listener.notifies():
        wake.set()


async def run(
    database_url: str, *, vault: Vault, channels: Mapping[str, Channel], policy: SenderPolicy, poll_s: float = 1.0
) -> None:
    """Send until cancelled; any error is logged with its traceback and the loop reconnects after a pause."""
    retry = Retry("notification sender")
    while True:
        try:
            async with (
                await AsyncConnection.connect(database_url, autocommit=True) as listener,
                await AsyncConnection.connect(database_url, autocommit=True) as worker,
            ):
                await listener.execute("LISTEN notifications")
                dispatcher = _Dispatcher(worker, vault=vault, channels=channels, policy=policy)
                listening = asyncio.create_task(_listen(listener, dispatcher.wake), name="notify-listen")
                try:
                    while True:
                        dispatcher.wake.clear()
                        await dispatcher.fill()
                        retry.ok()
                        if listening.done():
                            listening.result()  # the listener's connection is gone: raise its error
                            raise ConnectionError("the notification listener ended")
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(poll_s):
                                await dispatcher.wake.wait()
                except asyncio.CancelledError:
                    await dispatcher.stop(release=True)
                    raise
                finally:
                    listening.cancel()
                    await asyncio.gather(listening, return_exceptions=True)
                    await dispatcher.stop(release=False)
        except Exception as exc:  # noqa: BLE001 - logged by Retry, with the traceback when not the database
            await retry.after(exc)
