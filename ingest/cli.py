"""``eldercare ingest`` (run) and ``eldercare ingest parked list|show|replay``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = sub.add_parser("ingest", help="store gateway messages into TimescaleDB (runs until stopped)")
    ingest.add_argument("--name", help="stable name of this process (its MQTT sessions persist under it)")
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


def _database_url() -> str:
    from eldercare.platform.config import DatabaseSettings

    return DatabaseSettings().database_url


def _run(args: argparse.Namespace) -> int:
    from eldercare.ingest.service import run
    from eldercare.ingest.settings import IngestSettings
    from eldercare.platform.config import BrokerSettings

    settings = IngestSettings() if args.name is None else IngestSettings(ingest_name=args.name)
    run(settings=settings, broker=BrokerSettings(), database_url=_database_url())
    return 0


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

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        row = get_parked(conn, args.id)
    if row is None:
        print(f"no parked message {args.id}", file=sys.stderr)
        return 1
    for name in (
        "id",
        "kind",
        "received_at",
        "topic",
        "reason",
        "institution",
        "gateway",
        "context",
        "replayed_at",
    ):
        print(f"{name}: {getattr(row, name)}")
    print("payload:", row.payload.decode("utf-8", errors="backslashreplace"))
    return 0


def _replay(args: argparse.Namespace) -> int:
    import psycopg

    from eldercare.ingest.parked import replay

    failures = 0
    with psycopg.connect(_database_url(), autocommit=True) as conn:
        for parked_id in args.ids:
            reason = replay(conn, parked_id)
            if reason is None:
                print(f"{parked_id}: stored")
            else:
                failures += 1
                print(f"{parked_id}: {reason}", file=sys.stderr)
    return 1 if failures else 0
