"""One-press service application: check against the registry, eligibility from the ID number's age, routing
to a home-care provider of the region, tracking; public, rate-limited, nothing but masked data back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import httpx
import psycopg
import pytest
from tests.registry.support import World, new_id_number

from eldercare.platform.services_apply import router as apply_router

PUBLIC = "/api/v1/public/service-applications"


@pytest.fixture(autouse=True)
def fresh_limits(world: World) -> Iterator[None]:
    """Every test starts with empty rate-limit windows (all requests come from 127.0.0.1)."""
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        conn.execute("DELETE FROM rate_limits")
    yield


def _elder(world: World, *, born: date, capability: str = "self_care") -> tuple[str, str, int]:
    name, number = "黄凤英", new_id_number("420502", born=born)
    resident = world.users["staff_a"].ok(
        "POST",
        f"/api/v1/institutions/{world.a.id}/residents",
        201,
        json={"name": name, "id_number": number, "capability": capability},
    )
    return name, number, resident["id"]


def test_eligibility_follows_age_and_capability(world: World) -> None:
    today = date.today()
    name, number, _ = _elder(world, born=date(today.year - 85, 1, 1))
    answer = httpx.post(world.base + PUBLIC, json={"name": name, "id_number": number}).json()
    assert answer["age"] in (84, 85)
    eligible = {o["code"] for o in answer["eligible"]}
    assert "old_age_allowance_80" in eligible and "old_age_allowance_90" not in eligible
    assert "disability_care_subsidy" not in eligible and answer["application"] is None
    assert answer["applicant"] == "黄*英" and number not in str(answer) and name not in str(answer)
    disabled_name, disabled_number, _ = _elder(world, born=date(today.year - 70, 6, 1), capability="disabled")
    answer = httpx.post(world.base + PUBLIC, json={"name": disabled_name, "id_number": disabled_number}).json()
    assert {o["code"] for o in answer["eligible"]} >= {"disability_care_subsidy", "home_care_visit"}
    assert not any(o["code"].startswith("old_age") for o in answer["eligible"])
    refused = httpx.post(
        world.base + PUBLIC,
        json={"name": disabled_name, "id_number": disabled_number, "service": "old_age_allowance_80"},
    )
    assert refused.status_code == 422 and "age 80" in refused.text
    catalogue = httpx.get(world.base + "/api/v1/public/services").json()
    assert {"old_age_allowance_80", "home_care_visit"} <= {o["code"] for o in catalogue}


def test_a_wrong_name_and_an_unknown_number_get_the_same_answer(world: World) -> None:
    name, number, _ = _elder(world, born=date(1940, 1, 1))
    wrong_name = httpx.post(world.base + PUBLIC, json={"name": "别人", "id_number": number})
    unknown = httpx.post(world.base + PUBLIC, json={"name": name, "id_number": new_id_number("420502")})
    assert wrong_name.status_code == unknown.status_code == 404
    assert wrong_name.json() == unknown.json()
    invalid = httpx.post(world.base + PUBLIC, json={"name": name, "id_number": "420502194001011230"})
    assert invalid.status_code == 422


def test_apply_route_follow_and_handle(world: World) -> None:
    name, number, resident = _elder(world, born=date(1939, 9, 9))
    applied = httpx.post(world.base + PUBLIC, json={"name": name, "id_number": number, "service": "home_care_visit"})
    assert applied.status_code == 200, applied.text
    application = applied.json()["application"]
    assert application["status"] == "routed" and application["provider_name"] == "西陵居家服务中心"
    assert application["applicant"] == "黄*英" and number not in applied.text
    twice = httpx.post(world.base + PUBLIC, json={"name": name, "id_number": number, "service": "home_care_visit"})
    assert twice.status_code == 409 and twice.json()["errors"][0]["field"] == "body.service"
    tracking = application["tracking_code"]
    followed = httpx.get(f"{world.base}{PUBLIC}/{tracking}").json()
    assert [e["status"] for e in followed["events"]] == ["submitted", "routed"]
    assert httpx.get(f"{world.base}{PUBLIC}/SA0000000000").status_code == 404

    provider = world.users["staff_p"]
    mine = provider.ok("GET", "/api/v1/service-applications", params={"status": "routed"})
    row = next(a for a in mine if a["tracking_code"] == tracking)
    assert row["applicant"] == name and row["resident_institution_id"] == world.a.id
    assert tracking not in world.users["staff_b"].get("/api/v1/service-applications").text
    assert world.users["reg_4205"].ok("GET", "/api/v1/service-applications")  # supervises the region, masked
    skip = provider.post(f"/api/v1/service-applications/{row['id']}/status", json={"status": "completed"})
    assert skip.status_code == 409
    for status in ("accepted", "in_service", "completed"):
        provider.ok("POST", f"/api/v1/service-applications/{row['id']}/status", json={"status": status, "note": "ok"})
    followed = httpx.get(f"{world.base}{PUBLIC}/{tracking}").json()
    assert followed["status"] == "completed" and len(followed["events"]) == 5
    again = httpx.post(world.base + PUBLIC, json={"name": name, "id_number": number, "service": "home_care_visit"})
    assert again.status_code == 200  # the finished one does not block a new one
    assert resident


def test_the_public_endpoints_are_rate_limited(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply_router, "APPLY_LIMIT", 3)
    body = {"name": "无此人", "id_number": new_id_number("420502")}
    codes = [httpx.post(world.base + PUBLIC, json=body).status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    limited = httpx.post(world.base + PUBLIC, json=body)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert set(limited.json()) == {"detail", "errors"}
