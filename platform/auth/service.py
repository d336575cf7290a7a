"""Users and sessions: argon2id password hashes, opaque bearer tokens that expire."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection

from eldercare.platform.auth.scope import Principal, Role

AsyncConn = AsyncConnection[tuple[Any, ...]]

_hasher = PasswordHasher()
SESSION_LIFETIME = timedelta(hours=12)
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires_at: datetime
    principal: Principal


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_user(
    conn: AsyncConn,
    *,
    username: str,
    password: str,
    role: Role,
    institution_id: int | None = None,
    region_code: str | None = None,
    display_name: str = "",
    created_by: int | None = None,
) -> int:
    row = await (
        await conn.execute(
            "INSERT INTO users (username, password_hash, role, institution_id, region_code, display_name, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (username, hash_password(password), role.value, institution_id, region_code, display_name, created_by),
        )
    ).fetchone()
    assert row is not None
    user_id: int = row[0]
    return user_id


async def login(conn: AsyncConn, *, username: str, password: str) -> Session | None:
    row = await (
        await conn.execute(
            "SELECT id, password_hash, role::text, institution_id, region_code FROM users"
            " WHERE username = %s AND active",
            (username,),
        )
    ).fetchone()
    stored = row[1] if row is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    token = secrets.token_urlsafe(32)
    expires = await (
        await conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (%s, %s, now() + %s) RETURNING expires_at",
            (_token_hash(token), row[0], SESSION_LIFETIME),
        )
    ).fetchone()
    assert expires is not None
    principal = Principal(row[0], username, Role(row[2]), row[3], row[4])
    return Session(token, expires[0], principal)


async def principal_for(conn: AsyncConn, *, token: str) -> Principal | None:
    row = await (
        await conn.execute(
            "SELECT u.id, u.username, u.role::text, u.institution_id, u.region_code FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s AND s.expires_at > now() AND u.active",
            (_token_hash(token),),
        )
    ).fetchone()
    if row is None:
        return None
    return Principal(row[0], row[1], Role(row[2]), row[3], row[4])


async def logout(conn: AsyncConn, *, token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (_token_hash(token),))
