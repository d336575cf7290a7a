"""双随机一公开: a draw anyone can re-run from what is published, results recorded once, a public page."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from tests.registry.support import Client, Database
from tests.supervision.world import World


def _rerun(public: dict[str, object]) -> tuple[list[str], list[str], list[list[str]]]:
    """The published algorithm written again from its description, independently of the platform's code."""
    seed = str(public["seed"]).encode()

    def pick(role: str, keys: list[str], n: int) -> list[str]:
        tickets = sorted((hmac.new(seed, f"{role}:{k}".encode(), hashlib.sha256).hexdigest(), k) for k in keys)
        return [k for _, k in tickets[:n]]

    homes = pick("home", list(public["home_candidates"]), int(public["homes_requested"]))  # type: ignore[call-overload]
    inspectors = pick("inspector", list(public["inspector_candidates"]), int(public["inspectors_requested"]))  # type: ignore[call-overload]
    size, m = int(public["team_size"]), len(inspectors)  # type: ignore[call-overload]
    teams = [[inspectors[(i * size + j) % m] for j in range(size)] for i in range(len(homes))]
    return homes, inspectors, teams


def test_draw_is_reproducible_from_the_public_record(as_user: Callable[[str], Client], world: World, api: str) -> None:
    body = {"region": "4205", "homes": 2, "inspectors": 3, "team_size": 2, "seed": "2026-11-22 福彩3D 517",
            "purpose": "2026年第四季度养老机构双随机抽查"}  # fmt: skip
    drawn = as_user("sup-city").ok("POST", "/api/v1/supervision/inspections/draws", 201, json=body)
    public = httpx.get(f"{api}/api/v1/public/inspections", params={"region": "4205"}).json()
    record = next(d for d in public if d["id"] == drawn["id"])
    assert record == drawn
    assert sorted(record["home_candidates"]) == record["home_candidates"]
    assert set(record["home_candidates"]) == {world.a.code, world.b.code, world.c.code}
    users = world.users
    assert record["inspector_candidates"] == sorted(
        f"U{users[u]}" for u in ("sup-city", "sup-xiling", "sup-insp1", "sup-insp2", "sup-insp3")
    )
    for name in ("home_candidates", "inspector_candidates"):
        digest = hashlib.sha256("\n".join(record[name]).encode()).hexdigest()
        assert record[f"{name}_sha256"] == digest
    homes, inspectors, teams = _rerun(record)
    assert record["drawn_homes"] == homes and record["drawn_inspectors"] == inspectors
    assert [i["institution_code"] for i in record["inspections"]] == homes
    assert [i["team"] for i in record["inspections"]] == teams
    # the same seed and candidates draw the same again; both draws stay public
    again = as_user("sup-city").ok("POST", "/api/v1/supervision/inspections/draws", 201, json=body)
    assert (again["drawn_homes"], again["drawn_inspectors"]) == (homes, inspectors)
    other = as_user("sup-city").ok(
        "POST", "/api/v1/supervision/inspections/draws", 201, json={**body, "seed": "another public seed"}
    )
    assert _rerun(other)[0] == other["drawn_homes"]
    ids = {d["id"] for d in httpx.get(f"{api}/api/v1/public/inspections").json()}
    assert {drawn["id"], again["id"], other["id"]} <= ids


def test_public_record_has_no_personal_data(as_user: Callable[[str], Client], api: str) -> None:
    as_user("sup-city").ok(
        "POST", "/api/v1/supervision/inspections/draws", 201,
        json={"region": "420502", "homes": 1, "inspectors": 2, "seed": "no-personal-data"},
    )  # fmt: skip
    text = httpx.get(f"{api}/api/v1/public/inspections").text
    page = httpx.get(f"{api}/public/inspections")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "no-personal-data" in page.text and "双随机一公开" in page.text
    for leak in ("sup-", "王秀英", "password", 'region_code": "4205", "drawn_by'):
        assert leak not in text and leak not in page.text


def test_results_are_recorded_once_by_the_team(as_user: Callable[[str], Client], world: World, api: str) -> None:
    drawn = as_user("sup-city").ok(
        "POST",
        "/api/v1/supervision/inspections/draws",
        201,
        json={"region": "420502", "homes": 2, "inspectors": 2, "team_size": 1, "seed": "results-test"},
    )
    first = drawn["inspections"][0]
    member = next(u for u, i in world.users.items() if f"U{i}" == first["team"][0])
    outsider = next(u for u in ("sup-xiling", "sup-insp1") if u != member)
    path = f"/api/v1/supervision/inspections/{first['id']}/result"
    result = {"outcome": "pass", "summary": "消防设施完好", "inspected_at": datetime.now(UTC).isoformat()}
    assert as_user(outsider).post(path, json=result).status_code == 403
    assert as_user("sup-wuhan").post(path, json=result).status_code == 404
    assert as_user("sup-head-a").post(path, json=result).status_code == 403
    future = {**result, "inspected_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    assert as_user(member).post(path, json=future).status_code == 422
    bad = as_user(member).post(path, json={**result, "outcome": "excellent"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.outcome"
    recorded = as_user(member).ok("POST", path, json=result)
    assert recorded["outcome"] == "pass" and recorded["summary"] == "消防设施完好"
    assert as_user(member).post(path, json={**result, "outcome": "fail"}).status_code == 409
    public = httpx.get(f"{api}/api/v1/public/inspections").json()
    shown = next(i for d in public if d["id"] == drawn["id"] for i in d["inspections"] if i["id"] == first["id"])
    assert shown["outcome"] == "pass"


def test_draw_errors_and_scope(as_user: Callable[[str], Client]) -> None:
    path = "/api/v1/supervision/inspections/draws"
    too_many = as_user("sup-city").post(path, json={"region": "4205", "homes": 4, "inspectors": 1, "team_size": 1})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "body.homes"
    team = as_user("sup-city").post(path, json={"region": "4205", "homes": 1, "inspectors": 1, "team_size": 2})
    assert team.status_code == 422 and team.json()["errors"][0]["field"] == "body.team_size"
    assert as_user("sup-xiling").post(path, json={"region": "4205", "homes": 1, "inspectors": 1}).status_code == 404
    assert as_user("sup-head-a").post(path, json={"region": "4205", "homes": 1, "inspectors": 1}).status_code == 403
    short_seed = as_user("sup-city").post(path, json={"region": "4205", "homes": 1, "inspectors": 1, "seed": "x"})
    assert short_seed.status_code == 422
    generated = as_user("sup-city").ok("POST", path, 201, json={"region": "4205", "homes": 1, "inspectors": 1,
                                                               "team_size": 1})  # fmt: skip
    assert len(generated["seed"]) == 32


def test_draws_cannot_be_rewritten(sup_db: Database, as_user: Callable[[str], Client]) -> None:
    body = {"region": "4205", "homes": 1, "inspectors": 1, "team_size": 1, "seed": "immutable"}
    as_user("sup-city").ok("POST", "/api/v1/supervision/inspections/draws", 201, json=body)
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE inspection_draws SET seed = 'tampered-seed'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM inspection_draws")
