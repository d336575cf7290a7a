"""Personal data are not readable in a dump of the database taken without the key."""

from __future__ import annotations

import subprocess

from tests.registry.support import World

PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def test_names_id_numbers_and_phones_do_not_appear_in_a_dump(world: World) -> None:
    resident = world.a.residents[0]["id"]
    world.users["staff_a"].ok(
        "POST",
        f"/api/v1/residents/{resident}/contacts",
        201,
        json={"kind": "family", "name": "欧阳淑珍", "phone": "13511112222", "relation": "女儿", "consent": True},
    )
    dump = subprocess.run(
        [PG_DUMP, "--data-only", "--no-owner", world.db.admin_url], capture_output=True, check=True, timeout=120
    ).stdout
    assert len(dump) > 10_000 and world.a.code.encode() in dump  # the dump has the registry in it
    for rid, name in world.names.items():
        assert name.encode() not in dump, f"resident {rid}'s name is readable in the dump"
        number = world.id_numbers[rid]
        assert number.encode() not in dump, f"resident {rid}'s ID number is readable in the dump"
    for secret in ("欧阳淑珍", "13511112222"):
        assert secret.encode() not in dump
