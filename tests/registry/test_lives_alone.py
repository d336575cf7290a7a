"""Only an elder who lives in their own home can live alone: a resident of a residential home (who lives in it) is
refused the ``lives_alone`` flag by the API (422 on ``body.lives_alone``), by the residents' file import (a problem
of that row and column; nothing of the file is imported) and, last, by the database (migration 0032), whose refusal
the API translates to the same 422. Residents of community centres and home-care providers may be flagged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg
from tests.registry.support import World, new_id_number

from eldercare.platform.registry.db import translate

FIELD = "body.lives_alone"


def _count(world: World, query: str, *params: object) -> int:
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return int(row[0])


def _refusal(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 422, reply.text
    body: dict[str, Any] = reply.json()
    assert [e["field"] for e in body["errors"]] == [FIELD], body
    assert "residential home" in body["errors"][0]["reason"], body
    return body


@pytest.fixture
def at_home(world: World) -> Iterator[int]:
    """A resident of the home-care provider, living alone (allowed: they live at home); off the list afterwards."""
    staff = world.users["staff_p"]
    created = staff.ok(
        "POST",
        f"/api/v1/institutions/{world.provider_id}/residents",
        201,
        json={"name": "独居甲", "id_number": new_id_number("420502", born=date(1942, 6, 7)), "lives_alone": True},
    )
    assert created["lives_alone"] is True and created["lives_alone_since"] is not None
    yield created["id"]
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        conn.execute("UPDATE residents SET lives_alone = false WHERE id = %s", (created["id"],))


def test_the_api_refuses_lives_alone_in_a_residential_home(world: World, at_home: int) -> None:
    staff = world.users["staff_a"]
    residents = "SELECT count(*) FROM residents WHERE institution_id = %s"
    before = _count(world, residents, world.a.id)
    new = {"name": "住院者", "id_number": new_id_number("420502", born=date(1939, 1, 2)), "lives_alone": True}
    _refusal(staff.post(f"/api/v1/institutions/{world.a.id}/residents", json=new))
    assert _count(world, residents, world.a.id) == before  # nothing registered
    resident = world.a.residents[1]["id"]
    was = staff.ok("GET", f"/api/v1/residents/{resident}")
    _refusal(staff.patch(f"/api/v1/residents/{resident}", json={"lives_alone": True, "fall_risk": "low"}))
    assert staff.ok("GET", f"/api/v1/residents/{resident}") == was  # nothing changed, not even the fall risk
    # not flagged, or cleared: as before
    assert staff.ok("PATCH", f"/api/v1/residents/{resident}", json={"lives_alone": False})["lives_alone"] is False
    assert staff.ok("PATCH", f"/api/v1/residents/{resident}", json={"fall_risk": "high"})["fall_risk"] == "high"
    # a home-care provider's resident lives at home: flagged and cleared freely
    provider = world.users["staff_p"]
    assert provider.ok("PATCH", f"/api/v1/residents/{at_home}", json={"lives_alone": False})["lives_alone"] is False
    assert provider.ok("PATCH", f"/api/v1/residents/{at_home}", json={"lives_alone": True})["lives_alone"] is True


def test_the_database_refuses_it_last_and_the_api_answers_the_same(world: World, at_home: int) -> None:
    """What the API refuses before writing, the database refuses too (a write that got past the API, or SQL by hand):
    flagging a residential home's resident, moving a flagged resident into one, making their home one. The error
    translates to the very 422 the API answers."""
    resident = world.a.residents[1]["id"]
    answered = _refusal(world.users["staff_a"].patch(f"/api/v1/residents/{resident}", json={"lives_alone": True}))
    writes: list[tuple[str, tuple[object, ...]]] = [
        ("UPDATE residents SET lives_alone = true WHERE id = %s", (resident,)),
        ("UPDATE residents SET institution_id = %s WHERE id = %s", (world.a.id, at_home)),
        ("UPDATE institutions SET kind = 'residential_home' WHERE id = %s", (world.provider_id,)),
        (
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, lives_alone) SELECT institution_id, 'P000000000X', name_enc,"
            " id_number_enc, '\\x00'::bytea, id_number_masked, birth_date, sex, true FROM residents WHERE id = %s",
            (resident,),
        ),
    ]
    with psycopg.connect(world.db.url) as conn:
        for query, params in writes:
            with pytest.raises(pg.CheckViolation) as refused, conn.transaction():
                conn.execute(query.encode(), params)
            assert refused.value.diag.constraint_name == "residents_lives_alone_at_home", query
            problem = translate(refused.value)
            shown = {"detail": problem.detail, "errors": [e.model_dump() for e in problem.errors]}
            assert (problem.status, shown) == (422, answered), query
    assert _count(world, "SELECT count(*) FROM residents WHERE id = %s AND lives_alone", resident) == 0
    assert _count(world, "SELECT count(*) FROM residents WHERE id = %s AND lives_alone", at_home) == 1
    assert _count(world, "SELECT count(*) FROM institutions WHERE id = %s AND kind = 'home_care_provider'",
                  world.provider_id) == 1  # fmt: skip


def test_the_import_refuses_it_row_by_row_and_imports_nothing(world: World) -> None:
    """A residents' file for a residential home with 是 in lives_alone: each such row is a problem of its own
    (``rows[N].lives_alone``), reported with the file's other problems, and nothing of the file is imported (the
    import's rule for any bad row); 否 and an empty cell are fine. The same rows for a home-care provider import."""
    registered = world.id_numbers[world.a.residents[0]["id"]]
    new = [new_id_number("420502", born=date(1936 + n, 7, 8)) for n in range(3)]
    csv = (
        "name,id_number,capability,lives_alone\n"
        f"新甲,{new[0]},self_care,否\n"
        f"新乙,{new[1]},self_care,是\n"
        f"新丙,{new[2]},flying,\n"
        f"{world.names[world.a.residents[0]['id']]},{registered},self_care,Y\n"  # one registered already: an update
    ).encode()
    residents = "SELECT count(*) FROM residents WHERE institution_id = %s"
    before = _count(world, residents, world.a.id)
    reply = world.users["staff_a"].post(
        f"/api/v1/institutions/{world.a.id}/imports/residents", files={"file": ("r.csv", csv)}
    )
    assert reply.status_code == 422, reply.text
    errors = {e["field"]: e["reason"] for e in reply.json()["errors"]}
    assert set(errors) == {"rows[3].lives_alone", "rows[4].capability", "rows[5].lives_alone"}, errors
    assert "residential home" in errors["rows[3].lives_alone"]
    assert _count(world, residents, world.a.id) == before
    assert _count(world, "SELECT count(*) FROM residents WHERE lives_alone AND institution_id = %s", world.a.id) == 0
    fixed = csv.replace(b",flying,", b",self_care,").replace(b",\xe6\x98\xaf\n", b",\xe5\x90\xa6\n")  # 是 -> 否
    fixed = fixed.replace(b",Y\n", b",n\n")
    done = world.users["staff_a"].post(
        f"/api/v1/institutions/{world.a.id}/imports/residents",
        files={"file": ("r.csv", fixed)},
        params={"dry_run": "1"},
    )
    assert done.status_code == 200 and len(done.json()["created"]) == 3, done.text
    elsewhere = world.users["staff_p"].post(
        f"/api/v1/institutions/{world.provider_id}/imports/residents",
        files={"file": ("r.csv", csv.replace(b",flying,", b",self_care,"))},
        params={"dry_run": "1"},
    )
    assert elsewhere.status_code == 200 and len(elsewhere.json()["created"]) == 4, elsewhere.text
