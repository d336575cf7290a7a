"""The figures of the hand-worked world (tests/supervision/world.py), through the API, in scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.registry.support import Client
from tests.supervision.world import World

OCT = {"from": "2026-10-01", "to": "2026-10-30"}


def _home(report: dict[str, Any], home_id: int) -> dict[str, Any]:
    return next(h for h in report["homes"] if h["institution_id"] == home_id)


def test_home_a_figures_match_the_hand_worked_values(as_user: Callable[[str], Client], world: World) -> None:
    report = as_user("sup-city").ok("GET", "/api/v1/supervision/figures", params=OCT)
    a = _home(report, world.a.id)
    # devices: 10 bed sensors x 1440 min + 2 buttons x 288 min, 30 days; online: 9 sensors all day, one half the
    # day, one button every day (300 minutes counted as 288), the other never
    assert a["device_minutes_expected"] == pytest.approx(30 * (10 * 1440 + 2 * 288))
    assert a["device_minutes_online"] == pytest.approx(30 * (9 * 1440 + 720 + 288))
    assert a["device_online_rate"] == pytest.approx(419040 / 449280)
    # alarms of October: the held alarm and September's are not counted
    assert a["alarms"] == 6
    assert a["alarms_by_kind"] == {"bed_exit": 1, "button": 2, "device_offline": 1, "fall": 1, "sos": 1}
    assert a["alarms_by_priority"] == {"emergency": 4, "urgent": 1, "technical": 1}
    assert a["alarms_for_people"] == 5
    # acknowledged after 10, 30, 50, 400 s (the SOS never): median 40, p90 50 + 0.7 * 350
    assert a["median_s_to_acknowledge"] == pytest.approx(40)
    assert a["p90_s_to_acknowledge"] == pytest.approx(295)
    assert a["median_s_to_attend"] == pytest.approx(160)
    assert a["p90_s_to_attend"] == pytest.approx(480)
    assert a["unacknowledged_over_5_min"] == 2  # the bed exit (400 s) and the SOS
    assert a["falls"] == 1
    assert a["open_at_end"] == 1
    assert (a["beds"], a["nursing_beds"]) == (10, 7)
    assert a["nursing_share"] == pytest.approx(0.7)
    assert a["nursing_target_met"] is True
    assert a["occupancy"] == pytest.approx(0.8)
    assert a["in_bed_share"] == pytest.approx(8 * 1200 / (9 * 1440 + 720))
    assert (a["residents"], a["residents_without_emergency_contact"]) == (8, 2)
    assert (a["floors"], a["nights"], a["night_rounds"]) == (2, 30, 46)
    assert a["night_round_coverage"] == pytest.approx(46 / 60)


def test_region_row_pools_the_homes_in_scope(as_user: Callable[[str], Client], world: World) -> None:
    report = as_user("sup-city").ok("GET", "/api/v1/supervision/figures", params=OCT)
    assert {h["institution_id"] for h in report["homes"]} == {world.a.id, world.b.id, world.c.id}
    region = report["region"]
    assert region["institution_id"] == 0 and region["institution_code"] is None
    assert (region["beds"], region["nursing_beds"]) == (17, 11)
    assert region["nursing_share"] == pytest.approx(11 / 17)
    assert region["residents"] == 13
    assert region["residents_without_emergency_contact"] == 2
    assert region["occupancy"] == pytest.approx(13 / 17)
    assert region["alarms"] == 6 and region["p90_s_to_acknowledge"] == pytest.approx(295)
    expected = 30 * (10 * 1440 + 2 * 288) + 30 * 5 * 1440
    assert region["device_minutes_expected"] == pytest.approx(expected)
    # floor-nights: home A 46 of 60, home B 30 of 30, home C 0 of 30
    assert region["night_round_coverage"] == pytest.approx((46 + 30) / 120)
    b = _home(report, world.b.id)
    assert b["nursing_share"] == pytest.approx(0.4) and b["nursing_target_met"] is False
    c = _home(report, world.c.id)
    assert c["device_online_rate"] is None and c["occupancy"] == 0 and c["residents"] == 0


def test_scope_regions_and_homes(as_user: Callable[[str], Client], world: World) -> None:
    district = as_user("sup-xiling").ok("GET", "/api/v1/supervision/figures", params=OCT)
    assert {h["institution_id"] for h in district["homes"]} == {world.a.id, world.b.id}
    narrowed = as_user("sup-city").ok("GET", "/api/v1/supervision/figures", params={**OCT, "region": "420503"})
    assert [h["institution_id"] for h in narrowed["homes"]] == [world.c.id]
    wider = as_user("sup-xiling").get("/api/v1/supervision/figures", params={**OCT, "region": "4205"})
    assert wider.status_code == 404
    head = as_user("sup-head-a").ok("GET", "/api/v1/supervision/figures", params=OCT)
    assert [h["institution_id"] for h in head["homes"]] == [world.a.id]
    other = as_user("sup-head-a").get("/api/v1/supervision/figures", params={**OCT, "institution_id": world.b.id})
    assert other.status_code == 404
    wuhan = as_user("sup-wuhan").ok("GET", "/api/v1/supervision/figures", params=OCT)
    assert [h["institution_id"] for h in wuhan["homes"]] == [world.d.id]
    assert as_user("sup-nurse-a").get("/api/v1/supervision/figures", params=OCT).status_code == 403
    assert as_user("sup-family").get("/api/v1/supervision/figures", params=OCT).status_code == 403


def test_bad_periods_and_regions_are_precise_errors(as_user: Callable[[str], Client]) -> None:
    city = as_user("sup-city")
    backwards = city.get("/api/v1/supervision/figures", params={"from": "2026-10-30", "to": "2026-10-01"})
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "query.to"
    long = city.get("/api/v1/supervision/figures", params={"from": "2025-01-01", "to": "2026-10-01"})
    assert long.status_code == 422
    bad = city.get("/api/v1/supervision/figures", params={**OCT, "region": "42x5"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.region"
    missing = city.get("/api/v1/supervision/figures", params={"from": "2026-10-01"})
    assert missing.status_code == 422


def test_attention_ranks_homes_with_reasons(as_user: Callable[[str], Client], world: World) -> None:
    ranked = as_user("sup-city").ok("GET", "/api/v1/supervision/attention", params=OCT)
    assert [r["institution_id"] for r in ranked] == [world.a.id, world.c.id, world.b.id]
    a = ranked[0]
    codes = [r["code"] for r in a["reasons"]]
    assert set(codes) == {
        "unacknowledged_over_5_min",
        "alarms_open_at_end",
        "slow_acknowledgement",
        "slow_attendance",
        "devices_offline",
        "night_rounds_missing",
        "residents_without_emergency_contact",
    }
    weights = {r["code"]: r["weight"] for r in a["reasons"]}
    assert weights["slow_acknowledgement"] == pytest.approx((295 - 60) / 10)
    assert weights["unacknowledged_over_5_min"] == 6
    assert a["priority"] == pytest.approx(sum(weights.values()), abs=0.01)
    assert [r["weight"] for r in a["reasons"]] == sorted(weights.values(), reverse=True)
    b = next(r for r in ranked if r["institution_id"] == world.b.id)
    assert [r["code"] for r in b["reasons"]] == ["nursing_share_below_target"]
    assert "40.0%" in b["reasons"][0]["message"]
    c = next(r for r in ranked if r["institution_id"] == world.c.id)
    assert [r["code"] for r in c["reasons"]] == ["night_rounds_missing"]


def test_a_region_is_checked_alike_in_supervision_and_subsidies(as_user: Callable[[str], Client]) -> None:
    """One rule (``scope.check_region``) for both: the same 422 for a code that is not a division's, the same 404 for
    a region outside the regulator's."""
    city, xiling = as_user("sup-city"), as_user("sup-xiling")
    for path, params in (
        ("/api/v1/supervision/figures", OCT),
        ("/api/v1/subsidy/programmes", {}),
    ):
        bad = city.get(path, params={**params, "region": "420"})
        assert bad.status_code == 422, (path, bad.text)
        assert bad.json()["errors"] == [
            {"field": "query.region", "reason": "an administrative division code of 2, 4, 6 or 9 digits"}
        ], path
        outside = xiling.get(path, params={**params, "region": "4205"})
        assert outside.status_code == 404 and outside.json()["detail"] == "region not found", (path, outside.text)
        assert city.get(path, params={**params, "region": "420502"}).status_code == 200, path
