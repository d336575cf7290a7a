"""Photos of a home (its look, rooms, garden): stored in the database and served by the platform itself.

The bytes must be what the declared type says (JPEG, PNG or WebP, checked by their signature), at most
4 MiB. Heads of the home and admins add and remove them (``update_institution``); every change is audited.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from eldercare.platform.api.errors import FieldError, NotFound, Problem
from eldercare.platform.audit import log as audit
from eldercare.platform.auth import scope
from eldercare.platform.auth.scope import Action, Obj, Principal
from eldercare.platform.auth.service import AsyncConn

MAX_BYTES = 4 * 1024 * 1024
MAX_PER_HOME = 30
_SIGNATURES = {
    "image/jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    "image/png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
}


@dataclass(frozen=True, slots=True)
class Photo:
    id: int
    content_type: str
    data: bytes
    sha256: bytes


def check_media(content_type: str) -> str:
    """The media type (without parameters) if it is one a photo may have; 415 otherwise."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media not in _SIGNATURES:
        raise Problem(
            415,
            "a photo is image/jpeg, image/png or image/webp",
            [FieldError(field="header.content-type", reason=media)],
        )
    return media


def _too_large(size: str) -> Problem:
    return Problem(413, f"a photo is at most {MAX_BYTES} bytes, this one has {size}")


async def read_body(chunks: AsyncIterator[bytes], *, content_length: str | None) -> bytes:
    """The request body, reading no more than ``MAX_BYTES + 1`` bytes of it: 413 as soon as it is known to be
    larger (from ``Content-Length`` before reading anything, or while reading a chunked body)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > MAX_BYTES:
        raise _too_large(content_length)
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > MAX_BYTES:
            raise _too_large("more")
    return bytes(data)


def check_image(media: str, data: bytes) -> None:
    """422/413 unless ``data`` is an image of ``media`` (a type :func:`check_media` let through)."""
    if not data:
        raise Problem(422, "the request is not valid", [FieldError(field="body", reason="empty")])
    if len(data) > MAX_BYTES:
        raise Problem(413, f"a photo is at most {MAX_BYTES} bytes, this one has {len(data)}")
    if not _SIGNATURES[media](data):
        raise Problem(
            422, "the request is not valid", [FieldError(field="body", reason=f"the bytes are not a {media} image")]
        )


async def institution_id(conn: AsyncConn, *, code: str) -> int:
    row = await (await conn.execute("SELECT id FROM institutions WHERE code = %s", (code,))).fetchone()
    if row is None:
        raise NotFound("home")
    value: int = row[0]
    return value


async def may_add(conn: AsyncConn, *, principal: Principal, code: str) -> int:
    """The home's id if ``principal`` may change its photos; 404 or 403 otherwise. The router asks this
    before reading a byte of the body, so an upload the caller may not make costs nothing."""
    home = await institution_id(conn, code=code)
    await scope.resolve(conn, principal, Obj.INSTITUTION, home, Action.UPDATE_INSTITUTION)
    return home


async def add(
    conn: AsyncConn,
    *,
    principal: Principal,
    home: int,
    media: str,
    data: bytes,
    caption: str,
    position: int,
) -> int:
    """Store a photo of ``home`` (from :func:`may_add`) whose type ``media`` passed :func:`check_media`; its id."""
    check_image(media, data)
    async with conn.transaction():
        # Serialise adders of one home so the count check holds.
        await conn.execute("SELECT 1 FROM institutions WHERE id = %s FOR UPDATE", (home,))
        row = await (
            await conn.execute("SELECT count(*) FROM institution_photos WHERE institution_id = %s", (home,))
        ).fetchone()
        if row is not None and row[0] >= MAX_PER_HOME:
            raise Problem(409, f"a home has at most {MAX_PER_HOME} photos; remove one first")
        digest = hashlib.sha256(data).digest()
        inserted = await (
            await conn.execute(
                "INSERT INTO institution_photos (institution_id, position, caption, content_type, data, sha256)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (home, position, caption, media, data, digest),
            )
        ).fetchone()
        assert inserted is not None
        photo_id: int = inserted[0]
        await audit.record(
            conn,
            principal=principal,
            action="add_photo",
            object_type="institution",
            object_id=home,
            institution_id=home,
            detail={"photo_id": photo_id, "bytes": len(data), "content_type": media},
        )
    return photo_id


async def remove(conn: AsyncConn, *, principal: Principal, code: str, photo_id: int) -> None:
    home = await institution_id(conn, code=code)
    await scope.resolve(conn, principal, Obj.INSTITUTION, home, Action.UPDATE_INSTITUTION)
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM institution_photos WHERE id = %s AND institution_id = %s", (photo_id, home)
        )
        if cur.rowcount == 0:
            raise NotFound("photo")
        await audit.record(
            conn,
            principal=principal,
            action="remove_photo",
            object_type="institution",
            object_id=home,
            institution_id=home,
            detail={"photo_id": photo_id},
        )


async def get(conn: AsyncConn, *, photo_id: int) -> Photo:
    row = await (
        await conn.execute("SELECT id, content_type, data, sha256 FROM institution_photos WHERE id = %s", (photo_id,))
    ).fetchone()
    if row is None:
        raise NotFound("photo")
    return Photo(id=row[0], content_type=row[1], data=bytes(row[2]), sha256=bytes(row[3]))


async def listing(conn: AsyncConn, *, institution_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, caption, content_type FROM institution_photos WHERE institution_id = %s ORDER BY position, id",
        (institution_id,),
    )
    return [{"id": r[0], "caption": r[1], "content_type": r[2]} for r in await cur.fetchall()]
