"""A verdict resting on another home's records tells the claiming home the verdict, not the records.

Home B's head registers people's ID numbers and claims for them; home A recorded one's death before the month
and another's in it, and claims a third too; the civil-affairs death register holds a fourth; B recorded the
death of a fifth itself. B's head reads the verdicts (refused, sent to a person, duplicate) through every
endpoint and export that carries the reasons and evidence, and none names home A or says when a death
recorded elsewhere happened or who recorded it; what B recorded itself is said in full. The region's regulator
reads all of it.
"""

from __future__ import annotations

import csv
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
from eldercare.platform.auth.scope import Principal, Role
from eldercare.platform.crypto import Vault
from eldercare.platform.subsidy import disclosure
from eldercare.platform.subsidy.models import ClaimView, LineVerdict, Reason, Totals
from eldercare.platform.subsidy.reports import empty_totals

MONTH = "2026-10"
_rng = random.Random(41)

DIED_IN_A = datetime(2026, 9, 12, 15, 0, tzinfo=TZ)  # P, recorded by home A: before the month
DIED_IN_A_MID = datetime(2026, 10, 12, 10, 0, tzinfo=TZ)  # Q, recorded by home A: in the month
DIED_IN_REGISTER = date(2026, 9, 5)  # T, in the civil-affairs death register only
DIED_IN_B = datetime(2026, 9, 20, 8, 0, tzinfo=TZ)  # S, recorded by home B itself
FOREIGN_DATES = ("2026-09-12", "2026-10-12", "2026-09-05")


@dataclass
class Home:
    id: int
    code: str
    name: str


@dataclass
class World:
    a: Home
    b: Home
    people: dict[str, str]  # P, Q, R, S, T -> person code at home B
    r_at_a: str  # R's person code at home A
    head_a: Client
    head_b: Client
    reg: Client
    admin: Client


def _principal(role: str) -> Principal:
    return Principal(user_id=1, username=role, role=Role(role), institution_id=1, region_code="4205")


def _home(conn: psycopg.Connection[Any], name: str) -> Home:
    code = new_uscc("420502")
    row = conn.execute(
        "INSERT INTO institutions (code, name, kind, region_code) VALUES (%s, %s, 'residential_home', '420502')"
        " RETURNING id",
        (code, name),
    ).fetchone()
    assert row is not None
    return Home(int(row[0]), code, name)


