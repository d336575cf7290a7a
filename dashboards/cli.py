"""``eldercare dashboards build|push``: Grafana dashboards as code.

Standard library only at module level; the dashboard modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards as code", description=__doc__)
    actions = dashboards.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="write each dashboard's JSON (what Grafana's provisioning reads)")
    build.add_argument("--out", type=Path, default=None, help="folder (default: dashboards/generated)")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files are out of date")
    build.set_defaults(handler=_build)
    push = actions.add_parser("push", help="upload the dashboards to a Grafana through its HTTP API")
    push.add_argument("--url", default=os.environ.get("GRAFANA_URL"), help="default: $GRAFANA_URL")
    push.add_argument("--token", default=None, help="a service-account token (default: $GRAFANA_TOKEN)")
    push.add_argument("--user", default=os.environ.get("GRAFANA_USER"), help="basic auth instead of a token")
    push.add_argument(
        "--datasource-url",
        default=None,
        help="also create or update the data source from this libpq URL of a read-only role"
        " (default: $GRAFANA_DATASOURCE_URL, else leave the data source alone)",
    )
    push.add_argument("--sslmode", default="require", help="the data source's sslmode (default: require)")
    push.add_argument("--timeout", type=float, default=10.0)
    push.set_defaults(handler=_push)


def _build(args: argparse.Namespace) -> int:
    from eldercare.dashboards import build

    out = args.out or build.GENERATED
    if args.check:
        stale = [
            uid
            for uid, model in build.build_all().items()
            if not (out / f"{uid}.json").is_file()
            or (out / f"{uid}.json").read_text(encoding="utf-8") != build.text(model)
        ]
        for uid in stale:
            print(f"out of date: {out / uid}.json (run `eldercare dashboards build`)", file=sys.stderr)
        return 1 if stale else 0
    for path in build.write(out):
        print(path)
    return 0


def _push(args: argparse.Namespace) -> int:
    from grafana_client.api import GrafanaApi

    from eldercare.dashboards import build, push

    if not args.url:
        print("dashboards push: give --url or set GRAFANA_URL", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("GRAFANA_TOKEN")
    password = os.environ.get("GRAFANA_PASSWORD")
    credential: str | tuple[str, str] | None
    if args.user:
        if not password:
            print("dashboards push: set GRAFANA_PASSWORD for --user", file=sys.stderr)
            return 2
        credential = (args.user, password)
    else:
        credential = token
    if credential is None:
        print("dashboards push: give --token (or GRAFANA_TOKEN), or --user with GRAFANA_PASSWORD", file=sys.stderr)
        return 2
    datasource_url = args.datasource_url or os.environ.get("GRAFANA_DATASOURCE_URL")
    api = GrafanaApi.from_url(args.url, credential=credential, timeout=args.timeout)
    try:
        datasource = push.datasource_model(datasource_url, sslmode=args.sslmode) if datasource_url else None
        result = push.push(api, dashboards=build.build_all(), datasource=datasource)
    except push.DashboardPushError as exc:
        print(f"dashboards push: {exc}", file=sys.stderr)
        return 1
    if result.folder_created:
        print(f"created folder {push.FOLDER_UID}")
    if result.datasource:
        print(f"data source {result.datasource}")
    for uid in result.dashboards:
        print(f"pushed {uid}")
    return 0
