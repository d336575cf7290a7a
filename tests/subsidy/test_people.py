"""Registers matched by keyed hash, policies that find people (政策找人), enrolment without an application
(免申即享) and its liveness check, supervision's blacklist flag, a person's decision, and the exports."""

from __future__ import annotations

import csv
import io
import random
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, cast

import psycopg
import pytest
from openpyxl import load_workbook
from tests.registry.support import Client, Database
from tests.subsidy import world_db
from tests.subsidy.support import home, set_amounts, user
from tests.subsidy.world import Scenario, plan

from eldercare.devices import codes
from eldercare.platform.crypto import Vault
from eldercare.platform.subsidy import reason_text
from eldercare.platform.subsidy.reports import LINE_COLUMNS, TOTAL_COLUMNS, headers

OCT = date(2026, 10, 1)
_rng = random.Random(11)


@dataclass
class Setup:
    scenario: Scenario
    written: world_db.Written
    admin: Client
    reg: Client
    head: Client  # of home 0
    newcomer: int  # a resident of home 0 who turned 80 on 15 October, not claimed
    newcomer_number: str


@pytest.fixture(scope="module")
def setup(api: str, sub_db: Database, vault: Vault) -> Setup:
    scenario = plan(seed=17, homes=2, beds=10, month=OCT, fraud_share=0, edge_share=0, providers=0)
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        written = world_db.write(conn, scenario, vault)
        number = codes.generate_id_number(_rng, region6="420502", birth_date=date(1946, 10, 15), sex="male")
        row = conn.execute(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, status, created_at) VALUES (%s, %s, %s, %s, %s, %s, '1946-10-15',"
            " 'male', 'admitted', '2026-03-01') RETURNING id",
            (
                written.homes[0],
                codes.new_person_code(_rng),
                vault.encrypt("张伟", column="residents.name"),
                vault.encrypt(number, column="residents.id_number"),
                vault.lookup_hash(number),
                number[:6] + "********" + number[14:],
            ),
        ).fetchone()
        assert row is not None
        bed = conn.execute(
            "INSERT INTO beds (institution_id, room_id, code, label, kind) SELECT institution_id, room_id, %s, 'extra',"
            " 'ordinary' FROM beds WHERE institution_id = %s LIMIT 1 RETURNING id",
            (codes.new_bed_code(_rng), written.homes[0]),
        ).fetchone()
        assert bed is not None
        conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, '[2026-03-02,)')",
            (bed[0], row[0]),
        )
    admin = user(api, sub_db.url, "admin")
    set_amounts(admin)
    reg = user(api, sub_db.url, "regulator", region="4205")
    head = user(api, sub_db.url, "head", institution_id=written.homes[0])
    for index, home_id in enumerate(written.homes):
        admin.ok(
            "POST",
            f"/api/v1/institutions/{home_id}/subsidy/claims/upload",
            201,
            files={"file": ("c.csv", scenario.claim_file(index))},
        )
    return Setup(scenario, written, admin, reg, head, int(row[0]), number)


def test_the_death_register_keeps_only_the_keyed_hash(setup: Setup, sub_db: Database, vault: Vault) -> None:
    person = setup.scenario.people[0]
    data = f"id_number,died_on,source\n{person.id_number},2026-10-20,殡葬\n".encode()
    report = setup.reg.ok("POST", "/api/v1/subsidy/death-register", 201, files={"file": ("d.csv", data)})
    assert report == {"kind": "deaths", "region_code": "4205", "rows": 1, "added": 1, "residents_matched": 1}
    again = setup.reg.ok("POST", "/api/v1/subsidy/death-register", 201, files={"file": ("d.csv", data)})
    assert again["added"] == 0  # importing the same file again adds nothing
    with psycopg.connect(sub_db.admin_url) as conn:
        stored = conn.execute("SELECT id_number_hash, died_on, source FROM death_register").fetchall()
        text = conn.execute(
            "SELECT (SELECT string_agg(row_to_json(d)::text, '') FROM death_register d)"
            " || (SELECT string_agg(row_to_json(i)::text, '') FROM subsidy_register_imports i)"
            " || (SELECT string_agg(detail::text, '') FROM audit_log)"
        ).fetchone()
    assert stored == [(vault.lookup_hash(person.id_number), date(2026, 10, 20), "funeral")]
    assert text is not None and person.id_number not in text[0] and person.id_number[6:14] not in text[0]


