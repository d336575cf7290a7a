"""Claims by API, CSV and XLSX: every bad line reported with its reason, nothing stored then; a good claim stored
whole, replacing the month's previous one; only a home's head (or an admin) submits, only for its home."""

from __future__ import annotations

import io
import random
from typing import Any

import psycopg
import pytest
from openpyxl import Workbook
from tests.registry.support import Client, Database
from tests.subsidy.support import home, user

from eldercare.devices import codes

_rng = random.Random(9)
P1, P2, B1 = codes.new_person_code(_rng), codes.new_person_code(_rng), codes.new_bed_code(_rng)


@pytest.fixture(scope="module")
def homes(sub_db: Database) -> tuple[int, int]:
    return home(sub_db.url), home(sub_db.url)


@pytest.fixture(scope="module")
def heads(api: str, sub_db: Database, homes: tuple[int, int]) -> tuple[Client, Client]:
    return user(api, sub_db.url, "head", institution_id=homes[0]), user(
        api, sub_db.url, "head", institution_id=homes[1]
    )


def _count(db: Database) -> tuple[int, int]:
    with psycopg.connect(db.url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM subsidy_claims), (SELECT count(*) FROM subsidy_claim_lines)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _fields(reply: Any) -> dict[str, str]:
    assert reply.status_code == 422, reply.text
    return {e["field"]: e["reason"] for e in reply.json()["errors"]}


def test_a_claim_with_bad_lines_stores_nothing_and_says_why(
    sub_db: Database, homes: tuple[int, int], heads: tuple[Client, Client]
) -> None:
    before = _count(sub_db)
    bad_person = P1[:-1] + ("0" if P1[-1] != "0" else "1")  # a mistyped check character
    csv = (
        "person_code,bed_code,programme,days,amount,month\n"
        f"{P1},{B1},operating_subsidy,31,,2026-10\n"  # row 2: good
        f"{bad_person},{B1},operating_subsidy,31,,2026-10\n"  # row 3: check character
        f"{P2},,operating_subsidy,31,,2026-10\n"  # row 4: a bed is required
        f"{P2},,old_age_allowance,,100.123,2026-10\n"  # row 5: fen
        f"{P2},,pension,,100,2026-10\n"  # row 6: no such programme
        f"{P1},{B1},operating_subsidy,32,,2026-10\n"  # row 7: October has 31 days; and the same as row 2
        f"{P2},,old_age_allowance,,100,2026-09\n"  # row 8: another month
    )
    reply = heads[0].post(
        f"/api/v1/institutions/{homes[0]}/subsidy/claims/upload", files={"file": ("claim.csv", csv.encode())}
    )
    fields = _fields(reply)
    assert set(fields) == {
        "rows[3].person_code",
        "rows[4].bed_code",
        "rows[5].amount",
        "rows[6].programme",
        "rows[7].days",
        "rows[8].month",
    }, fields
    assert "check character" in fields["rows[3].person_code"]
    assert "two decimals" in fields["rows[5].amount"]
    assert _count(sub_db) == before  # nothing half-imported


def test_a_good_file_is_stored_whole_and_replaces_the_month(
    sub_db: Database, homes: tuple[int, int], heads: tuple[Client, Client]
) -> None:
    csv = (
        "person_code,bed_code,programme,days,amount,month\n"
        f"{P1},{B1},operating_subsidy,31,,2026-10\n"
        f"{P1},,old_age_allowance,,100,2026-10\n"
        f"{P2},,hardship_disability_subsidy,,300.5,2026-10\n"
    )
    first = heads[0].ok(
        "POST",
        f"/api/v1/institutions/{homes[0]}/subsidy/claims/upload",
        201,
        files={"file": ("claim.csv", csv.encode())},
    )
    assert first["lines"] == 3 and first["month"] == "2026-10" and first["replaced_claim_id"] is None
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["person_code", "bed_code", "programme", "days", "amount"])
    sheet.append([P1, B1, "operating_subsidy", 30, None])  # a number cell in the sheet
    data = io.BytesIO()
    book.save(data)
    second = heads[0].ok(
        "POST",
        f"/api/v1/institutions/{homes[0]}/subsidy/claims/upload",
        201,
        params={"month": "2026-10"},
        files={"file": ("claim.xlsx", data.getvalue())},
    )
    assert second["replaced_claim_id"] == first["claim_id"] and second["lines"] == 1
    view = heads[0].ok("GET", f"/api/v1/institutions/{homes[0]}/subsidy/claims", params={"month": "2026-10"})
    assert view["claim_id"] == second["claim_id"] and view["source"] == "xlsx"
    assert [(ln["person_code"], ln["days"], ln["verdict"]) for ln in view["lines"]] == [(P1, 30, None)]
    assert view["totals"]["unverified"] == 1


def test_the_api_takes_the_same_lines_as_json(homes: tuple[int, int], heads: tuple[Client, Client]) -> None:
    path = f"/api/v1/institutions/{homes[1]}/subsidy/claims"
    bad = heads[1].post(
        path,
        json={
            "month": "2026-10",
            "lines": [
                {"person_code": P1, "programme": "operating_subsidy", "days": 3},
                {"person_code": P2, "programme": "old_age_allowance"},
            ],
        },
    )
    assert _fields(bad) == {
        "lines[0].bed_code": "required: this programme is paid per day of a bed",
        "lines[1].amount": "give the days or the amount claimed",
    }
    good = heads[1].ok(
        "POST",
        path,
        201,
        json={
            "month": "2026-10",
            "lines": [
                {"person_code": P1, "bed_code": B1, "programme": "operating_subsidy", "days": 3},
                {"person_code": P2, "programme": "old_age_allowance", "amount": "100"},
            ],
        },
    )
    assert good["lines"] == 2 and good["institution_id"] == homes[1]


