"""The maintenance jobs (gap scan, roll-ups, retention) and their schedule.

They run inside every ``eldercare ingest`` process (a background thread; ``ELDERCARE_INGEST_MAINTAIN=false``
turns it off) and from ``eldercare ingest maintain`` (once, or ``--loop``). Each run holds a transaction-level
advisory lock for its job and skips if the job ran less than its interval ago, so with several processes
a job still runs once per interval, whoever gets there first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.types.json import Jsonb

from eldercare.ingest import gaps, locks, retention, rollups
from eldercare.ingest.metrics import IngestMetrics
from eldercare.ingest.registry import Conn
from eldercare.ingest.settings import IngestSettings

if TYPE_CHECKING:
    from eldercare.platform.crypto import Vault

log = logging.getLogger(__name__)

_DAY_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class JobRun:
    job: str
    ran: bool  # False: another process holds the job, or it ran less than an interval ago
    result: dict[str, Any]
    seconds: float


def interval(settings: IngestSettings, job: str) -> float:
    return {
        "gaps": settings.ingest_gap_interval_s,
        "rollups": settings.ingest_rollup_interval_s,
        "retention": settings.ingest_retention_interval_s,
    }[job]


def _work(
    conn: Conn, settings: IngestSettings, job: str, last_run_age_s: float | None, vault: Vault | None
) -> dict[str, Any]:
    if job == "gaps":
        lookback = settings.ingest_frames_retention_days * _DAY_S
        if last_run_age_s is not None:
            # streams whose horizon may have moved: frames since the last scan, or within the grace before it
            # (plus 15 s for a batch whose transaction began before its commit)
            lookback = min(lookback, last_run_age_s + settings.ingest_gap_grace_s + 15)
        return asdict(gaps.scan(conn, grace_s=settings.ingest_gap_grace_s, lookback_s=lookback))
    if job == "rollups":
        if vault is None:
            raise ValueError("the roll-up job opens and seals heart and breathing rates: it needs the vault")
        result = rollups.run(
            conn,
            vault=vault,
            lag_s=settings.ingest_rollup_lag_s,
            timezone=settings.ingest_rollup_timezone,
            raw_retention_s=settings.ingest_raw_retention_days * _DAY_S,
        )
        return {**asdict(result), "watermark": result.watermark.isoformat() if result.watermark else None}
    return asdict(
        retention.run(
            conn,
            raw_retention_s=settings.ingest_raw_retention_days * _DAY_S,
            events_retention_s=settings.ingest_events_retention_days * _DAY_S,
            frames_retention_s=settings.ingest_frames_retention_days * _DAY_S,
        )
    )


def run_job(
    conn: Conn, settings: IngestSettings, job: str, *, force: bool, wait: bool = False, vault: Vault | None = None
) -> JobRun:
    """Run ``job`` once under its lock; unless ``force``, only if its interval has passed since the last run.
    ``vault``: the roll-ups open the readings' sealed rates and seal their statistics with it (required for them;
    the gap scan and retention read no personal data, and their commands need no data key)."""
    started = time.perf_counter()
    with conn.transaction():
        if not locks.hold(conn, job, wait=wait):
            return JobRun(job, False, {}, 0.0)
        last = conn.execute(
            "SELECT extract(epoch FROM now() - last_run_at)::float8 FROM ingest_jobs WHERE job = %s", (job,)
        ).fetchone()
        age = float(last[0]) if last and last[0] is not None else None
        if not force and age is not None and age < interval(settings, job) * 0.9:
            return JobRun(job, False, {}, 0.0)
        result = _work(conn, settings, job, age, vault)
        conn.execute(
            "INSERT INTO ingest_jobs (job, last_run_at, last_result) VALUES (%s, now(), %s)"
            " ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, last_result = excluded.last_result",
            (job, Jsonb(result)),
        )
    return JobRun(job, True, result, time.perf_counter() - started)


class Maintainer:
    """The in-process schedule: checks every second which job is due and runs it."""

    def __init__(
        self,
        *,
        database_url: str,
        settings: IngestSettings,
        metrics: IngestMetrics,
        vault: Vault,
        jobs: Sequence[str] = locks.JOBS,
        on_run: Callable[[JobRun], None] | None = None,
    ) -> None:
        self._database_url = database_url
        self._settings = settings
        self._metrics = metrics
        self._vault = vault
        self._jobs = list(jobs)
        self._on_run = on_run
        self._due = dict.fromkeys(self._jobs, 0.0)
        self._stopping = threading.Event()
        self._conn: Conn | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stopping.wait(1.0):
            for job in self._jobs:
                if time.monotonic() < self._due[job] or self._stopping.is_set():
                    continue
                self._due[job] = time.monotonic() + interval(self._settings, job)
                self.run_now(job)

    def run_now(self, job: str) -> JobRun | None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._database_url, autocommit=True, connect_timeout=5)
            outcome = run_job(self._conn, self._settings, job, force=False, vault=self._vault)
        except psycopg.Error as exc:
            log.warning("maintenance %s failed: %s (retried at its next interval)", job, exc)
            self._metrics.maintenance_runs.inc(job=job, outcome="failed")
            if self._conn is not None:
                self._conn.close()
            return None
        if outcome.ran:
            self._metrics.maintenance_runs.inc(job=job, outcome="ran")
            if job == "gaps":
                self._metrics.open_gaps.set(float(outcome.result.get("open_gaps", 0)))
            log.info("maintenance %s: %s (%.2f s)", job, outcome.result, outcome.seconds)
            if self._on_run is not None:
                self._on_run(outcome)
        return outcome
