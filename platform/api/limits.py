"""A ceiling on the size of every request body, enforced before any route (or its authentication) runs.

Without it a client without a token could make the server spool a 300 MB multipart body to /tmp before it
is answered 401, or make a route read it into memory. :class:`BodyLimit` answers 413 in the API's one error
shape as soon as a body is known to be too large: at once from ``Content-Length``, or, for a chunked body,
when the bytes received pass the limit (the route then never sees the rest).

The limit, :data:`MAX_BODY`: the largest legitimate body is an import, claim or register file of at most
5 MiB (``registry/imports/parse.py`` ``MAX_BYTES``) inside a multipart form (a few hundred bytes of
framing); a photo is at most 4 MiB (``map/photos.py``); a JSON claim of 10,000 lines is about 2 MB. 8 MiB
leaves room for all of them and still bounds what one request can cost. Routes keep their own, smaller
limits and messages.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eldercare.platform.api.errors import ErrorBody, FieldError

MAX_BODY = 8 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; the error handlers make it a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return f"the request body is larger than {limit} bytes ({limit // (1024 * 1024)} MiB)"


def _body(limit: int) -> bytes:
    error = ErrorBody(detail=_detail(limit), errors=[FieldError(field="body", reason=f"at most {limit} bytes")])
    return error.model_dump_json().encode()


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:  # a route that answered while reading: nothing more can be said
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = _body(self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
