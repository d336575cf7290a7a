"""One JSON shape for every error the API returns, translated from exceptions in one place.

{"detail": "what went wrong", "errors": [{"field": "body.code", "reason": "check character ..."}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[FieldError] = []


# Not frozen: contextlib assigns ``__traceback__`` when an exception leaves an (async) context manager such
# as the pooled-connection dependency, which a frozen dataclass refuses (FrozenInstanceError, or TypeError
# for a subclass with slots).
@dataclass(eq=False)
class Problem(Exception):  # noqa: N818 - an RFC 7807-style problem, not an "error" of the code
    """Raised by services and routers; becomes an HTTP error with the one JSON shape."""

    status: int
    detail: str
    errors: Sequence[FieldError] = ()


INVALID = "the request is not valid"


def invalid(field: str, reason: str) -> Problem:
    """A 422 about one field of the request, in the shape FastAPI's own validation errors take."""
    return Problem(422, INVALID, [FieldError(field=field, reason=reason)])


class NotFound(Problem):
    def __init__(self, what: str) -> None:
        super().__init__(404, f"{what} not found")


def _response(status: int, detail: str, errors: Sequence[FieldError] = ()) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=list(errors))
    return JSONResponse(status_code=status, content=body.model_dump())


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return _response(exc.status, exc.detail, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(field=".".join(str(part) for part in err.get("loc", ())), reason=str(err.get("msg", "")))
            for err in exc.errors()
        ]
        return _response(422, INVALID, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _response(exc.status_code, str(exc.detail))


RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "the body could not be parsed (not UTF-8 JSON, broken multipart)"},
    401: {"model": ErrorBody, "description": "not logged in, or the session expired"},
    403: {"model": ErrorBody, "description": "outside the user's scope"},
    404: {"model": ErrorBody, "description": "no such object in the user's scope"},
    422: {"model": ErrorBody, "description": "invalid request; each field with its reason"},
}
