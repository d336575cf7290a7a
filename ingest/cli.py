"""``eldercare ingest`` (run), ``ingest parked list|show|replay``, ``ingest gaps``, ``ingest maintain`` and
``ingest rebuild``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from eldercare.platform.crypto import Vault


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = sub.add_parser("ingest", help="store gateway messages into TimescaleDB (runs until stopped)")
    ingest.add_argument("--name", help="stable name of this process (its MQTT sessions persist under it)")
    ingest.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    ingest.set_defaults(handler=_run)
    actions = ingest.add_subparsers(dest="ingest_command", metavar="ACTION")

    parked = actions.add_parser("parked", help="messages that could not be stored")
    parked_sub = parked.add_subparsers(dest="parked_command", required=True, metavar="ACTION")
    listing = parked_sub.add_parser("list", help="list parked messages, newest first")
    listing.add_argument("--kind", choices=["dead_letter", "quarantine"])
    listing.add_argument("--all", action="store_true", help="include replayed ones")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_list)
    show = parked_sub.add_parser("show", help="one parked message with its raw payload")
    show.add_argument("id", type=int)
    show.set_defaults(handler=_show)
    replay = parked_sub.add_parser("replay", help="store parked messages again (after fixing the cause)")
    replay.add_argument("ids", type=int, nargs="+")
    replay.set_defaults(handler=_replay)

    gaps = actions.add_parser("gaps", help="gaps in gateways' frame sequences (frames that never arrived)")
    gaps.add_argument("--all", action="store_true", help="include gaps filled by late frames")
    gaps.add_argument("--gateway", help="only this gateway id")
    gaps.add_argument("--limit", type=int, default=100)
    gaps.add_argument("--scan", action="store_true", help="scan for new gaps first")
    gaps.set_defaults(handler=_gaps)

    maintain = actions.add_parser("maintain", help="run the gap scan, roll-ups and retention now (or --loop)")
    maintain.add_argument("--job", choices=["gaps", "rollups", "retention"], action="append", help="only these jobs")
    maintain.add_argument("--loop", action="store_true", help="keep running them at their intervals")
    maintain.set_defaults(handler=_maintain)

    rebuild = actions.add_parser(
        "rebuild",
        help="recompute the roll-ups of a time range from raw data (after a backfill that bypassed ingest)",
        description="Recompute the hourly roll-ups of [--from, --until), widened to whole hours, from the raw"
        " tables, and the daily roll-ups of the local days that hold them. A date is its midnight and a time"
        " without an offset is local, both in ELDERCARE_INGEST_ROLLUP_TIMEZONE. Hours whose raw chunks the"
        " retention job dropped are refused: their roll-ups are all that is left of them.",
    )
    rebuild.add_argument("--from", dest="start", required=True, metavar="WHEN", help="a date or ISO time")
    rebuild.add_argument("--until", dest="end", required=True, metavar="WHEN", help="not included; a date or ISO time")
    rebuild.add_argument(
        "--over-dropped",
        action="store_true",
        help="rebuild hours whose raw chunks were dropped too: their raw data has been restored in full",
    )
    rebuild.set_defaults(handler=_rebuild)


def _database_url() -> str:
    from eldercare.platform.config import DatabaseSettings

    return DatabaseSettings().database_url


KEY_CHECK_WAIT_S = 24 * 3600.0  # ingest started while its database is down: how long it waits to check the key


def _vault(database_url: str, *, wait_s: float = 0.0) -> Vault:
    """The data key's vault, which seals the positions, rates and payloads ingest stores and opens the rates the
    roll-ups read, checked against the database's (``platform/db/keycheck.py``); a missing, bad or wrong key ends
    the command, saying so (ingest never stores a position or a rate in clear, nor one sealed with a key the
    platform does not have). ``wait_s``: how long a database not
    up yet is waited for (the service: :data:`KEY_CHECK_WAIT_S`; an operator's command: not at all)."""
    from pydantic import ValidationError

    from eldercare.platform.config import SecuritySettings
    from eldercare.platform.db.keycheck import DataKeyMismatchError, checked_vault

    try:
        security = SecuritySettings()
        return checked_vault(database_url, security.key_bytes(), previous=security.previous_key_bytes(), wait_s=wait_s)
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors())
        why = "the positions, heart and breathing rates and payloads ingest stores are sealed with it"
        raise SystemExit(f"eldercare ingest: ELDERCARE_DATA_KEY: {reason} ({why})") from None
    except DataKeyMismatchError as exc:
        raise SystemExit(f"eldercare ingest: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from eldercare.ingest.service import run
    from eldercare.ingest.settings import IngestSettings
    from eldercare.platform.config import BrokerSettings

    overrides: dict[str, Any] = {}
    if args.name is not None:
        overrides["ingest_name"] = args.name
    if args.metrics_port is not None:
        overrides["ingest_metrics_port"] = args.metrics_port
    settings, database_url = IngestSettings(**overrides), _database_url()
    # a database not up yet is waited for, as ingest waits for it after (it stores nothing without it)
    vault = _vault(database_url, wait_s=KEY_CHECK_WAIT_S)
    return run(settings=settings, broker=BrokerSettings(), database_url=database_url, vault=vault)


def _list(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest.parked import list_parked

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        rows = list_parked(conn, kind=args.kind, include_replayed=args.all, limit=args.limit)
    for row in rows:
        state = "replayed" if row.replayed_at else "open"
        print(f"{row.id}\t{row.received_at:%Y-%m-%d %H:%M:%S}\t{row.kind}\t{state}\t{row.topic}\t{row.reason}")
    return 0


def _show(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest.parked import get_parked

    database_url = _database_url()
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = get_parked(conn, args.id, _vault(database_url))
    if row is None:
        print(f"no parked message {args.id}", file=sys.stderr)
        return 1
    for name in ("id", "kind", "received_at", "topic", "reason", "institution", "gateway", "context", "replayed_at"):
        print(f"{name}: {getattr(row, name)}")
    assert row.payload is not None  # opened: one shown
    print("payload:", row.payload.decode("utf-8", errors="backslashreplace"))
    return 0


def _replay(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest.parked import replay

    failures = 0
    database_url = _database_url()
    vault = _vault(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for parked_id in args.ids:
            reason = replay(conn, parked_id, vault)
            if reason is None:
                print(f"{parked_id}: stored")
            else:
                failures += 1
                print(f"{parked_id}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def _gaps(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest.gaps import list_gaps
    from eldercare.ingest.maintain import run_job
    from eldercare.ingest.settings import IngestSettings

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        if args.scan:
            outcome = run_job(conn, IngestSettings(), "gaps", force=True, wait=True)
            print(f"scan: {json.dumps(outcome.result)}", file=sys.stderr)
        rows = list_gaps(conn, open_only=not args.all, gateway=args.gateway, limit=args.limit)
    print("institution\tgateway\tepoch\tfirst_seq\tlast_seq\tmissing\tdetected_at\tfilled_at")
    for gap in rows:
        filled = f"{gap.filled_at:%Y-%m-%d %H:%M:%S}" if gap.filled_at else "open"
        print(
            f"{gap.institution_code}\t{gap.gateway_id}\t{gap.epoch}\t{gap.first_seq}\t{gap.last_seq}\t{gap.missing}"
            f"\t{gap.detected_at:%Y-%m-%d %H:%M:%S}\t{filled}"
        )
    return 0


def _maintain(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest.locks import JOBS
    from eldercare.ingest.maintain import interval, run_job
    from eldercare.ingest.settings import IngestSettings

    settings, database_url = IngestSettings(), _database_url()
    jobs = args.job or list(JOBS)
    vault = _vault(database_url) if "rollups" in jobs else None  # the roll-ups open and seal rates
    due = dict.fromkeys(jobs, 0.0)
    while True:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for job in jobs:
                if time.monotonic() < due[job]:
                    continue
                outcome = run_job(conn, settings, job, force=not args.loop, wait=not args.loop, vault=vault)
                due[job] = time.monotonic() + interval(settings, job)
                if outcome.ran:
                    print(f"{job}: {json.dumps(outcome.result, default=str)} ({outcome.seconds:.2f} s)", flush=True)
        if not args.loop:
            return 0
        time.sleep(1.0)


def parse_when(text: str, timezone: str) -> datetime:
    """``--from``/``--until``: a date (its local midnight) or an ISO time (local when it has no offset)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a date (2026-10-01) nor an ISO time (2026-10-01T08:00+08:00)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=ZoneInfo(timezone))


def parse_range(start: str, end: str, timezone: str) -> tuple[datetime, datetime]:
    first, last = parse_when(start, timezone), parse_when(end, timezone)
    if last <= first:
        raise ValueError(f"--until ({end}) must be later than --from ({start})")
    return first, last


def _rebuild(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest import rollups
    from eldercare.ingest.settings import IngestSettings

    zone = IngestSettings().ingest_rollup_timezone
    try:
        start, end = parse_range(args.start, args.end, zone)
    except ValueError as error:
        print(f"eldercare ingest rebuild: {error}", file=sys.stderr)
        return 2
    database_url = _database_url()
    vault = _vault(database_url)  # the readings' rates are opened, and the roll-ups' sealed, with it
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            done = rollups.rebuild(
                conn, vault=vault, start=start, end=end, timezone=zone, over_dropped=args.over_dropped
            )
        except rollups.RawDataGoneError as gone:
            print(f"refused: {gone}", file=sys.stderr)
            for chunk in gone.dropped[:10]:
                print(f"  {chunk.table}\t{chunk.start:%Y-%m-%d %H:%M}\t{chunk.end:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
            if len(gone.dropped) > 10:
                print(f"  ... and {len(gone.dropped) - 10} more", file=sys.stderr)
            print("rebuild a range after them, or pass --over-dropped if their raw data is restored", file=sys.stderr)
            return 1
    print(
        f"rebuilt {done.hours} hours ({done.start:%Y-%m-%d %H:%M} to {done.end:%Y-%m-%d %H:%M} UTC) and"
        f" {done.days} days ({zone}) from raw data"
    )
    if done.unopened:
        print(
            f"{done.unopened} sealed reading(s) or hourly summaries did not open and were left out of the rates"
            " (the log names them)",
            file=sys.stderr,
        )
    return 0
