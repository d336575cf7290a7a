"""Request dependencies: a pooled connection, and the logged-in principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from eldercare.platform.api.errors import Problem
from eldercare.platform.auth import service as auth_service
from eldercare.platform.auth.scope import Principal
from eldercare.platform.auth.service import AsyncConn

_bearer = HTTPBearer(auto_error=False)


def pool(request: Request) -> AsyncConnectionPool[AsyncConn]:
    value: AsyncConnectionPool[AsyncConn] = request.app.state.pool
    return value


async def connection(request: Request) -> AsyncIterator[AsyncConn]:
    async with pool(request).connection() as conn:
        yield conn


Conn = Annotated[AsyncConn, Depends(connection)]


async def principal(
    conn: Conn, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise Problem(401, "log in first: send Authorization: Bearer <token>")
    found = await auth_service.principal_for(conn, token=credentials.credentials)
    if found is None:
        raise Problem(401, "the session is unknown or has expired")
    return found


CurrentPrincipal = Annotated[Principal, Depends(principal)]
