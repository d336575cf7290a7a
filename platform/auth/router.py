"""``/api/v1/auth``: log in (throttled) and out, who am I."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES, ErrorBody, Problem
from eldercare.platform.auth import service, throttle

THROTTLED: dict[int | str, dict[str, object]] = {
    429: {
        "model": ErrorBody,
        "description": "too many attempts; wait the seconds in Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    }
}

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=RESPONSES)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    password: str = Field(min_length=1, max_length=256, pattern=r"^[^\x00]+$")


class Me(BaseModel):
    user_id: int
    username: str
    role: str
    institution_id: int | None
    region_code: str | None


class LoginResponse(BaseModel):
    token: str
    expires_at: datetime
    user: Me


def throttled(exc: throttle.TooMany) -> JSONResponse:
    """A 429 in the API's one error shape, with Retry-After."""
    body = ErrorBody(detail=exc.detail)
    return JSONResponse(status_code=429, content=body.model_dump(), headers={"Retry-After": str(exc.retry_after)})


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post("/login", response_model=LoginResponse, responses=THROTTLED)
async def login(body: LoginRequest, conn: Conn, request: Request) -> LoginResponse | JSONResponse:
    """Exchange a username and password for a bearer token that expires; repeated failures are throttled."""
    client = client_of(request)
    try:
        await throttle.check_login(conn, username=body.username, client=client)
    except throttle.TooMany as exc:
        return throttled(exc)
    session = await service.login(conn, username=body.username, password=body.password)
    if session is None:
        await throttle.login_failed(conn, username=body.username, client=client)
        raise Problem(401, "wrong username or password")
    await throttle.login_succeeded(conn, username=body.username, client=client)
    p = session.principal
    return LoginResponse(
        token=session.token,
        expires_at=session.expires_at,
        user=Me(
            user_id=p.user_id,
            username=p.username,
            role=p.role.value,
            institution_id=p.institution_id,
            region_code=p.region_code,
        ),
    )


@router.get("/me")
async def me(principal: CurrentPrincipal) -> Me:
    p = principal
    return Me(
        user_id=p.user_id,
        username=p.username,
        role=p.role.value,
        institution_id=p.institution_id,
        region_code=p.region_code,
    )


@router.post("/logout", status_code=204)
async def logout(
    conn: Conn,
    _principal: CurrentPrincipal,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))],
) -> None:
    if credentials is not None:
        await service.logout(conn, token=credentials.credentials)
