"""Bulk import from CSV and XLSX: every bad row reported with row, column and reason; a file with any bad
row imports nothing; a good file imports in one transaction; importing it again changes nothing."""

from __future__ import annotations

from datetime import date

import psycopg
from tests.registry.support import World, new_id_number, xlsx

from eldercare.devices import codes


def _count(world: World, query: str, *params: object) -> int:
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return int(row[0])


def _post(world: World, kind: str, name: str, data: bytes, *, provider: bool = False, **params: str) -> object:
    """To home A (a residential home), or to the home-care provider, whose residents live at home."""
    who, home = ("staff_p", world.provider_id) if provider else ("staff_a", world.a.id)
    return world.users[who].post(
        f"/api/v1/institutions/{home}/imports/{kind}", files={"file": (name, data)}, params=params
    )


def test_a_bad_row_stops_the_whole_file_and_every_problem_is_reported(world: World) -> None:
    good = new_id_number("420502", born=date(1941, 2, 3))
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    csv = (
        "name,id_number,capability,fall_risk,wander_risk\n"
        f"陈秀英,{good},self_care,low,否\n"
        f"林桂英,{wrong},self_care,low,否\n"
        f"何淑珍,{new_id_number()},flying,low,maybe\n"
        f",{new_id_number()},,,\n"
        f"重复,{good},,,\n"
    ).encode()
    before = _count(world, "SELECT count(*) FROM residents WHERE institution_id = %s", world.a.id)
    reply = _post(world, "residents", "residents.csv", csv)
    assert reply.status_code == 422  # type: ignore[attr-defined]
    errors = {(e["field"], e["reason"].split(",")[0]) for e in reply.json()["errors"]}  # type: ignore[attr-defined]
    fields = {f for f, _ in errors}
    assert {
        "rows[3].id_number",
        "rows[4].capability",
        "rows[4].wander_risk",
        "rows[5].name",
        "rows[6].id_number",
    } <= fields
    assert ("rows[6].id_number", "the same as row 2") in errors
    assert wrong not in reply.text  # type: ignore[attr-defined]
    assert _count(world, "SELECT count(*) FROM residents WHERE institution_id = %s", world.a.id) == before


def test_residents_import_once_and_again_changes_nothing(world: World) -> None:
    numbers = [new_id_number("420502", born=date(1930 + n, 1, 2)) for n in range(3)]
    rows = "".join(f"老人{n},{number},disabled,high,true,50,110,10,25\n" for n, number in enumerate(numbers))
    csv = (
        "name,id_number,capability,fall_risk,wander_risk,heart_rate_min,heart_rate_max,resp_rate_min,"
        "resp_rate_max\n" + rows
    ).encode("utf-8-sig")
    dry = _post(world, "residents", "r.csv", csv, dry_run="true")
    assert dry.json()["dry_run"] is True and len(dry.json()["created"]) == 3  # type: ignore[attr-defined]
    before = _count(world, "SELECT count(*) FROM residents")
    first = _post(world, "residents", "r.csv", csv).json()  # type: ignore[attr-defined]
    assert len(first["created"]) == 3 and first["unchanged"] == 0
    assert all(codes.validate_person_code(c) == c for c in first["created"])
    assert _count(world, "SELECT count(*) FROM residents") == before + 3
    audit_before = _count(world, "SELECT count(*) FROM audit_log WHERE action IN ('create', 'update')")
    second = _post(world, "residents", "r.csv", csv).json()  # type: ignore[attr-defined]
    assert (second["created"], second["updated"], second["unchanged"]) == ([], [], 3)
    assert _count(world, "SELECT count(*) FROM residents") == before + 3
    assert _count(world, "SELECT count(*) FROM audit_log WHERE action IN ('create', 'update')") == audit_before
    changed = csv.replace(b"disabled,high", b"partly_disabled,high", 1)
    third = _post(world, "residents", "r.csv", changed).json()  # type: ignore[attr-defined]
    assert len(third["updated"]) == 1 and third["unchanged"] == 2