def _room(conn: psycopg.Connection[Any], home: Home) -> int:
    row = conn.execute(
        "WITH b AS (INSERT INTO buildings (institution_id, name) VALUES (%s, '1号楼') RETURNING id),"
        " f AS (INSERT INTO floors (building_id, name) SELECT id, '1层' FROM b RETURNING id)"
        " INSERT INTO rooms (floor_id, name) SELECT id, '101' FROM f RETURNING id",
        (home.id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _resident(
    conn: psycopg.Connection[Any], vault: Vault, home: Home, room: int, number: str, *, until: datetime | None = None
) -> tuple[str, int, str]:
    """A resident of ``home`` with ``number``, admitted to a bed of their own from May (until ``until``):
    (person code, resident id, bed code)."""
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
        (home.id, room, bed_code, bed_code),
    ).fetchone()
    assert resident is not None and bed is not None
    conn.execute(
        "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, tstzrange('2026-05-01', %s))",
        (bed[0], resident[0], until),
    )
    return person, int(resident[0]), bed_code


@pytest.fixture(scope="module")
def world(api: str, sub_db: Database, vault: Vault) -> World:
    tag = secrets.token_hex(3)
    numbers = {
        key: codes.generate_id_number(_rng, region6="420502", birth_date=date(1940, 2, 3), sex="female")
        for key in "PQRST"
    }
    people: dict[str, str] = {}
    beds: dict[str, str] = {}
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        a, b = _home(conn, f"松鹤园{tag}"), _home(conn, f"夕阳红{tag}")
        room_a, room_b = _room(conn, a), _room(conn, b)
        for key, died in (("P", DIED_IN_A), ("Q", DIED_IN_A_MID)):
            _, resident, _ = _resident(conn, vault, a, room_a, numbers[key], until=died)
            conn.execute(
                "INSERT INTO deaths (resident_id, died_at, source) VALUES (%s, %s, 'institution')", (resident, died)
            )
        r_at_a, _, _ = _resident(conn, vault, a, room_a, numbers["R"])
        for key in "PQRST":  # home B registers every one of them and puts them in a bed on paper
            person, resident, bed = _resident(
                conn, vault, b, room_b, numbers[key], until=DIED_IN_B if key == "S" else None
            )
            people[key], beds[key] = person, bed
            if key == "S":
                conn.execute(
                    "INSERT INTO deaths (resident_id, died_at, source) VALUES (%s, %s, 'institution')",
                    (resident, DIED_IN_B),
                )
    admin = user(api, sub_db.url, "admin")
    reg = user(api, sub_db.url, "regulator", region="4205")
    head_a = user(api, sub_db.url, "head", institution_id=a.id)
    head_b = user(api, sub_db.url, "head", institution_id=b.id)
    set_amounts(admin)
    register = f"id_number,died_on,source\n{numbers['T']},{DIED_IN_REGISTER},funeral\n".encode()
    reg.ok("POST", "/api/v1/subsidy/death-register", 201, files={"file": ("deaths.csv", register)})
    allowance = {"programme": "old_age_allowance", "amount": "100"}
    head_b.ok(
        "POST",
        f"/api/v1/institutions/{b.id}/subsidy/claims",
        201,
        json={
            "month": MONTH,
            "lines": [
                {"person_code": people["P"], **allowance},
                {"person_code": people["Q"], "bed_code": beds["Q"], "programme": "operating_subsidy", "days": 31},
                {"person_code": people["R"], **allowance},
                {"person_code": people["S"], **allowance},
                {"person_code": people["T"], **allowance},
            ],
        },
    )
    head_a.ok(
        "POST",
        f"/api/v1/institutions/{a.id}/subsidy/claims",
        201,
        json={"month": MONTH, "lines": [{"person_code": r_at_a, **allowance}]},
    )
    reg.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": MONTH})
    return World(a, b, people, r_at_a, head_a, head_b, reg, admin)


def _lines(client: Client, home: Home, **params: Any) -> dict[str, dict[str, Any]]:
    view = client.ok("GET", f"/api/v1/institutions/{home.id}/subsidy/claims", params={"month": MONTH, **params})
    return {line["person_code"]: line for line in view["lines"]}


def _reason(line: dict[str, Any], code: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in line["reasons"] if r["code"] == code]
    assert found, (code, line["reasons"])
    return found[0]


def _said(client: Client, home: Home) -> dict[str, str]:
    """Everything the claim's reads say: the JSON with and without evidence, the CSV in both languages, the XLSX."""
    path = f"/api/v1/institutions/{home.id}"
    out = {
        "json": client.get(f"{path}/subsidy/claims", params={"month": MONTH}).text,
        "json without evidence": client.get(f"{path}/subsidy/claims", params={"month": MONTH, "evidence": False}).text,
    }
    for lang in ("en", "zh-CN"):
        reply = client.get(f"{path}/subsidy/export", params={"month": MONTH, "lang": lang})
        assert reply.status_code == 200, reply.text
        out[f"csv {lang}"] = reply.content.decode("utf-8-sig")
    reply = client.get(f"{path}/subsidy/export", params={"month": MONTH, "format": "xlsx"})
    assert reply.status_code == 200, reply.text
    sheet = load_workbook(io.BytesIO(reply.content)).worksheets[0]
    out["xlsx"] = "\n".join(
        "\t".join("" if v is None else str(v) for v in row) for row in sheet.iter_rows(values_only=True)
    )
    return out


def test_a_home_reads_the_verdict_not_what_another_home_recorded(world: World) -> None:
    # not in any read: home A's code or name, the dates of the deaths recorded elsewhere, their sources
    for what, text in _said(world.head_b, world.b).items():
        for secret in (world.a.code, world.a.name, *FOREIGN_DATES, "funeral", "death_register"):
            assert secret not in text, (what, secret)
        assert "ask the regulator" in text or "民政部门" in text, what
    lines = _lines(world.head_b, world.b)
    p, q, r, t = (lines[world.people[k]] for k in "PQRT")
    # the verdicts stand, and say there is something to ask about
    assert p["verdict"] == "rejected" and t["verdict"] == "rejected"
    assert q["verdict"] == "manual_check" and r["verdict"] == "manual_check"
    for line, code in ((p, "died_before_month"), (t, "died_before_month"), (q, "claims_after_death")):
        reason = _reason(line, code)
        assert reason["elsewhere"] is True and reason["args"] == {"variant": "elsewhere"}, reason
        assert "elsewhere" in reason["text"] and "ask the regulator" in reason["text"]
        assert "民政部门" in reason["text_zh"]
        assert [rec for rec in line["evidence"]["records"] if rec["kind"] == "death"] == [
            {"kind": "death", "elsewhere": True}
        ]
        assert line["evidence"]["death"] == {"elsewhere": True}
        assert line["evidence"]["nights"]["after_death"] is None and line["evidence"]["counts"]["after_death"] is None
    duplicate = _reason(r, "duplicate_unresolved")
    assert duplicate["elsewhere"] is True and "another home" in duplicate["text"] and "homes" not in duplicate["args"]
    assert r["evidence"]["duplicate"] == {"elsewhere": True}


def test_what_the_home_recorded_itself_is_said_in_full(world: World) -> None:
    s = _lines(world.head_b, world.b)[world.people["S"]]
    assert s["verdict"] == "rejected"
    reason = _reason(s, "died_before_month")
    assert reason["elsewhere"] is False and reason["args"]["died_on"] == "2026-09-20"
    assert reason["text"] == "died on 2026-09-20, before the month"
    (death,) = [rec for rec in s["evidence"]["records"] if rec["kind"] == "death"]
    assert death["died_on"] == "2026-09-20" and death["home_code"] == world.b.code and death["elsewhere"] is False
    assert s["evidence"]["death"] == {"died_on": "2026-09-20", "elsewhere": False}
    assert "2026-09-20" in _said(world.head_b, world.b)["csv en"]


def test_the_other_home_reads_the_duplicate_without_the_claimant_either(world: World) -> None:
    r = _lines(world.head_a, world.a)[world.r_at_a]
    assert r["verdict"] == "manual_check"
    assert _reason(r, "duplicate_unresolved")["args"] == {"variant": "elsewhere"}
    for what, text in _said(world.head_a, world.a).items():
        assert world.b.code not in text and world.b.name not in text, what


def test_the_regulator_and_the_admin_read_everything(world: World) -> None:
    for client in (world.reg, world.admin):
        lines = _lines(client, world.b)
        p, q, r, t = (lines[world.people[k]] for k in "PQRT")
        assert _reason(p, "died_before_month")["text"] == "died on 2026-09-12, before the month"
        (death,) = [rec for rec in p["evidence"]["records"] if rec["kind"] == "death"]
        assert death == {
            "kind": "death", "register": "registry", "source": "institution", "died_on": "2026-09-12",
            "home_code": world.a.code, "home_name": world.a.name, "elsewhere": True,
        }  # fmt: skip
        assert _reason(q, "claims_after_death")["args"]["died_on"] == "2026-10-12"
        assert q["evidence"]["nights"]["after_death"] == list(range(12, 32))
        assert q["evidence"]["death"] == {"died_on": "2026-10-12", "elsewhere": True}
        duplicate = _reason(r, "duplicate_unresolved")
        assert duplicate["args"]["homes"] == [world.a.code] and world.a.code in duplicate["text"]
        assert r["evidence"]["duplicate"]["other_homes"] == [world.a.code]
        (register,) = [rec for rec in t["evidence"]["records"] if rec["kind"] == "death"]
        assert (register["register"], register["source"], register["died_on"]) == (
            "death_register",
            "funeral",
            "2026-09-05",
        )
        said = _said(client, world.b)
        for secret in (world.a.code, *FOREIGN_DATES):
            assert secret in said["json"] and secret in said["csv en"], secret
        rows = list(csv.reader(io.StringIO(said["csv en"])))
        assert any("2026-09-12" in cell for row in rows for cell in row)


def test_a_verdict_stored_before_the_marks_is_withheld_too() -> None:
    """Reasons and records of a death stored without ``elsewhere`` (before the rule) are not known to be the
    home's own: a head reads them withheld."""
    head = _principal("head")
    line = LineVerdict(
        line_id=1, line_no=1, ref=None, person_code="P", bed_code=None, programme="old_age_allowance", days=None,
        amount=None, verdict="rejected", claimed_days=None, verified_days=None, claimed_yuan=None,
        supported_yuan=None, payable_yuan=None, decision=None,
        reasons=[
            Reason(code="died_before_month", text="died on 2026-09-12, before the month",
                   args={"died_on": "2026-09-12"}),
            Reason(code="duplicate_claim", text="also claimed by X, where ...", args={"homes": ["X"]}),
            Reason(code="present", text="in bed on 3 of 3 payable night(s)", args={"count": 3, "payable": 3}),
        ],
        evidence={"records": [{"kind": "death", "register": "registry", "source": "institution",
                               "died_on": "2026-09-12"}],
                  "nights": {"after_death": [1, 2]}, "counts": {"after_death": 2},
                  "duplicate": {"other_homes": ["X"], "lines_with_presence": 1}},
    )  # fmt: skip
    view = ClaimView(institution_id=1, month=MONTH, claim_id=1, submitted_at=None, source=None,
                     totals=Totals.model_validate(empty_totals().model_dump()), lines=[line])  # fmt: skip
    (seen,) = disclosure.for_reader(view, head).lines
    assert "2026-09-12" not in seen.model_dump_json() and '"X"' not in seen.model_dump_json()
    assert [r.code for r in seen.reasons] == ["died_before_month", "duplicate_claim", "present"]
    assert seen.reasons[2] == line.reasons[2]  # the home's own evidence, as it was
    # a regulator reads a home of their region as stored; one whose region is not known is not named to them
    assert disclosure.for_reader(view, _principal("regulator"), home_regions={"X": "420502"}) == view
    assert '"X"' not in disclosure.for_reader(view, _principal("regulator")).model_dump_json()