def test_a_bad_register_row_stores_nothing(setup: Setup, sub_db: Database) -> None:
    good = setup.scenario.people[1].id_number
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    data = f"id_number,died_on\n{good},2026-10-01\n{bad},2026-10-02\n{good[:17]},2099-01-01\n".encode()
    reply = setup.reg.post("/api/v1/subsidy/death-register", files={"file": ("d.csv", data)})
    assert reply.status_code == 422, reply.text
    fields = {e["field"]: e["reason"] for e in reply.json()["errors"]}
    assert set(fields) == {"rows[3].id_number", "rows[4].id_number", "rows[4].died_on"}
    assert good not in reply.text and bad not in reply.text  # reasons never repeat the number
    with psycopg.connect(sub_db.url) as conn:
        assert conn.execute("SELECT count(*) FROM death_register").fetchone() == (1,)
    assert setup.head.post("/api/v1/subsidy/death-register", files={"file": ("d.csv", data)}).status_code == 403


def test_policies_find_the_newly_eligible_and_enrol_them(setup: Setup, api: str, sub_db: Database) -> None:
    found = setup.reg.ok("GET", "/api/v1/subsidy/newly-eligible", params={"month": "2026-10"})
    mine = [r for r in found if r["resident_id"] == setup.newcomer]
    assert [(r["programme"], r["since"], r["reason"], r["monthly_yuan"]) for r in mine] == [
        ("old_age_allowance", "2026-10-15", "turned 80", "100.00")
    ]
    claimed = {c.person_code for c in setup.scenario.claims}
    assert not [r for r in found if r["person_code"] in claimed]  # already claimed: nothing to find
    assert setup.head.ok("GET", "/api/v1/subsidy/newly-eligible", params={"month": "2026-10"}) == found  # home 0
    # A capability assessment changes: the person becomes eligible for the disability subsidy that day.
    person = next(
        p
        for p in setup.scenario.people[1:]  # the first is in the death register now
        if p.home == 0 and p.capability == "self_care" and not p.hardship
    )
    resident = setup.written.residents[person.person_code]
    setup.admin.ok("PATCH", f"/api/v1/residents/{resident}", 200, json={"capability": "disabled"})
    this_month = date.today().replace(day=1).strftime("%Y-%m")
    later = setup.reg.ok("GET", "/api/v1/subsidy/newly-eligible", params={"month": this_month})
    change = [r for r in later if r["resident_id"] == resident and r["programme"] == "hardship_disability_subsidy"]
    assert change and change[0]["reason"] == "capability assessed disabled (was self_care)", later
    # Enrolled without an application: no longer listed, and a receiver whose liveness is checked.
    enrolment = setup.reg.ok(
        "POST",
        "/api/v1/subsidy/enrolments",
        201,
        json={
            "resident_id": setup.newcomer,
            "programme": "old_age_allowance",
            "from_month": "2026-10",
            "reason": "政策找人: 80 on 2026-10-15",
        },
    )
    assert enrolment["from_month"] == "2026-10-01"
    again = setup.reg.post(
        "/api/v1/subsidy/enrolments",
        json={"resident_id": setup.newcomer, "programme": "old_age_allowance", "from_month": "2026-11"},
    )
    assert again.status_code == 409
    found = setup.reg.ok("GET", "/api/v1/subsidy/newly-eligible", params={"month": "2026-10"})
    assert not [r for r in found if r["resident_id"] == setup.newcomer]
    outsider = user(api, sub_db.url, "regulator", region="4201")
    assert (
        outsider.post(
            "/api/v1/subsidy/enrolments",
            json={"resident_id": resident, "programme": "old_age_allowance", "from_month": "2026-10"},
        ).status_code
        == 404
    )


