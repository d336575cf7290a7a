"""What the readers and writers of bed readings' sealed rates share (``bed_readings.vitals_enc``, migration 0028).

A block is bound to its row by the row's time in PostgreSQL's microseconds since 2000-01-01 and its device
(:class:`eldercare.platform.crypto.VitalsSealer`). A reader selects the time in that form with :func:`micros_sql`
(exact: ``extract(epoch ...)`` is numeric), so that a whole window opens in one call of
:meth:`eldercare.platform.crypto.Vault.open_vitals` without a ``datetime`` a row.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

from eldercare.platform.crypto import VitalsSealer

PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_UNIX_US: Final = 946_684_800_000_000  # PG_EPOCH in Unix microseconds


def micros_sql(column: str) -> str:
    """SQL for a ``timestamptz`` column as PostgreSQL microseconds since 2000-01-01 (``bigint``)."""
    return f"((extract(epoch FROM {column}) * 1000000)::bigint - {PG_EPOCH_UNIX_US})"


def micros_of(when: datetime) -> int:
    """A time as PostgreSQL stores it: microseconds since 2000-01-01 UTC (integer arithmetic, no float)."""
    delta = when - PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def seal_reading(
    sealer: VitalsSealer, when: datetime, device_id: int, hr: float | None, rr: float | None
) -> bytes | None:
    """A reading's sealed rates, from its time as a ``datetime`` (for writers outside ingest's hot path: the
    migration's sealing of rows stored in clear, a test's rows)."""
    return sealer.seal(micros_of(when), device_id, hr, rr)


def summary_row(device_id: int, period: datetime | date) -> str:
    """The row a roll-up's sealed statistics are bound to (:meth:`Vault.seal_vitals_summary`'s ``row``): the device
    and the period, an hour's start (``bed_hourly.bucket``) or a day (``bed_daily.day``), as ``"17/2026-11-01"`` or
    ``"17/2026-11-01T08:00:00+00:00"``. Whoever seals or opens a summary (the roll-up job, the migration that sealed
    the older rows, a reader) names its row with this function. An hour is named in UTC whatever the session's time
    zone, which decides the zone psycopg gives a ``timestamptz`` in: the same hour gives the same string in every
    process."""
    if isinstance(period, datetime):
        if period.tzinfo is None:
            raise ValueError(
                f"an hour of a roll-up is a timestamptz: give it with its time zone ({period.isoformat()})"
            )
        period = period.astimezone(UTC)
    return f"{device_id}/{period.isoformat()}"
