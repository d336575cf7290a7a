"""``eldercare audit verify``: check the audit log's hash chain."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 at the first broken link")
    verify.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    import asyncio

    from psycopg import AsyncConnection

    from eldercare.platform.audit.log import verify
    from eldercare.platform.config import DatabaseSettings

    url: str = args.database_url or DatabaseSettings().database_url

    async def run() -> int:
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            verdict = await verify(conn)
        if verdict.ok:
            print(f"audit log intact: {verdict.checked} entries")
            return 0
        print(
            f"audit log BROKEN at entry {verdict.broken_seq}: {verdict.reason}"
            f" ({verdict.checked} entries before it are intact)"
        )
        return 1

    return asyncio.run(run())
