"""Outcome codes for the alarms closed without one, read from the outcome text they were closed with.

Migration 0015 added ``alarms.outcome_code``; every alarm closed before it has NULL (not known), because its outcome
text is sealed (0013) and SQL cannot read it, so the false-alarm figures leave those alarms out. Here the application
reads the text and gives an alarm the code only where the text tells it reliably, i.e. where the platform itself
wrote the text from a fixed list:

- the text is a code (``false_alarm``, ``real_event`` ...): what the staff board sent as the outcome from its first
  version on (its radio buttons), and what the API has read as the code since 0015 (``alarms.service.closing_code``);
- a text the engine or the ticker wrote when a device or the system closed the alarm (:data:`MACHINE_CLOSINGS`), and
  the alarm's closing change says so (``alarm_changes``: that actor, no user, to that state): the code they have
  written beside the same text since 0015.

Everything else stays NULL: what staff typed ("误报，老人未跌倒", "back in bed") is free text, read by no rule here
(a person may write anything, and 0015 reads no free text either); the old ticker's "held back during a gateway
outage" (alarms held under a gateway's outage, closed unseen, no change recorded) says nothing about what happened; a
text that does not decrypt is counted and left for the next migrate.

Runs beside a live platform like the sealing (``migrate.py``): batches of :data:`OUTCOME_BATCH_ROWS` closed alarms, each
a short transaction that locks only its rows; the engine never changes a closed alarm, and the triggers move the
counts of ``supervision_alarm_daily`` (the figures, the regulators' pages, Grafana) with each code. Idempotent: a code
is only ever set where there is none, and ``alarm_outcome_backfill`` (0023) records how far the alarms have been
looked at, so the next migrate reads only what was closed since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from eldercare.platform.alarms import text
from eldercare.platform.alarms.models import OutcomeCode
from eldercare.platform.alarms.service import closing_code
from eldercare.platform.crypto import DecryptionError, Vault
from eldercare.platform.db.batches import Row, in_batches
from eldercare.platform.db.migrate import Conn, is_applied, sealing_vault

log = logging.getLogger(__name__)

CODES, SINCE = 15, 23  # the migration that added the codes; the one that records how far the alarms were looked at
OUTCOME_BATCH_ROWS = 1000
"""Closed alarms looked at per transaction: each batch's rows are locked only while it runs."""

# (actor of the closing change, the state it closed to, the outcome text): the code. The texts are those the versions
# before 0015 wrote (platform/alarms/engine.py and ticker.py, unchanged since their first versions); the codes are
# those the engine and the ticker write beside the same texts since 0015, for the reasons given there: a carer who
# came to a cancelled call, or smoke that cleared, says nothing about what was found (other); a fault the device
# cleared, or a gateway back online, was a device's matter; a resident back in bed had left it.
MACHINE_CLOSINGS: dict[tuple[str, str, str], OutcomeCode] = {
    ("device", "cancelled", "cancelled at the bedside"): OutcomeCode.OTHER,
    ("device", "resolved", "cleared by the sensor"): OutcomeCode.OTHER,
    ("device", "resolved", "cleared by the device"): OutcomeCode.DEVICE_ISSUE,
    ("device", "resolved", "back in bed"): OutcomeCode.REAL_EVENT,
    ("system", "resolved", "gateway back online"): OutcomeCode.DEVICE_ISSUE,
}

# A closed alarm without a code is a.outcome_code IS NULL AND a.state IN ('resolved', 'cancelled'): the CHECK of 0015
# allows a code only on a closed alarm. Only alarms raised before 0015 was applied are looked at: one raised since
# got its code when it was closed, or has none because staff gave none (the API read the text then), and reading
# those again would need the data key at every migrate of a live database (the test suite's, for one). Where to
# start, where to stop (the last such alarm now), and how far the mark may go at the end (not past an open alarm).
_START = """
SELECT b.through_id,
       least((SELECT max(id) FROM alarms),
             (SELECT min(id) - 1 FROM alarms WHERE state IN ('raised', 'acknowledged', 'attending'))),
       (SELECT max(a.id) FROM alarms a
        WHERE a.id > b.through_id AND a.outcome_code IS NULL AND a.state IN ('resolved', 'cancelled')
        AND a.raised_at < (SELECT applied_at FROM schema_migrations WHERE version = %(codes)s))
FROM alarm_outcome_backfill b
"""