def test_an_enrolled_receiver_without_evidence_is_followed_up(setup: Setup) -> None:
    setup.reg.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-10"})
    listed = setup.reg.ok("GET", "/api/v1/subsidy/liveness", params={"month": "2026-10"})
    newcomer = [r for r in listed if r["resident_id"] == setup.newcomer]
    assert newcomer and newcomer[0]["programmes"] == ["old_age_allowance"] and newcomer[0]["follow_up"]
    everyone = setup.head.ok("GET", "/api/v1/subsidy/liveness", params={"month": "2026-10", "everyone": "true"})
    assert {r["institution_id"] for r in everyone} == {setup.written.homes[0]}  # a head: their home only
    receivers = {c.person_code for c in setup.scenario.claims if c.bed_code is None and c.home == 0}
    assert receivers <= {r["person_code"] for r in everyone}


def _lines(client: Client, home: int) -> list[dict[str, object]]:
    view = client.ok("GET", f"/api/v1/institutions/{home}/subsidy/claims", params={"month": "2026-10"})
    lines: list[dict[str, object]] = view["lines"]
    return lines


def test_a_flagged_home_s_lines_go_to_a_person_who_decides(setup: Setup, sub_db: Database) -> None:
    home = setup.written.homes[1]
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO institution_flags (institution_id, flag, source, reason) VALUES (%s,"
            " 'subsidy_manual_check', 'regulator', 'test')",
            (home,),
        )
    setup.reg.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-10"})
    lines = _lines(setup.reg, home)
    assert lines and all(ln["verdict"] == "manual_check" for ln in lines)
    assert all("home_flagged" in {r["code"] for r in ln["reasons"]} for ln in lines)  # type: ignore[attr-defined]
    assert all(
        ln["verdict"] == "verified"
        for ln in _lines(setup.reg, setup.written.homes[0])
        if ln["person_code"] != setup.scenario.people[0].person_code
    )
    first = lines[0]
    setup.reg.ok(
        "POST",
        "/api/v1/subsidy/decisions",
        204,
        json={
            "line_id": first["line_id"],
            "outcome": "verified",
            "payable_yuan": first["claimed_yuan"],
            "note": "visited the home on 2026-11-20",
        },
    )
    bad = setup.reg.post(
        "/api/v1/subsidy/decisions",
        json={"line_id": first["line_id"], "outcome": "rejected", "payable_yuan": "1", "note": "visited"},
    )
    assert bad.status_code == 422
    totals = setup.reg.ok("GET", "/api/v1/subsidy/totals", params={"month": "2026-10"})
    row = next(h for h in totals["homes"] if h["institution_id"] == home)
    assert row["pending"] == len(lines) - 1 and row["verified"] == 1
    assert Decimal(row["payable_yuan"]) == Decimal(str(first["claimed_yuan"]))
    assert (
        setup.head.post(
            "/api/v1/subsidy/decisions",
            json={"line_id": first["line_id"], "outcome": "verified", "payable_yuan": "0", "note": "mine"},
        ).status_code
        == 403
    )
    outsider = user(setup.admin.base, sub_db.url, "regulator", region="4201")
    decision = {"line_id": first["line_id"], "outcome": "rejected", "payable_yuan": "0", "note": "from elsewhere"}
    assert outsider.post("/api/v1/subsidy/decisions", json=decision).status_code == 404  # not in their region
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        conn.execute("UPDATE institution_flags SET cleared_at = now() WHERE institution_id = %s", (home,))


def _claim_reads(url: str, home: int) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'read_health' AND object_type = 'subsidy_claim'"
            " AND institution_id = %s ORDER BY seq",
            (home,),
        ).fetchall()
    return [r[0] for r in rows]


