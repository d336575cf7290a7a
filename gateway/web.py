"""The gateway's two small web servers (Starlette on uvicorn, in the gateway's own event loop).

- The HTTP source, for devices that POST: ``POST /v1/devices/{vendor}`` with the vendor's payload. The answer
  comes after the messages are on disk: 200 ``{"stored": n, "repeats": r, "problems": [...]}``; 422 when
  nothing in the payload could be used (each problem names the device and the reason); 404 for a vendor
  this source does not take; 413 for a body over the limit; 503 (``Retry-After``) when the store cannot
  take it, so the device keeps it and sends again.
- The local alarm page for the nurse station: ``GET /`` (the page), ``GET /events`` (server-sent events:
  ``alarm`` and ``uplink``), ``GET /api/alarms``, ``GET /api/status``.

FastAPI is not used here: Starlette alone costs about 12 MB less memory, and the gateway has 80 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from eldercare.gateway.config import HttpSource
from eldercare.gateway.errors import GatewayError
from eldercare.gateway.local import AlarmHub
from eldercare.gateway.pipeline import Delivery, Pipeline, Problem
from eldercare.gateway.store import StoreFullError

KEEPALIVE_S: Final = 15.0


class Server(uvicorn.Server):
    """uvicorn on a socket bound beforehand (a port in use is an ``OSError`` at start, not an exit), and
    without its signal handlers: the gateway owns SIGTERM/SIGINT and stops its servers itself."""

    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        super().__init__(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError:
            self.socket.close()
            raise
        self.socket.set_inheritable(True)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def run_bound(self) -> None:
        await self.serve(sockets=[self.socket])


def _problems(problems: list[Problem]) -> list[dict[str, str | None]]:
    return [{"device": p.device, "reason": getattr(p, "reason", None) or str(p)} for p in problems]


class _TooLargeError(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def http_source_app(config: HttpSource, pipeline: Pipeline) -> Starlette:
    vendors = set(config.vendors)

    async def post(request: Request) -> Response:
        vendor = request.path_params["vendor"]
        if vendor not in vendors:
            return JSONResponse({"error": "unknown vendor", "vendor": vendor, "known": sorted(vendors)}, 404)
        try:
            body = await _body(request, config.max_body_bytes)
        except _TooLargeError:
            return JSONResponse({"error": "body too large", "limit_bytes": config.max_body_bytes}, 413)
        future, problems = pipeline.submit(Delivery(config.name, vendor, body))
        try:
            stored = await future
        except StoreFullError:
            return JSONResponse({"error": "store full, send again later"}, 503, headers={"Retry-After": "5"})
        except GatewayError as exc:
            return JSONResponse({"error": f"not stored: {exc}"}, 503, headers={"Retry-After": "5"})
        if problems and not stored.accepted and not stored.repeats:
            return JSONResponse({"error": "nothing in the payload could be used", "problems": _problems(problems)}, 422)
        return JSONResponse(
            {"stored": len(stored.accepted), "repeats": stored.repeats, "problems": _problems(problems)}
        )

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/v1/devices/{vendor}", post, methods=["POST"]), Route("/healthz", health)])


def local_app(hub: AlarmHub, status: Callable[[], dict[str, Any]]) -> Starlette:
    page = resources.files("eldercare.gateway").joinpath("local_page.html").read_text(encoding="utf-8")

    async def index(_: Request) -> Response:
        return HTMLResponse(page)

    async def alarms(_: Request) -> Response:
        return JSONResponse(list(hub.recent))

    async def get_status(_: Request) -> Response:
        return JSONResponse(status())

    async def events(_: Request) -> Response:
        queue = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield _sse("uplink", {"up": hub.uplink_up})
                for document in reversed(hub.recent):
                    yield _sse("alarm", document)
                while True:
                    try:
                        async with asyncio.timeout(KEEPALIVE_S):
                            event, document = await queue.get()
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if event == "close":
                        return
                    yield _sse(event, document)
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/events", events),
            Route("/api/alarms", alarms),
            Route("/api/status", get_status),
        ]
    )


def _sse(event: str, document: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(document, ensure_ascii=False)}\n\n"
