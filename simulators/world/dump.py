"""A canonical dump of a world as the platform's API returns it, read as the admin.

Values the platform draws itself (database ids, bed and person codes, creation times) are replaced by the
plan's own keys, so two registrations of the same plan on fresh databases dump to the same bytes; values
the simulator chose (names, ID numbers as masked, places, kinds, admission and binding times, rosters,
contacts as masked) are kept. Used by the tests (same seed, same world) and to read a world back.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from eldercare.simulators.world.api import Api
from eldercare.simulators.world.model import World

_DROP = {
    "id",
    "created_at",
    "retired_at",
    "consent_at",
    "institution_id",
    "resident_id",
    "device_id",
    "user_id",
    "bed_id",
    "room_id",
    "parent_id",
}


def _clean(row: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(row.items()):
        if key in _DROP:
            continue
        out[key] = rename.get(value, value) if isinstance(value, str) else value
    return out


async def dump(world: World, *, base: str, admin_username: str, admin_password: str) -> dict[str, Any]:
    """Everything the API says about the world's institutions, in the plan's order and terms."""
    rename: dict[str, str] = {}
    for issued in world.issued.institutions.values():
        for bed_key, (_, code) in issued.beds.items():
            rename[code] = f"bed:{bed_key}"
        for person_key, (_, code) in issued.persons.items():
            rename[code] = f"person:{person_key}"
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=120) as http:
        api = await Api.login(http, base, admin_username, admin_password)
        users = {u["username"]: u for u in await api.pages("/api/v1/users")}
        for inst in world.plan.institutions:
            issued = world.issued.institutions[inst.key]
            iid = issued.id
            doc: dict[str, Any] = {"institution": _clean(await api.call("GET", f"/api/v1/institutions/{iid}"), rename)}
            places = []
            for building in await api.pages(f"/api/v1/institutions/{iid}/buildings"):
                for floor in await api.pages(f"/api/v1/buildings/{building['id']}/floors"):
                    rooms = [r["name"] for r in await api.pages(f"/api/v1/floors/{floor['id']}/rooms")]
                    places.append([building["name"], floor["name"], floor["level"], sorted(rooms)])
            doc["places"] = sorted(places)
            doc["beds"] = sorted(
                (_clean(b, rename) for b in await api.pages(f"/api/v1/institutions/{iid}/beds")),
                key=lambda b: b["code"],
            )
            residents = []
            for r in await api.pages(f"/api/v1/institutions/{iid}/residents"):
                contacts = await api.call("GET", f"/api/v1/residents/{r['id']}/contacts")
                stays = await api.call("GET", f"/api/v1/residents/{r['id']}/beds")
                visits = await api.call("GET", f"/api/v1/residents/{r['id']}/visits", params={"limit": 500})
                residents.append(
                    {
                        **_clean(r, rename),
                        "contacts": sorted((_clean(c, rename) for c in contacts), key=lambda c: c["priority"]),
                        "beds": [_clean(s, rename) for s in stays],
                        "visits": [_clean(v, rename) for v in visits],
                    }
                )
            doc["residents"] = sorted(residents, key=lambda r: r["person_code"])
            devices = []
            for d in await api.pages(f"/api/v1/institutions/{iid}/devices"):
                bindings = await api.call("GET", f"/api/v1/devices/{d['id']}/bindings")
                devices.append({**_clean(d, rename), "bindings": [_clean(b, rename) for b in bindings]})
            doc["devices"] = sorted(devices, key=lambda d: d["code"])
            doc["gateways"] = [
                _clean({k: v for k, v in g.items() if k not in ("issued_at", "last_seen_at", "last_status")}, rename)
                for g in await api.pages(f"/api/v1/institutions/{iid}/gateways")
            ]
            doc["rosters"] = sorted(
                (
                    _clean(s, rename)
                    for s in await api.call("GET", "/api/v1/rosters", params={"institution": inst.code})
                ),
                key=lambda s: (s["username"], s["starts"]),
            )
            staff = sorted(name for name, u in users.items() if u["institution_id"] == iid)
            doc["users"] = [_clean(users[name], rename) for name in staff]
            families = []
            for person in inst.persons:
                if person.family_user is None:
                    continue
                user = users[person.family_user.username]
                links = await api.call("GET", f"/api/v1/users/{user['id']}/family-links")
                families.append({**_clean(user, rename), "links": [_clean(link, rename) for link in links]})
            doc["families"] = families
            out[inst.key] = doc
    return out


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
