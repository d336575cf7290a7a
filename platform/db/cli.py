"""``eldercare db migrate``, ``eldercare db rekey`` and ``eldercare db scrub``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eldercare.platform.db.migrate import Sealed

_SCRUB_HELP = (
    "rewrite the tables that held personal text in clear (VACUUM FULL, one table at a time), so the old row versions "
    "that `db migrate` left after encrypting the text leave the table files. Until then those bytes may stay in the "
    "table files; and even after it, copies remain beyond the database's reach: the disk blocks of the old files "
    "until the file system reuses them, the write-ahead log (and any WAL archive), and backups taken before. Each "
    "rewrite locks its table (alarms, alarm_changes, hospital_stays, deaths, parked_messages, the positions' "
    "locations and device_events, and the heart and breathing rates' bed_readings, bed_hourly and bed_daily) "
    "against reads and writes while it runs: alarms are not raised and readings not "
    "stored meanwhile. Run it in a quiet hour."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from eldercare.platform.db import SCRUB_LOCK_TIMEOUT  # the package: the standard library only

    db = sub.add_parser("db", help="the database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = db_sub.add_parser(
        "migrate",
        help="apply the versioned migrations that are missing and encrypt personal text left in clear",
        description="Apply the versioned migrations that are missing, then encrypt the personal text an older version "
        "left in clear, positions and heart and breathing rates included (needs ELDERCARE_DATA_KEY then), then give "
        "the alarms closed before outcome codes the code "
        "their outcome text reliably tells (needs the key to read the text; the others stay not known). Both run in "
        "short batches and take no lock that the platform waits for, so they may run while the platform runs; the "
        "encryption leaves the old row versions in the table files for `eldercare db scrub`.",
    )
    migrate.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    migrate.set_defaults(handler=_migrate)
    rekey = db_sub.add_parser(
        "rekey",
        help="finish a rotation of the data key: re-seal with the new key what the previous key sealed",
        description="Re-seal with the new key (ELDERCARE_DATA_KEY) every personal value the previous key "
        "(ELDERCARE_DATA_KEY_PREVIOUS) sealed, compute the ID number hashes again, and when nothing of the previous "
        "key is left, forget it: then remove ELDERCARE_DATA_KEY_PREVIOUS from every service. Runs in short batches "
        "that take no lock the platform waits for, so it may run while the platform and ingest run (every one of "
        "them restarted with both keys first); run it again after an interruption. The old row versions stay in the "
        "table files until `eldercare db scrub`.",
    )
    rekey.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    rekey.add_argument(
        "--drop-unmatched-registers",
        action="store_true",
        help="remove the subsidy registers' entries imported before the rotation that name no resident (only their "
        "ID number's hash is stored, which cannot be computed again): import the registers again first",
    )
    rekey.set_defaults(handler=_rekey)
    scrub = db_sub.add_parser(
        "scrub",
        help="maintenance for a quiet hour: rewrite the tables that held personal text in clear (locks each one)",
        description=_SCRUB_HELP,
    )
    scrub.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    scrub.add_argument(
        "--lock-timeout",
        default=SCRUB_LOCK_TIMEOUT,
        help="give up on a table whose lock is not granted within this time (PostgreSQL interval; default %(default)s)",
    )
    scrub.set_defaults(handler=_scrub)


def _url(args: argparse.Namespace) -> str:
    from eldercare.platform.config import DatabaseSettings

    url: str = args.database_url or DatabaseSettings().database_url
    return url


def _migrate(args: argparse.Namespace) -> int:
    from eldercare.platform.db.keycheck import DataKeyMismatchError
    from eldercare.platform.db.migrate import MigrationError, apply_migrations, seal_in_clear
    from eldercare.platform.db.outcomes import backfill_outcome_codes
    from eldercare.platform.db.positions import seal_positions
    from eldercare.platform.db.vitals import seal_vitals

    url = _url(args)
    try:
        applied = apply_migrations(url)
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}", flush=True)
        sealed = (
            _say_sealed(seal_in_clear(url), "personal text")
            + _say_sealed(seal_positions(url), "positions")
            + _say_sealed(seal_vitals(url), "heart and breathing rates")
        )
        if sealed:
            print(
                "their old row versions may stay in the table files until `eldercare db scrub` rewrites them"
                " (it locks each table while it runs: run it in a quiet hour)",
                flush=True,
            )
        coded = backfill_outcome_codes(url)
    except (MigrationError, DataKeyMismatchError) as exc:
        print(f"eldercare db migrate: {exc}", file=sys.stderr)
        return 1
    if coded.examined:
        print(
            f"gave {coded.filled} of {coded.examined} closed alarm(s) without an outcome code the code their outcome"
            f" text tells; {coded.left} left not known (the false-alarm figures leave them out, as every alarm"
            " without a code)"
        )
    if coded.unreadable:
        print(
            f"eldercare db migrate: {coded.unreadable} alarm outcome text(s) did not decrypt with ELDERCARE_DATA_KEY:"
            " left not known, read again by the next migrate",
            file=sys.stderr,
        )
    if not (applied or sealed or coded.examined):
        print("up to date")
    return 0


def _rekey(args: argparse.Namespace) -> int:
    from eldercare.platform.db.rekey import RekeyError, rekey

    try:
        rotation = rekey(_url(args), drop_unmatched=args.drop_unmatched_registers)
    except RekeyError as exc:
        print(f"eldercare db rekey: {exc}", file=sys.stderr)
        return 1
    if not rotation.was_under_way:
        print("no rotation under way: nothing is sealed with ELDERCARE_DATA_KEY_PREVIOUS; remove it from the services")
        return 0
    for t in rotation.tables:
        line = f"{t.table}: {t.rows} row(s) read, {t.resealed} sealed again with the new key"
        if t.dropped:
            line += f", {t.dropped} dropped"
        print(line)
        if t.unreadable:
            print(f"  {t.unreadable} value(s) of {t.table} open with neither key (damaged): left as they are")
        if t.unmatched:
            print(
                f"  {t.unmatched} entr(ies) of {t.table}, imported before the rotation, name no resident: their hash "
                "cannot be computed again. Import the register again, then run `eldercare db rekey "
                "--drop-unmatched-registers`"
            )
    if not rotation.finished:
        print("eldercare db rekey: the rotation is not finished", file=sys.stderr)
        return 1
    print(
        "rotation finished: nothing sealed with the previous key is left, and it is forgotten. Remove "
        "ELDERCARE_DATA_KEY_PREVIOUS from every service and restart them; the old row versions stay in the table "
        "files until `eldercare db scrub`"
    )
    return 0


def _say_sealed(sealed: list[Sealed], what: str) -> list[Sealed]:
    """Print what a seal did, if anything; the tables it sealed rows of."""
    done = [s for s in sealed if s.rows]
    if done:
        rows = sum(s.rows for s in done)
        tables = ", ".join(f"{s.table} {s.rows}" for s in done)
        print(f"sealed {rows} row(s) of {len(done)} table(s) that held {what} in clear ({tables})")
    return done


def _scrub(args: argparse.Namespace) -> int:
    from eldercare.platform.db.migrate import ScrubError, scrub

    try:
        done = scrub(_url(args), lock_timeout=args.lock_timeout)
    except ScrubError as exc:
        print(f"eldercare db scrub: {exc}", file=sys.stderr)
        return 1
    print(f"rewrote {len(done)} table(s): {', '.join(done)}")
    return 0