# With the actor of the change that closed the alarm when no user made it (a user named "device" has a user_id).
_BATCH = """
SELECT a.id, a.state::text, a.outcome_enc, a.outcome,
       (SELECT c.actor FROM alarm_changes c WHERE c.alarm_id = a.id AND c.to_state = a.state AND c.user_id IS NULL
        ORDER BY c.at DESC, c.id DESC LIMIT 1)
FROM alarms a
WHERE a.id > %(after)s AND a.id <= %(last)s AND a.outcome_code IS NULL AND a.state IN ('resolved', 'cancelled')
AND a.raised_at < (SELECT applied_at FROM schema_migrations WHERE version = %(codes)s)
ORDER BY a.id LIMIT %(rows)s FOR NO KEY UPDATE OF a
"""

_FILL = """
UPDATE alarms a SET outcome_code = s.code::alarm_outcome FROM unnest(%s::bigint[], %s::text[]) AS s(id, code)
WHERE a.id = s.id AND a.outcome_code IS NULL
"""


@dataclass(frozen=True, slots=True)
class Backfilled:
    """What one run did: closed alarms without a code ``examined``, ``filled`` with one, ``unreadable`` texts among
    the rest (left for the next run), in ``batches`` short transactions."""

    examined: int = 0
    filled: int = 0
    unreadable: int = 0
    batches: int = 0

    @property
    def left(self) -> int:
        """Looked at and still without a code: not known."""
        return self.examined - self.filled


def recorded_code(outcome: str | None, *, state: str, closed_by: str | None) -> OutcomeCode | None:
    """The code that an alarm's outcome text tells reliably (see the module), else None. ``closed_by``: the actor of
    the change that closed the alarm when no user made it."""
    if outcome is None:
        return None
    code = closing_code(outcome, None)
    if code is None and closed_by is not None:
        code = MACHINE_CLOSINGS.get((closed_by, state, outcome))
    return code


def backfill_outcome_codes(conninfo: str, *, data_key: bytes | None = None) -> Backfilled:
    """Give the closed alarms without an outcome code the code their outcome text tells (:func:`recorded_code`), in
    batches beside the running platform; what was done. ``data_key`` (default: the settings' ``ELDERCARE_DATA_KEY``)
    opens the texts; it is read only when there is an alarm to look at."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not is_applied(conn, SINCE):
            return Backfilled()
        start = conn.execute(_START, {"codes": CODES}).fetchone()
        assert start is not None
        after, ceiling, last = start
        if last is None:
            _settle(conn, ceiling)
            return Backfilled()
        need = "alarms were closed before outcome codes"
        vault = sealing_vault(conninfo, data_key, CODES, need=need, to="read their outcome text for the code")
        result, unreadable_at = _fill(conn, vault, after=after, last=last)
        # Up to the oldest open alarm: one closed later, by a platform of a version before 0015, is still looked at.
        # Not past a text that did not decrypt: it is read again.
        _settle(conn, ceiling if unreadable_at is None else min(ceiling, unreadable_at - 1))
    if result.examined:
        log.info(
            "gave %d of %d closed alarms without an outcome code the code of their outcome text (%d batches)",
            result.filled,
            result.examined,
            result.batches,
        )
    if result.unreadable:
        log.warning("%d alarm outcome text(s) did not decrypt: left without a code", result.unreadable)
    return result


def _fill(conn: Conn, vault: Vault, *, after: int, last: int) -> tuple[Backfilled, int | None]:
    """The closed alarms without a code with ids in (``after``, ``last``], batch by batch in id order; what was done,
    and the first alarm whose text did not decrypt."""
    unreadable = 0
    unreadable_at: int | None = None

    def fill(batch: list[Row]) -> int:
        nonlocal unreadable, unreadable_at
        ids: list[int] = []
        codes: list[str] = []
        for alarm_id, state, blob, clear, closed_by in batch:
            try:
                outcome = clear if blob is None else vault.decrypt(bytes(blob), column=text.OUTCOME)
            except DecryptionError:
                unreadable += 1
                unreadable_at = alarm_id if unreadable_at is None else unreadable_at
                continue
            code = recorded_code(outcome, state=state, closed_by=closed_by)
            if code is not None:
                ids.append(alarm_id)
                codes.append(code.value)
        return conn.execute(_FILL, (ids, codes)).rowcount if ids else 0

    walked = in_batches(
        conn,
        start=after,
        select=lambda at: conn.execute(
            _BATCH, {"after": at, "last": last, "rows": OUTCOME_BATCH_ROWS, "codes": CODES}
        ).fetchall(),
        rewrite=fill,
        after=lambda batch: int(batch[-1][0]),
        what="closed alarms without an outcome code",
    )
    return Backfilled(walked.rows, walked.changed, unreadable, walked.batches), unreadable_at


def _settle(conn: Conn, through: int | None) -> None:
    """Every closed alarm without a code up to ``through`` has been looked at."""
    if through is not None:
        conn.execute("UPDATE alarm_outcome_backfill SET through_id = greatest(through_id, %s)", (through,))