def test_xlsx_beds_and_devices(world: World) -> None:
    beds = xlsx(
        [
            ["building", "floor", "room", "label", "kind"],
            ["3号楼", "1层", "301", "1", "nursing"],
            ["3号楼", "1层", "301", "2", "ordinary"],
            ["3号楼", "2层", "302", "1", "nursing"],
        ]
    )
    first = _post(world, "beds", "beds.xlsx", beds).json()  # type: ignore[attr-defined]
    assert len(first["created"]) == 3 and all(codes.validate_bed_code(c) == c for c in first["created"])
    second = _post(world, "beds", "beds.xlsx", beds).json()  # type: ignore[attr-defined]
    assert second["unchanged"] == 3 and second["created"] == []
    bad = xlsx([["building", "floor", "room", "label", "kind", "colour"], ["3号楼", "1层", "301", "1", "sofa", "red"]])
    reply = _post(world, "beds", "bad.xlsx", bad)
    assert reply.status_code == 422 and reply.json()["errors"] == [  # type: ignore[attr-defined]
        {"field": "rows[1].colour", "reason": "unknown column"}
    ]
    devices = xlsx(
        [
            ["code", "kind", "vendor", "heartbeat_s"],
            ["BT-IMP-1", "button", "厂家", 300],
            ["BT-IMP-2", "button", "", 300],
        ]
    )
    assert len(_post(world, "devices", "d.xlsx", devices).json()["created"]) == 2  # type: ignore[attr-defined]
    assert _post(world, "devices", "d.xlsx", devices).json()["unchanged"] == 2  # type: ignore[attr-defined]
    bare = xlsx([["code", "kind"], ["BT-IMP-1", "button"], ["BT-IMP-2", "button"]])  # no heartbeat: keep theirs
    assert _post(world, "devices", "bare.xlsx", bare).json()["unchanged"] == 2  # type: ignore[attr-defined]
    beating = "SELECT count(*) FROM devices WHERE code = ANY(%s) AND heartbeat_s = 300"
    assert _count(world, beating, ["BT-IMP-1", "BT-IMP-2"]) == 2
    numeric_ids = xlsx([["name", "id_number"], ["数字", 420502194001011234]])
    reply = _post(world, "residents", "n.xlsx", numeric_ids)
    assert reply.status_code == 422 and "as text" in reply.text  # type: ignore[attr-defined]
    broken = _post(world, "devices", "d.xlsx", b"PK\x03\x04 not really a workbook")
    assert broken.status_code == 422  # type: ignore[attr-defined]


def test_a_roster_without_a_column_keeps_what_the_residents_have_and_lives_alone_imports(world: World) -> None:
    """A roster of names and ID numbers alone, imported again over residents of high fall risk, living alone: it
    changes nothing (before, every care field the file had no column for was set back to its default: the night
    bed-exit alarms, which watch high fall risks, stopped watching them). A ``lives_alone`` column (是/否) is read
    (for the home-care provider: a residential home's residents do not live alone, test_lives_alone.py)."""
    numbers = [new_id_number("420502", born=date(1931 + n, 3, 4)) for n in range(2)]
    full = (
        "name,id_number,capability,fall_risk,wander_risk,lives_alone\n"
        + "".join(f"独居{n},{number},partly_disabled,high,否,是\n" for n, number in enumerate(numbers))
    ).encode()
    created = _post(world, "residents", "full.csv", full, provider=True).json()["created"]  # type: ignore[attr-defined]
    assert len(created) == 2
    bare = ("name,id_number\n" + "".join(f"独居{n},{number}\n" for n, number in enumerate(numbers))).encode()
    again = _post(world, "residents", "bare.csv", bare, provider=True).json()  # type: ignore[attr-defined]
    assert (again["created"], again["updated"], again["unchanged"]) == ([], [], 2)
    empty_cells = full.replace(b",partly_disabled,high,", b",,,", 1)  # the first row's capability and risk left empty
    cells = _post(world, "residents", "cells.csv", empty_cells, provider=True)
    assert cells.json()["unchanged"] == 2  # type: ignore[attr-defined]
    kept = "SELECT count(*) FROM residents WHERE institution_id = %s AND capability = 'partly_disabled'"
    kept += " AND fall_risk = 'high' AND lives_alone AND lives_alone_since IS NOT NULL AND birth_date >= '1931-01-01'"
    kept += " AND birth_date < '1933-01-01'"
    assert _count(world, kept, world.provider_id) == 2
    with psycopg.connect(world.db.url, autocommit=True) as conn:  # the visit list is the shared world's: leave it
        conn.execute(
            "UPDATE residents SET lives_alone = false WHERE institution_id = %s AND lives_alone", (world.provider_id,)
        )