def test_a_month_is_claimed_after_it_ends(homes: tuple[int, int], heads: tuple[Client, Client]) -> None:
    reply = heads[0].post(f"/api/v1/institutions/{homes[0]}/subsidy/claims", json={"month": "2099-01", "lines": []})
    assert _fields(reply) == {"claim.month": "a month is claimed after it has ended"}
    reply = heads[0].post(f"/api/v1/institutions/{homes[0]}/subsidy/claims", json={"month": "2026-13", "lines": []})
    assert "body.month" in _fields(reply)


def test_only_the_home_s_head_submits_and_reads(
    api: str, sub_db: Database, homes: tuple[int, int], heads: tuple[Client, Client]
) -> None:
    body = {"month": "2026-10", "lines": []}
    assert heads[1].post(f"/api/v1/institutions/{homes[0]}/subsidy/claims", json=body).status_code == 404
    assert (
        heads[1].get(f"/api/v1/institutions/{homes[0]}/subsidy/claims", params={"month": "2026-10"}).status_code == 404
    )
    staff = user(api, sub_db.url, "staff", institution_id=homes[0])
    assert staff.post(f"/api/v1/institutions/{homes[0]}/subsidy/claims", json=body).status_code == 403
    assert staff.get(f"/api/v1/institutions/{homes[0]}/subsidy/claims", params={"month": "2026-10"}).status_code == 403
    regulator = user(api, sub_db.url, "regulator", region="4205")
    assert regulator.post(f"/api/v1/institutions/{homes[0]}/subsidy/claims", json=body).status_code == 403
    assert (
        regulator.get(f"/api/v1/institutions/{homes[0]}/subsidy/claims", params={"month": "2026-10"}).status_code == 200
    )
    outsider = user(api, sub_db.url, "regulator", region="4201")
    assert (
        outsider.get(f"/api/v1/institutions/{homes[0]}/subsidy/claims", params={"month": "2026-10"}).status_code == 404
    )


def _codes(db: Database, home_id: int) -> str:
    with psycopg.connect(db.url) as conn:
        row = conn.execute("SELECT code FROM institutions WHERE id = %s", (home_id,)).fetchone()
    assert row is not None
    return str(row[0])


SIM_HEADER = "claim_id,institution_code,programme,month,person_code,bed_code,days,amount_yuan\n"


def test_the_simulators_claim_file_is_taken_as_it_is(
    api: str, sub_db: Database, homes: tuple[int, int], heads: tuple[Client, Client]
) -> None:
    a, b = _codes(sub_db, homes[0]), _codes(sub_db, homes[1])
    bed2 = codes.new_bed_code(_rng)
    data = (
        SIM_HEADER + f"2026-10-00001,{a},operating_subsidy,2026-10,{P1},{B1},31,300.00\n"
        f"2026-10-00002,{a},operating_subsidy,2026-10,,{bed2},31,200.00\n"  # an empty bed: no person
        f"2026-10-00003,{a},old_age_allowance,2026-10,{P1},{B1},31,100.00\n"
        f"2026-10-00004,{b},home_care_bed,2026-10,{P2},{bed2},31,300.00\n"
    ).encode()
    # a home uploads only its own lines
    reply = heads[0].post(f"/api/v1/institutions/{homes[0]}/subsidy/claims/upload", files={"file": ("c.csv", data)})
    assert _fields(reply) == {"rows[5].institution_code": "a line of another home"}
    mine = b"".join(line + b"\n" for line in data.splitlines() if b"," + b.encode() + b"," not in line)
    stored = heads[0].ok(
        "POST", f"/api/v1/institutions/{homes[0]}/subsidy/claims/upload", 201, files={"file": ("c.csv", mine)}
    )
    assert stored["lines"] == 3 and stored["month"] == "2026-10"
    view = heads[0].ok("GET", f"/api/v1/institutions/{homes[0]}/subsidy/claims", params={"month": "2026-10"})
    lines = {ln["ref"]: ln for ln in view["lines"]}
    assert lines["2026-10-00002"]["person_code"] is None and lines["2026-10-00002"]["bed_code"] == bed2
    assert lines["2026-10-00003"]["amount"] == "100.00" and lines["2026-10-00001"]["days"] == 31
    # a regulator takes the whole file, one claim per home, all or none
    regulator = user(api, sub_db.url, "regulator", region="4205")
    both = regulator.ok("POST", "/api/v1/subsidy/claims/upload", 201, files={"file": ("claims.csv", data)})
    assert {c["institution_id"]: c["lines"] for c in both["claims"]} == {homes[0]: 3, homes[1]: 1}
    view = heads[1].ok("GET", f"/api/v1/institutions/{homes[1]}/subsidy/claims", params={"month": "2026-10"})
    assert [ln["programme"] for ln in view["lines"]] == ["home_care_bed_subsidy"]
    outsider = user(api, sub_db.url, "regulator", region="4201")
    before = _count(sub_db)
    reply = outsider.post("/api/v1/subsidy/claims/upload", files={"file": ("claims.csv", data)})
    assert reply.status_code == 404  # homes outside the region are not found
    assert {e["field"] for e in reply.json()["errors"]} == {f"rows[{n}].institution_code" for n in (2, 3, 4, 5)}
    assert _count(sub_db) == before
    assert heads[0].post("/api/v1/subsidy/claims/upload", files={"file": ("claims.csv", data)}).status_code == 403
