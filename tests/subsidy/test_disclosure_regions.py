"""A regulator supervises their own region only: a verdict resting on a home of another region (a death it
recorded, its claim for the same person) tells them that another region's home is involved and the city it lies in,
not which home. A regulator whose region covers both homes, and an admin, read the home as stored.

Home A lies in Yichang (420502), home B in Wuhan (420102). B recorded P's death before the month; A claims for P
anyway, and A and B both claim for R. One run verifies the whole province, as a provincial bureau would run it.
"""

from __future__ import annotations

import io
import random
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
import pytest
from openpyxl import load_workbook
from tests.registry.support import Client, Database, new_uscc
from tests.subsidy.support import set_amounts, user
from tests.subsidy.world import TZ

from eldercare.devices import codes
from eldercare.platform.crypto import Vault

MONTH = "2026-10"
DIED_IN_B = datetime(2026, 9, 12, 15, 0, tzinfo=TZ)
_rng = random.Random(43)


@dataclass
class Home:
    id: int
    code: str
    name: str
    region: str


@dataclass
class World:
    a: Home
    b: Home
    p_at_a: str  # P's person code at home A (B recorded P's death)
    r_at_a: str  # R's person code at home A (B claims R too)
    r_at_b: str
    readers: dict[str, Client]  # reg_a (4205), reg_b (4201), reg_42 (the province), admin


def _home(conn: psycopg.Connection[Any], name: str, region: str) -> Home:
    code = new_uscc(region)
    row = conn.execute(
        "INSERT INTO institutions (code, name, kind, region_code) VALUES (%s, %s, 'residential_home', %s) RETURNING id",
        (code, name, region),
    ).fetchone()
    assert row is not None
    room = conn.execute(
        "WITH b AS (INSERT INTO buildings (institution_id, name) VALUES (%s, '1号楼') RETURNING id),"
        " f AS (INSERT INTO floors (building_id, name) SELECT id, '1层' FROM b RETURNING id)"
        " INSERT INTO rooms (floor_id, name) SELECT id, '101' FROM f RETURNING id",
        (row[0],),
    ).fetchone()
    assert room is not None
    home = Home(int(row[0]), code, name, region)
    _rooms[home.id] = int(room[0])
    return home


_rooms: dict[int, int] = {}


def _resident(
    conn: psycopg.Connection[Any], vault: Vault, home: Home, number: str, *, until: datetime | None = None
) -> tuple[str, int]:
    """A resident of ``home`` in a bed of their own from May (until ``until``): (person code, resident id)."""
    person, bed_code = codes.new_person_code(_rng), codes.new_bed_code(_rng)
    resident = conn.execute(
        "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
        " id_number_masked, birth_date, sex, status, created_at) VALUES (%s, %s, %s, %s, %s, %s, '1940-02-03',"
        " 'female', 'admitted', '2026-04-01') RETURNING id",
        (
            home.id,
            person,
            vault.encrypt("某某", column="residents.name"),
            vault.encrypt(number, column="residents.id_number"),
            vault.lookup_hash(number),
            number[:6] + "********" + number[14:],
        ),
    ).fetchone()
    bed = conn.execute(
        "INSERT INTO beds (institution_id, room_id, code, label, kind) VALUES (%s, %s, %s, %s, 'nursing') RETURNING id",
        (home.id, _rooms[home.id], bed_code, bed_code),
    ).fetchone()
    assert resident is not None and bed is not None
    conn.execute(
        "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange('2026-05-01', %s))",
        (bed[0], resident[0], until),
    )
    return person, int(resident[0])


@pytest.fixture(scope="module")
def world(api: str, sub_db: Database, vault: Vault) -> World:
    tag = secrets.token_hex(3)
    p, r = (
        codes.generate_id_number(_rng, region6="420502", birth_date=date(1940, 2, 3), sex="female") for _ in range(2)
    )
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        a, b = _home(conn, f"宜昌松鹤园{tag}", "420502"), _home(conn, f"武汉夕阳红{tag}", "420102")
        _, p_in_b = _resident(conn, vault, b, p, until=DIED_IN_B)
        conn.execute(
            "INSERT INTO deaths (resident_id, died_at, source) VALUES (%s, %s, 'institution')", (p_in_b, DIED_IN_B)
        )
        p_at_a, _ = _resident(conn, vault, a, p)
        r_at_a, _ = _resident(conn, vault, a, r)
        r_at_b, _ = _resident(conn, vault, b, r)
    readers = {
        "reg_a": user(api, sub_db.url, "regulator", region="4205"),
        "reg_b": user(api, sub_db.url, "regulator", region="4201"),
        "reg_42": user(api, sub_db.url, "regulator", region="42"),
        "admin": user(api, sub_db.url, "admin"),
    }
    set_amounts(readers["admin"])
    allowance = {"programme": "old_age_allowance", "amount": "100"}
    for home, people in ((a, (p_at_a, r_at_a)), (b, (r_at_b,))):
        lines = [{"person_code": person, **allowance} for person in people]
        claim = {"month": MONTH, "lines": lines}
        readers["admin"].ok("POST", f"/api/v1/institutions/{home.id}/subsidy/claims", 201, json=claim)
    readers["reg_42"].ok("POST", "/api/v1/subsidy/runs", 201, params={"month": MONTH})
    return World(a, b, p_at_a, r_at_a, r_at_b, readers)


