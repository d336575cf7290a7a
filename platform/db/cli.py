"""``eldercare db migrate``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = db_sub.add_parser("migrate", help="apply the versioned migrations that are missing")
    migrate.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    migrate.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from eldercare.platform.config import DatabaseSettings
    from eldercare.platform.db.migrate import migrate

    url: str = args.database_url or DatabaseSettings().database_url
    applied = migrate(url)
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("up to date")
    return 0
