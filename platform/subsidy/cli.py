"""``eldercare subsidy verify``: verify a month's claims of a region (the monthly batch run)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subsidy = sub.add_parser("subsidy", help="subsidy verification")
    subsidy_sub = subsidy.add_subparsers(dest="subsidy_command", required=True, metavar="ACTION")
    verify = subsidy_sub.add_parser("verify", help="verify every claim line of a month in a region; print the summary")
    verify.add_argument("--month", required=True, help="YYYY-MM")
    verify.add_argument("--region", required=True, help="administrative division code, e.g. 4205")
    verify.add_argument("--no-ranking", action="store_true", help="skip the anomaly ranking of the homes")
    verify.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from psycopg import AsyncConnection

    from eldercare.platform import divisions
    from eldercare.platform.config import DatabaseSettings
    from eldercare.platform.subsidy import verify
    from eldercare.platform.subsidy.access import parse_month

    try:
        month = parse_month(args.month)
    except ValueError as exc:
        print(f"--month: {exc}")
        return 2
    region: str = args.region
    if not divisions.is_region(region):
        print(f"--region: {divisions.RULE}")
        return 2
    url: str = args.database_url or DatabaseSettings().database_url

    async def run() -> int:
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            summary = await verify.run(conn, principal=None, region=region, month=month, rank=not args.no_ranking)
        print(json.dumps({"run_id": summary.run_id, "region": region, "month": args.month, **summary.as_json()},
                         ensure_ascii=False, indent=1))  # fmt: skip
        return 0

    return asyncio.run(run())