def _lines(client: Client, home: Home) -> dict[str, dict[str, Any]]:
    view = client.ok("GET", f"/api/v1/institutions/{home.id}/subsidy/claims", params={"month": MONTH})
    return {line["person_code"]: line for line in view["lines"]}


def _reason(line: dict[str, Any], code: str) -> dict[str, Any]:
    found = [r for r in line["reasons"] if r["code"] == code]
    assert found, (code, line["reasons"])
    return dict(found[0])


def _said(client: Client, home: Home) -> dict[str, str]:
    """The claim's JSON, its CSV in both languages and its XLSX."""
    path = f"/api/v1/institutions/{home.id}/subsidy"
    out = {"json": client.get(f"{path}/claims", params={"month": MONTH}).text}
    for lang in ("en", "zh-CN"):
        reply = client.get(f"{path}/export", params={"month": MONTH, "lang": lang})
        assert reply.status_code == 200, reply.text
        out[f"csv {lang}"] = reply.content.decode("utf-8-sig")
    reply = client.get(f"{path}/export", params={"month": MONTH, "format": "xlsx"})
    assert reply.status_code == 200, reply.text
    sheet = load_workbook(io.BytesIO(reply.content)).worksheets[0]
    out["xlsx"] = "\n".join(
        "\t".join("" if v is None else str(v) for v in row) for row in sheet.iter_rows(values_only=True)
    )
    return out


def test_a_regulator_reads_a_home_of_another_region_as_another_home_in_its_city(world: World) -> None:
    reg_a = world.readers["reg_a"]
    for what, text in _said(reg_a, world.a).items():
        assert world.b.code not in text and world.b.name not in text, what
    lines = _lines(reg_a, world.a)
    p, r = lines[world.p_at_a], lines[world.r_at_a]

    # the death B recorded: the regulator still reads when, and that a home of 4201 recorded it, not which one
    assert p["verdict"] == "rejected"
    assert _reason(p, "died_before_month")["text"] == "died on 2026-09-12, before the month"
    (death,) = [rec for rec in p["evidence"]["records"] if rec["kind"] == "death"]
    assert death == {
        "kind": "death", "register": "registry", "source": "institution", "died_on": "2026-09-12",
        "elsewhere": True, "home_outside_region": True, "home_city": "4201",
    }  # fmt: skip

    # B's claim for R: another home, outside the region, in 4201
    assert r["verdict"] == "manual_check"
    duplicate = _reason(r, "duplicate_unresolved")
    assert duplicate["args"]["homes"] == [] and duplicate["args"]["outside_region_homes"] == ["4201"]
    assert "a home outside your region (in 4201)" in duplicate["text"], duplicate
    assert "辖区外的一家机构（4201）" in duplicate["text_zh"], duplicate
    assert r["evidence"]["duplicate"]["other_homes"] == []
    assert r["evidence"]["duplicate"]["outside_region_homes"] == ["4201"]

    # and the same the other way round: B's regulator does not learn which home of Yichang claims R
    reg_b = world.readers["reg_b"]
    for what, text in _said(reg_b, world.b).items():
        assert world.a.code not in text and world.a.name not in text, what
    assert _reason(_lines(reg_b, world.b)[world.r_at_b], "duplicate_unresolved")["args"]["outside_region_homes"] == [
        "4205"
    ]


def test_a_regulator_whose_region_covers_both_homes_and_an_admin_read_the_other_home(world: World) -> None:
    for key in ("reg_42", "admin"):
        reader = world.readers[key]
        lines = _lines(reader, world.a)
        p, r = lines[world.p_at_a], lines[world.r_at_a]
        (death,) = [rec for rec in p["evidence"]["records"] if rec["kind"] == "death"]
        assert (death["home_code"], death["home_name"]) == (world.b.code, world.b.name), key
        assert "home_outside_region" not in death
        duplicate = _reason(r, "duplicate_unresolved")
        assert duplicate["args"]["homes"] == [world.b.code] and "outside_region_homes" not in duplicate["args"], key
        assert world.b.code in duplicate["text"] and "outside your region" not in duplicate["text"]
        assert r["evidence"]["duplicate"]["other_homes"] == [world.b.code]
        said = _said(reader, world.a)
        assert world.b.code in said["json"] and world.b.code in said["csv en"], key


def test_the_home_itself_still_reads_neither(world: World, sub_db: Database, api: str) -> None:
    head = user(api, sub_db.url, "head", institution_id=world.a.id)
    for what, text in _said(head, world.a).items():
        assert world.b.code not in text and world.b.name not in text, what
