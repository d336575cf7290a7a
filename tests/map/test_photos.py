"""Photos of a home: added by its head (or an admin), served publicly by the platform, audited."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from tests.map.conftest import Api
from tests.map.images import png
from tests.map.world import PASSWORD, World


async def _token(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    reply = await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def test_a_head_adds_a_photo_the_public_sees_it_and_removes_it(api: Api, map_world: World) -> None:
    a = map_world.homes["A"]
    image = png(rgb=(40, 90, 160))

    async def work(http: httpx.AsyncClient) -> dict[str, Any]:
        head = await _token(http, map_world.head_of_a)
        added = await http.post(
            f"/api/v1/map/homes/{a.code}/photos",
            params={"caption": "花园", "position": 1},
            content=image,
            headers={**head, "Content-Type": "image/png"},
        )
        assert added.status_code == 201, added.text
        url = added.json()["url"]
        served = await http.get(url)
        detail = (await http.get(f"/api/v1/map/homes/{a.code}")).json()
        listed = (await http.get("/api/v1/map/homes", params={"region": "420502"})).json()
        removed = await http.delete(f"/api/v1/map/homes/{a.code}/photos/{added.json()['id']}", headers=head)
        gone = await http.get(url)
        return {"url": url, "served": served, "detail": detail, "listed": listed, "removed": removed, "gone": gone}

    out = api(work)
    served: httpx.Response = out["served"]
    assert served.status_code == 200 and served.content == image
    assert served.headers["content-type"] == "image/png"
    assert served.headers["cache-control"] == "public, max-age=86400" and served.headers["etag"]
    assert {"url": out["url"], "caption": "花园"} in out["detail"]["properties"]["gallery"]
    home = next(f for f in out["listed"]["features"] if f["id"] == a.code)
    assert out["url"] in home["properties"]["photos"]
    assert out["removed"].status_code == 204 and out["gone"].status_code == 404
    with psycopg.connect(api.db.url) as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE object_type = 'institution' AND object_id = %s ORDER BY seq",
                (a.id,),
            ).fetchall()
        ]
    assert actions[-2:] == ["add_photo", "remove_photo"]


def test_only_heads_of_the_home_and_admins_add_photos_and_only_images(api: Api, map_world: World) -> None:
    a, b = map_world.homes["A"], map_world.homes["B"]

    async def work(http: httpx.AsyncClient) -> dict[str, int]:
        head = await _token(http, map_world.head_of_a)
        staff_b = await _token(http, map_world.staff_of_b)
        family = await _token(http, map_world.family_user)
        png_type = {"Content-Type": "image/png"}
        url = f"/api/v1/map/homes/{a.code}/photos"
        unknown = "/api/v1/map/homes/12420502MA4K00001X/photos"
        return {
            "anonymous": (await http.post(url, content=png(), headers=png_type)).status_code,
            "family": (await http.post(url, content=png(), headers={**family, **png_type})).status_code,
            "staff": (await http.post(url, content=png(), headers={**staff_b, **png_type})).status_code,
            "other_home": (
                await http.post(f"/api/v1/map/homes/{b.code}/photos", content=png(), headers={**head, **png_type})
            ).status_code,
            "gif": (
                await http.post(url, content=b"GIF89a....", headers={**head, "Content-Type": "image/gif"})
            ).status_code,
            "lying": (
                await http.post(url, content=b"<svg/>", headers={**head, "Content-Type": "image/jpeg"})
            ).status_code,
            "empty": (await http.post(url, content=b"", headers={**head, **png_type})).status_code,
            "no_home": (await http.post(unknown, content=png(), headers={**head, **png_type})).status_code,
        }

    got = api(work)
    assert got == {
        "anonymous": 401,
        "family": 403,
        "staff": 403,
        "other_home": 404,
        "gif": 415,
        "lying": 422,
        "empty": 422,
        "no_home": 404,
    }


def test_a_photo_body_is_read_only_when_allowed_and_only_up_to_the_limit(api: Api, map_world: World) -> None:
    """Scope is checked before a byte of the body is read; an allowed body is read to 4 MiB + 1 at most."""
    a = map_world.homes["A"]
    piece = 64 * 1024
    pulled: dict[str, int] = {}

    def body(name: str, size: int) -> Any:
        async def chunks() -> Any:  # no Content-Length: the body is streamed, as with chunked encoding
            for _ in range(size // piece):
                pulled[name] = pulled.get(name, 0) + 1
                yield b"\x89PNG\r\n\x1a\n" + b"\x00" * (piece - 8)

        return chunks()

    async def work(http: httpx.AsyncClient) -> dict[str, int]:
        head = await _token(http, map_world.head_of_a)
        family = await _token(http, map_world.family_user)
        url = f"/api/v1/map/homes/{a.code}/photos"
        png_type = {"Content-Type": "image/png"}
        return {
            "family": (
                await http.post(url, content=body("family", 16 << 20), headers={**family, **png_type})
            ).status_code,
            "head_5mib": (
                await http.post(url, content=body("head_5mib", 5 << 20), headers={**head, **png_type})
            ).status_code,
            "head_declared": (
                await http.post(url, content=b"\x89PNG\r\n\x1a\n" * (600 * 1024), headers={**head, **png_type})
            ).status_code,
        }

    assert api(work) == {"family": 403, "head_5mib": 413, "head_declared": 413}
    assert pulled.get("family", 0) <= 1  # before the fix: all 16 MiB were read into memory, then 403
    assert pulled["head_5mib"] <= (4 << 20) // piece + 1  # 4 MiB + 1 byte, then 413
