"""``eldercare users add``: create a user from the command line (the first platform admin, say)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="platform users")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="create a user; the password is read from ELDERCARE_NEW_PASSWORD or asked")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["admin", "regulator", "head", "staff", "family"])
    add.add_argument("--institution-code", help="staff and heads: their institution's unified social credit code")
    add.add_argument("--region", help="regulators: their administrative division code")
    add.add_argument("--display-name", default="")
    add.add_argument("--database-url", help="libpq URL; default from the settings (ELDERCARE_DATABASE_URL)")
    add.set_defaults(handler=_add)


def _add(args: argparse.Namespace) -> int:
    import asyncio
    import getpass
    import os
    import sys

    import psycopg

    from eldercare.platform.auth.scope import Role
    from eldercare.platform.auth.service import create_user
    from eldercare.platform.config import DatabaseSettings

    password = os.environ.get("ELDERCARE_NEW_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    if len(password) < 10:
        print("the password must have at least 10 characters", file=sys.stderr)
        return 2
    url: str = args.database_url or DatabaseSettings().database_url

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            institution_id = None
            if args.institution_code:
                row = await (
                    await conn.execute("SELECT id FROM institutions WHERE code = %s", (args.institution_code.upper(),))
                ).fetchone()
                if row is None:
                    print(f"no institution with code {args.institution_code}", file=sys.stderr)
                    return 2
                institution_id = row[0]
            try:
                user_id = await create_user(
                    conn,
                    username=args.username,
                    password=password,
                    role=Role(args.role),
                    institution_id=institution_id,
                    region_code=args.region,
                    display_name=args.display_name,
                )
            except psycopg.errors.IntegrityError as exc:
                print(f"not created: {exc.diag.message_primary} ({exc.diag.constraint_name})", file=sys.stderr)
                return 1
        print(f"created {args.role} {args.username} (id {user_id})")
        return 0

    return asyncio.run(run())
