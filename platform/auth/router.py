"""``/api/v1/auth``: log in and out, who am I."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from eldercare.platform.api.deps import Conn, CurrentPrincipal
from eldercare.platform.api.errors import RESPONSES, Problem
from eldercare.platform.auth import service

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=RESPONSES)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


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


@router.post("/login")
async def login(body: LoginRequest, conn: Conn) -> LoginResponse:
    session = await service.login(conn, username=body.username, password=body.password)
    if session is None:
        raise Problem(401, "wrong username or password")
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
