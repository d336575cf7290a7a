"""``eldercare serve``: the platform's API and its alarm engine."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the platform API and alarm engine (runs until stopped)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: ELDERCARE_API_PORT or 8080")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import os
    import sys

    import uvicorn
    from pydantic import ValidationError

    from eldercare.platform.api.app import create_app
    from eldercare.platform.config import DatabaseSettings, SecuritySettings
    from eldercare.platform.notify.settings import NotifySettings

    port = args.port or int(os.environ.get("ELDERCARE_API_PORT", "8080"))
    try:  # every setting is read before the server starts: a missing one is named, and nothing runs half-set
        database, security, notify = DatabaseSettings(), SecuritySettings(), NotifySettings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            print(f"eldercare serve: {exc.title}{': ' + where if where else ''}: {error['msg']}", file=sys.stderr)
        return 2
    app = create_app(
        database_url=database.database_url,
        data_key=security.key_bytes(),
        previous_key=security.previous_key_bytes(),
        notify=notify,
        ticker_period_s=float(os.environ.get("ELDERCARE_TICKER_PERIOD_S", "5")),
    )
    # Open alarm streams would hold a graceful shutdown forever; they reconnect to the next process.
    uvicorn.run(app, host=args.host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=3)
    return 0