def test_reading_a_claim_is_audited(setup: Setup, sub_db: Database) -> None:
    """A claim's reasons and evidence speak of hospital stays, deaths and capability: each read is logged with
    the person codes it showed."""
    home = setup.written.homes[0]
    before = len(_claim_reads(sub_db.url, home))
    view = setup.reg.ok("GET", f"/api/v1/institutions/{home}/subsidy/claims", params={"month": "2026-10"})
    setup.head.ok("GET", f"/api/v1/institutions/{home}/subsidy/claims", params={"month": "2026-10", "evidence": False})
    assert setup.head.get(f"/api/v1/institutions/{home}/subsidy/export", params={"month": "2026-10"}).status_code == 200
    reads = _claim_reads(sub_db.url, home)[before:]
    assert [(r["evidence"] if "evidence" in r else r["export"]) for r in reads] == [True, False, "csv"]
    codes = sorted({line["person_code"] for line in view["lines"] if line["person_code"]})
    assert codes and all(r["person_codes"] == codes and r["lines"] == len(view["lines"]) for r in reads)
    assert "evidence" in reads[0]["fields"] and "evidence" not in reads[1]["fields"]
    empty = setup.reg.ok("GET", f"/api/v1/institutions/{home}/subsidy/claims", params={"month": "2025-01"})
    assert empty["lines"] == [] and len(_claim_reads(sub_db.url, home)) == before + 3  # nothing read: no entry


