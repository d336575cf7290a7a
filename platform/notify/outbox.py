"""Who is told of an alarm event, written to the outbox in the transaction that changes the alarm.

Raised: the resident's family (their preferences: kinds — by default every alarm but the technical ones —
quiet hours that emergencies ignore) and the
tier-1 staff on shift who have a channel (the staff board shows every alarm regardless). Escalated to
level 1: tier-2 staff on shift; level 2: the home's heads; level 3: the platform's duty desk. Resolved
or cancelled: the family members who were told it was raised and want to hear the end.

One row per (alarm, user, event): the unique key makes a second enqueue of the same event a no-op.
"""

from __future__ import annotations

from enum import StrEnum

from eldercare.platform.auth.service import AsyncConn


class Event(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


_RAISED = """
WITH a AS (SELECT * FROM alarms WHERE id = %(alarm)s AND held_by IS NULL),
family AS (
    SELECT f.user_id,
           CASE WHEN a.priority <> 'emergency' AND p.quiet_from IS NOT NULL
                 AND time_in_window((now() AT TIME ZONE p.timezone)::time, p.quiet_from, p.quiet_to)
                THEN ((date_trunc('day', now() AT TIME ZONE p.timezone) + p.quiet_to
                       + CASE WHEN p.quiet_to <= (now() AT TIME ZONE p.timezone)::time
                              THEN interval '1 day' ELSE interval '0' END) AT TIME ZONE p.timezone)
                ELSE clock_timestamp() END AS not_before
    FROM a JOIN family_links f ON f.resident_id = a.resident_id
    JOIN users u ON u.id = f.user_id AND u.active
    LEFT JOIN notification_prefs p ON p.user_id = f.user_id
    WHERE (CASE WHEN p.kinds IS NULL THEN a.priority <> 'technical' ELSE a.kind = ANY (p.kinds) END)
      AND has_channel(f.user_id)
),
staff AS (
    SELECT DISTINCT r.user_id, clock_timestamp() AS not_before
    FROM a JOIN shift_roster r ON r.institution_id = a.institution_id AND r.tier = 1
    JOIN users u ON u.id = r.user_id AND u.active
    WHERE on_shift(r.starts, r.ends, r.weekdays, r.timezone, now()) AND has_channel(r.user_id)
)
INSERT INTO notifications (alarm_id, user_id, event, not_before)
SELECT %(alarm)s, user_id, 'raised', min(not_before) FROM (SELECT * FROM family UNION ALL SELECT * FROM staff) x
GROUP BY user_id
ON CONFLICT DO NOTHING
"""

_ESCALATED = """
WITH a AS (SELECT * FROM alarms WHERE id = %(alarm)s),
who AS (
    SELECT r.user_id FROM a JOIN shift_roster r ON r.institution_id = a.institution_id AND r.tier = 2
    WHERE %(level)s = 1 AND on_shift(r.starts, r.ends, r.weekdays, r.timezone, now())
    UNION
    SELECT u.id FROM a JOIN users u ON u.institution_id = a.institution_id AND u.role = 'head'
    WHERE %(level)s = 2
    UNION
    SELECT u.id FROM users u WHERE %(level)s >= 3 AND u.duty_desk
)
INSERT INTO notifications (alarm_id, user_id, event)
SELECT %(alarm)s, w.user_id, 'escalated' FROM who w JOIN users u ON u.id = w.user_id AND u.active
WHERE has_channel(w.user_id)
ON CONFLICT (alarm_id, user_id, event) DO UPDATE SET state = 'pending', not_before = clock_timestamp()
    WHERE notifications.state IN ('sent', 'failed')
"""

_RESOLVED = """
INSERT INTO notifications (alarm_id, user_id, event)
SELECT n.alarm_id, n.user_id, 'resolved' FROM notifications n
JOIN family_links f ON f.user_id = n.user_id
JOIN alarms a ON a.id = n.alarm_id AND a.resident_id = f.resident_id
LEFT JOIN notification_prefs p ON p.user_id = n.user_id
WHERE n.alarm_id = %(alarm)s AND n.event = 'raised' AND n.state <> 'suppressed'
  AND coalesce(p.notify_resolved, true)
ON CONFLICT DO NOTHING
"""


async def enqueue(conn: AsyncConn, *, alarm_id: int, event: Event, level: int = 0) -> int:
    """Write the outbox rows for an alarm event; returns how many recipients were added."""
    query = {Event.RAISED: _RAISED, Event.ESCALATED: _ESCALATED, Event.RESOLVED: _RESOLVED}[event]
    cur = await conn.execute(query.encode(), {"alarm": alarm_id, "level": level})
    if cur.rowcount > 0:
        await conn.execute("NOTIFY notifications")
    return max(cur.rowcount, 0)
