"""The sender: takes due outbox rows, tells each person once per cycle on their first working channel.

Rows are claimed with a lease (``state = 'sending'``) in a short transaction and sent outside it; a
platform that dies mid-send leaves the lease to expire and the row is sent again (at least once; the
delivery id in every message lets a receiver drop the repeat). All due rows of one person go out as one
message (storm control: a home going offline does not send a family a hundred messages), and a person
is sent at most one message per ``min_interval_s`` except about an emergency (every event of it: raised,
escalated, resolved). A failed channel (whatever it raised) falls back to the next one at once; when all
fail, each row is retried with exponential backoff on its own attempts, and given up after
``max_attempts`` of its own. A row whose recipient has since been deactivated, or whose family link to the
resident was removed, is not sent but marked ``suppressed`` when it comes due.
"""

from __future__ import annotations

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
    lease_s: float = 60.0
    min_interval_s: float = 30.0
    max_attempts: int = 12
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    batch: int = 200


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

_CLAIM = """
UPDATE notifications n SET state = 'sending', lease_until = clock_timestamp() + make_interval(secs => %(lease)s),
       attempts = attempts + 1
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE (state = 'pending' AND not_before <= clock_timestamp())
       OR (state = 'sending' AND lease_until < clock_timestamp())
    ORDER BY not_before LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
RETURNING n.id, n.alarm_id, n.user_id, n.event, n.attempts
"""

# Give-up and backoff are per row, from that row's own attempts (rows of one person share only the message).
_FAILED = """
UPDATE notifications SET lease_until = NULL, last_error = %(error)s,
       state = CASE WHEN attempts >= %(max_attempts)s THEN 'failed' ELSE 'pending' END,
       not_before = CASE WHEN attempts >= %(max_attempts)s THEN not_before
           ELSE clock_timestamp() + make_interval(secs => least(%(base)s * power(2, attempts - 1), %(cap)s)) END
WHERE id = ANY(%(ids)s)
RETURNING id, state
"""

# The outcome is encrypted at rest (``alarms/text.py``): opened by :func:`_alarm_rows`.
_ALARMS = """
SELECT a.id, a.kind, a.priority::text, a.state::text, a.occurred_at, a.outcome, i.name, b.label, b.code,
       r.person_code, a.outcome_enc
FROM alarms a JOIN institutions i ON i.id = a.institution_id
LEFT JOIN beds b ON b.id = a.bed_id LEFT JOIN residents r ON r.id = a.resident_id
WHERE a.id = ANY(%s)
"""


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


async def deliver_due(
    conn: AsyncConn, *, vault: Vault, channels: Mapping[str, Channel], policy: SenderPolicy = SenderPolicy()
) -> int:
    """One send cycle; returns how many outbox rows were delivered."""
    suppressed = await conn.execute(_SUPPRESS)
    if suppressed.rowcount > 0:
        log.info("notification sender: %d due notifications suppressed (recipient gone)", suppressed.rowcount)
    claimed = await (await conn.execute(_CLAIM, {"lease": policy.lease_s, "batch": policy.batch})).fetchall()
    if not claimed:
        return 0
    by_user: dict[int, list[tuple[int, int, str, int]]] = defaultdict(list)
    for nid, alarm_id, user_id, event, attempts in claimed:
        by_user[user_id].append((nid, alarm_id, event, attempts))
    alarms = await _alarm_rows(conn, vault, [c[1] for c in claimed])
    delivered = 0
    for user_id, rows in by_user.items():
        ids = [r[0] for r in rows]
        emergency = any(alarms[r[1]][2] == "emergency" for r in rows)  # every event of one, not only the first
        if not emergency and await _recently_told(conn, user_id, policy.min_interval_s):
            await conn.execute(
                "UPDATE notifications SET state = 'pending', attempts = attempts - 1,"
                " not_before = clock_timestamp() + make_interval(secs => %s) WHERE id = ANY(%s)",
                (policy.min_interval_s, ids),
            )
            continue
        delivered += await _deliver_to(conn, user_id, rows, alarms, vault=vault, channels=channels, policy=policy)
    return delivered


async def _deliver_to(
    conn: AsyncConn,
    user_id: int,
    rows: list[tuple[int, int, str, int]],
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
        try:
            address = vault.decrypt(address_enc, column="notification_channels.address")
            secret = vault.decrypt(secret_enc, column="notification_channels.secret") if secret_enc else None
            receipt = await channel.send(address=address, secret=secret, message=message)
        except (DeliveryError, DecryptionError) as exc:
            detail = str(exc)
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
    given_up = [nid for nid, state in outcome if state == "failed"]
    if given_up:
        log.error("notification %s to user %s failed for good: %s", given_up, user_id, error)
    return 0


async def _attempt(conn: AsyncConn, ids: list[int], channel_id: int, *, ok: bool, detail: str) -> None:
    await conn.execute(
        "INSERT INTO notification_attempts (notification_id, channel_id, ok, detail)"
        " SELECT unnest(%s::bigint[]), %s, %s, %s",
        (ids, channel_id, ok, detail[:1000]),
    )


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
                while True:
                    while await deliver_due(worker, vault=vault, channels=channels, policy=policy) > 0:
                        pass
                    retry.ok()
                    async for _ in listener.notifies(timeout=poll_s, stop_after=1):
                        pass
        except Exception as exc:  # noqa: BLE001 - logged by Retry, with the traceback when not the database
            await retry.after(exc)