def test_reports_as_csv_and_xlsx(setup: Setup) -> None:
    home = setup.written.homes[0]
    reply = setup.head.get(f"/api/v1/institutions/{home}/subsidy/export", params={"month": "2026-10"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert reply.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    lines = _lines(setup.head, home)
    assert rows[0] == list(LINE_COLUMNS) and len(rows) == 1 + len(lines)
    reasons = [row[LINE_COLUMNS.index("reasons")] for row in rows[1:]]
    said = {line["line_no"]: cast(list[dict[str, str]], line["reasons"]) for line in lines}
    texts = {no: "; ".join(r["text"] for r in given) for no, given in said.items()}
    assert any(reasons) and dict(zip((int(row[0]) for row in rows[1:]), reasons, strict=True)) == texts  # English
    zh = setup.head.get(f"/api/v1/institutions/{home}/subsidy/export", params={"month": "2026-10", "lang": "zh-CN"})
    zh_rows = list(csv.reader(io.StringIO(zh.content.decode("utf-8-sig"))))
    zh_reasons = [row[LINE_COLUMNS.index("reasons")] for row in zh_rows[1:]]
    assert [bool(r) for r in zh_reasons] == [bool(r) for r in reasons]  # the same lines have reasons ...
    assert all(re.search(r"[\u4e00-\u9fff]", r) for r in zh_reasons if r)  # ... said in Chinese
    assert zh_rows[0] == headers(LINE_COLUMNS, "zh-CN")  # for people: the columns named ...
    names = {p["code"]: p["name"] for p in setup.reg.ok("GET", "/api/v1/subsidy/programmes")}
    assert names and all(reason_text.named("programme", code, "zh-CN") == name for code, name in names.items())
    for row, zh_row in zip(rows[1:], zh_rows[1:], strict=True):  # ... and the coded values
        programme, verdict = LINE_COLUMNS.index("programme"), LINE_COLUMNS.index("verdict")
        assert zh_row[programme] == names[row[programme]]
        assert zh_row[verdict] == reason_text.named("verdict", row[verdict], "zh-CN") != row[verdict]
    bad = setup.head.get(f"/api/v1/institutions/{home}/subsidy/export", params={"month": "2026-10", "lang": "fr"})
    assert bad.status_code == 422 and "lang" in bad.text
    reply = setup.reg.get("/api/v1/subsidy/export", params={"month": "2026-10", "format": "xlsx"})
    assert reply.status_code == 200
    sheet = load_workbook(io.BytesIO(reply.content)).worksheets[0]
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert table[0] == list(TOTAL_COLUMNS)
    levels = [r[0] for r in table[1:]]
    assert levels.count("home") == 2 and levels[-1] == "region"
    totals = setup.reg.ok("GET", "/api/v1/subsidy/totals", params={"month": "2026-10"})
    assert Decimal(str(table[-1][TOTAL_COLUMNS.index("claimed_yuan")])) == Decimal(totals["total"]["claimed_yuan"])
    zh = setup.reg.get("/api/v1/subsidy/export", params={"month": "2026-10", "format": "xlsx", "lang": "zh-CN"})
    zh_table = [list(r) for r in load_workbook(io.BytesIO(zh.content)).worksheets[0].iter_rows(values_only=True)]
    assert zh_table[0] == headers(TOTAL_COLUMNS, "zh-CN")
    named = {"home": "机构", "district": "区县", "region": "全区划"}
    assert [r[0] for r in zh_table[1:]] == [named[str(v)] for v in levels]
    assert [r[1:] for r in zh_table[1:]] == [r[1:] for r in table[1:]]  # the same figures


def test_the_monthly_batch_runs_from_the_command_line(
    setup: Setup, sub_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from eldercare.cli import main

    code = main(
        ["subsidy", "verify", "--month", "2026-10", "--region", "4205", "--no-ranking", "--database-url", sub_db.url]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lines"] == len(setup.scenario.claims) and printed["ranked_homes"] == 0
    assert main(["subsidy", "verify", "--month", "2026-13", "--region", "4205", "--database-url", sub_db.url]) == 2


def test_a_person_claimed_in_another_region_too(setup: Setup, sub_db: Database, vault: Vault) -> None:
    """Home A (4205) cares for the person; a home in Wuhan (4201) registers the same ID number, admits them on
    paper and claims their allowance. Each region's run sees the other's line by the keyed hash."""
    claimed = {c.person_code for c in setup.scenario.claims if c.programme == "old_age_allowance"}
    person = next(p for p in setup.scenario.people[1:] if p.person_code in claimed and p.wristband is False)
    wuhan = home(sub_db.url, "420102")
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        bed = conn.execute(
            "WITH b AS (INSERT INTO buildings (institution_id, name) VALUES (%s, '1号楼') RETURNING id),"
            " f AS (INSERT INTO floors (building_id, name) SELECT id, '1层' FROM b RETURNING id),"
            " r AS (INSERT INTO rooms (floor_id, name) SELECT id, '101' FROM f RETURNING id)"
            " INSERT INTO beds (institution_id, room_id, code, kind) SELECT %s, id, %s, 'ordinary' FROM r RETURNING id",
            (wuhan, wuhan, codes.new_bed_code(_rng)),
        ).fetchone()
        twin_code = codes.new_person_code(_rng)
        twin = conn.execute(
            "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
            " id_number_masked, birth_date, sex, status, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " 'admitted', '2026-05-01') RETURNING id",
            (
                wuhan,
                twin_code,
                vault.encrypt("某某", column="residents.name"),
                vault.encrypt(person.id_number, column="residents.id_number"),
                vault.lookup_hash(person.id_number),
                person.id_number[:6] + "********" + person.id_number[14:],
                person.birth,
                person.sex,
            ),
        ).fetchone()
        assert bed is not None and twin is not None
        conn.execute(
            "INSERT INTO bed_assignments (bed_id, resident_id, during) VALUES (%s, %s, '[2026-05-02,)')",
            (bed[0], twin[0]),
        )
    amount = next(
        c.amount
        for c in setup.scenario.claims
        if c.person_code == person.person_code and c.programme == "old_age_allowance"
    )
    setup.admin.ok(
        "POST",
        f"/api/v1/institutions/{wuhan}/subsidy/claims",
        201,
        json={
            "month": "2026-10",
            "lines": [{"person_code": twin_code, "programme": "old_age_allowance", "amount": str(amount)}],
        },
    )
    setup.admin.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-10", "region": "4201"})
    setup.admin.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-10", "region": "4205"})
    (there,) = _lines(setup.admin, wuhan)
    assert there["verdict"] == "rejected" and "duplicate_claim" in {r["code"] for r in there["reasons"]}  # type: ignore[attr-defined]
    home_a = setup.written.homes[person.home]
    here = next(
        ln
        for ln in _lines(setup.admin, home_a)
        if ln["person_code"] == person.person_code and ln["programme"] == "old_age_allowance"
    )
    assert here["verdict"] == "verified" and "duplicate_resolved" in {r["code"] for r in here["reasons"]}  # type: ignore[attr-defined]
    assert setup.scenario.homes[person.home].code in str(there["evidence"])
