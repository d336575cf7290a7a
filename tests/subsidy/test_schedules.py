"""Programmes as data: amounts per region, versioned by the month they take effect from. A month is paid with
the version in force for it, the most specific region first; a new version never changes a verified month."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest
from tests.registry.support import Client, Database
from tests.subsidy import world_db
from tests.subsidy.support import said_in_both, user
from tests.subsidy.world import Scenario, age_on, plan

from eldercare.platform.crypto import Vault

SEP, OCT = date(2026, 9, 1), date(2026, 10, 1)
BANDS = [{"min_age": 80, "max_age": 89}, {"min_age": 90, "max_age": 99}, {"min_age": 100}]


def _rates(amounts: tuple[int, int, int]) -> list[dict[str, object]]:
    return [{**band, "monthly_yuan": str(a)} for band, a in zip(BANDS, amounts, strict=True)]


def _due(birth: date, month: date, amounts: tuple[int, int, int]) -> Decimal | None:
    age = age_on(birth, date(month.year, month.month, 30))
    return None if age < 80 else Decimal(amounts[0 if age < 90 else 1 if age < 100 else 2])


@pytest.fixture(scope="module")
def setup(api: str, sub_db: Database, vault: Vault) -> tuple[Scenario, world_db.Written, Client, Client]:
    scenario = plan(seed=5, homes=2, beds=12, month=OCT, fraud_share=0, edge_share=0, providers=0)
    with psycopg.connect(sub_db.url, autocommit=True) as conn:
        written = world_db.write(conn, scenario, vault)
    return scenario, written, user(api, sub_db.url, "admin"), user(api, sub_db.url, "regulator", region="4205")


def _claim(
    client: Client, scenario: Scenario, written: world_db.Written, month: date, amounts: tuple[int, int, int]
) -> int:
    lines = []
    for p in scenario.people:
        due = _due(p.birth, month, amounts)
        if p.home == 0 and due is not None:
            lines.append({"person_code": p.person_code, "programme": "old_age_allowance", "amount": str(due)})
    client.ok(
        "POST",
        f"/api/v1/institutions/{written.homes[0]}/subsidy/claims",
        201,
        json={"month": f"{month:%Y-%m}", "lines": lines},
    )
    return len(lines)


def _paid(client: Client, written: world_db.Written, month: date) -> list[tuple[str, Decimal, int]]:
    view = client.ok(
        "GET", f"/api/v1/institutions/{written.homes[0]}/subsidy/claims", params={"month": f"{month:%Y-%m}"}
    )
    return [(ln["verdict"], Decimal(ln["payable_yuan"]), ln["evidence"]["schedule"]["id"]) for ln in view["lines"]]


def test_a_change_of_amounts_does_not_rewrite_past_months(
    setup: tuple[Scenario, world_db.Written, Client, Client], sub_db: Database
) -> None:
    scenario, written, admin, reg = setup
    province = admin.ok(
        "POST",
        "/api/v1/subsidy/schedules",
        201,
        json={
            "programme": "old_age_allowance",
            "region_code": "42",
            "effective_from": "2026-01",
            "rates": _rates((100, 200, 500)),
        },
    )
    city = reg.ok(
        "POST",
        "/api/v1/subsidy/schedules",
        201,
        json={
            "programme": "old_age_allowance",
            "region_code": "4205",
            "effective_from": "2026-10",
            "rates": _rates((120, 220, 520)),
        },
    )
    n_sep = _claim(admin, scenario, written, SEP, (100, 200, 500))
    n_oct = _claim(admin, scenario, written, OCT, (120, 220, 520))
    assert n_sep > 3 and n_oct > 3
    for month in ("2026-09", "2026-10"):
        reg.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": month})
    sep = _paid(reg, written, SEP)
    oct_ = _paid(reg, written, OCT)
    assert {(v, s) for v, _, s in sep} == {("verified", province["id"])}
    assert {(v, s) for v, _, s in oct_} == {("verified", city["id"])}  # the most specific region's version
    due = [_due(p.birth, SEP, (100, 200, 500)) for p in scenario.people if p.home == 0]
    expected_sep = sorted(d for d in due if d is not None)
    assert sorted(a for _, a, _ in sep) == expected_sep

    # New amounts from a verified month are refused: that would rewrite what was paid.
    for effective in ("2026-09", "2026-10"):
        reply = reg.post(
            "/api/v1/subsidy/schedules",
            json={
                "programme": "old_age_allowance",
                "region_code": "4205",
                "effective_from": effective,
                "rates": _rates((1, 1, 1)),
            },
        )
        assert reply.status_code == 409, reply.text
        assert reply.json()["errors"][0]["field"] == "body.effective_from"
    later = admin.ok(
        "POST",
        "/api/v1/subsidy/schedules",
        201,
        json={
            "programme": "old_age_allowance",
            "region_code": "42",
            "effective_from": "2026-11",
            "rates": _rates((150, 250, 550)),
        },
    )
    # Verifying September again pays what it paid; the programme list shows which version is in force when.
    reg.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-09"})
    assert _paid(reg, written, SEP) == sep
    for month, in_force in (("2026-09", province["id"]), ("2026-10", city["id"]), ("2026-12", city["id"])):
        listed = reg.ok("GET", "/api/v1/subsidy/programmes", params={"region": "420502", "month": month})
        allowance = next(p for p in listed if p["code"] == "old_age_allowance")
        assert allowance["in_force"] == in_force, month
        assert {s["id"] for s in allowance["schedules"]} >= {province["id"], city["id"], later["id"]}
    with psycopg.connect(sub_db.url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE subsidy_rates SET monthly_yuan = 1 WHERE schedule_id = %s", (province["id"],))


def test_claims_over_the_amount_are_paid_the_amount(setup: tuple[Scenario, world_db.Written, Client, Client]) -> None:
    scenario, written, admin, reg = setup
    person = next(p for p in scenario.people if p.home == 1 and 80 <= age_on(p.birth, date(2026, 10, 31)) < 90)
    admin.ok(
        "POST",
        f"/api/v1/institutions/{written.homes[1]}/subsidy/claims",
        201,
        json={
            "month": "2026-10",
            "lines": [{"person_code": person.person_code, "programme": "old_age_allowance", "amount": "300"}],
        },
    )
    reg.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": "2026-10"})
    view = reg.ok("GET", f"/api/v1/institutions/{written.homes[1]}/subsidy/claims", params={"month": "2026-10"})
    (line,) = view["lines"]
    assert line["verdict"] == "partly_verified" and Decimal(line["payable_yuan"]) == 120
    assert "amount_over_schedule" in said_in_both([line])


def test_who_may_set_amounts(
    api: str, sub_db: Database, setup: tuple[Scenario, world_db.Written, Client, Client]
) -> None:
    body = {
        "programme": "old_age_allowance",
        "region_code": "4205",
        "effective_from": "2030-01",
        "rates": _rates((1, 2, 3)),
    }
    assert (
        user(api, sub_db.url, "regulator", region="4201").post("/api/v1/subsidy/schedules", json=body).status_code
        == 404
    )
    head = user(api, sub_db.url, "head", institution_id=setup[1].homes[0])
    assert head.post("/api/v1/subsidy/schedules", json=body).status_code == 403
    assert head.get("/api/v1/subsidy/programmes").status_code == 200
    unknown = setup[3].post("/api/v1/subsidy/schedules", json={**body, "programme": "pension"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.programme"
