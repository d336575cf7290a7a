"""Credit scores: every term worked out by hand for home A in October, the blacklist flag, history, scope."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest
from tests.registry.support import Client, Database
from tests.supervision.world import World

from eldercare.platform.supervision import formula
from eldercare.platform.web.page_routes import I18N

OCT = {"from": "2026-10-01", "to": "2026-10-30"}


def _findings(db: Database, world: World) -> None:
    """Issue 9 will fill subsidy_findings; until then the tests write the rows it will write."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        for severity, found, dismissed in (
            ("major", "2026-10-12 10:00+08", None),
            ("critical", "2026-10-20 10:00+08", None),
            ("minor", "2026-10-21 10:00+08", "2026-10-22 10:00+08"),  # dismissed: not counted
            ("minor", "2026-11-02 10:00+08", None),  # November
        ):
            conn.execute(
                "INSERT INTO subsidy_findings (institution_id, claim_month, severity, kind, found_at, dismissed_at)"
                " VALUES (%s, '2026-09-01', %s, 'deceased_claimant', %s, %s)",
                (world.a.id, severity, found, dismissed),
            )


def _inspection(as_user: Callable[[str], Client], world: World) -> None:
    draw = as_user("sup-xiling").ok(
        "POST",
        "/api/v1/supervision/inspections/draws",
        201,
        json={"region": "420502", "homes": 2, "inspectors": 2, "team_size": 2, "seed": "credit-test-seed"},
    )
    inspection = next(i for i in draw["inspections"] if i["institution_code"] == world.a.code)
    as_user("sup-insp1").ok(
        "POST",
        f"/api/v1/supervision/inspections/{inspection['id']}/result",
        json={"outcome": "minor_issues", "summary": "消防通道堆放杂物", "inspected_at": "2026-10-20T10:00:00+08:00"},
    )


def test_scores_blacklist_and_explain(as_user: Callable[[str], Client], world: World, sup_db: Database) -> None:
    _findings(sup_db, world)
    _inspection(as_user, world)
    city = as_user("sup-city")
    scores = city.ok("POST", "/api/v1/supervision/credit-scores", 201, json={**OCT, "region": "420502"})
    by_home = {s["institution_id"]: s for s in scores}
    assert set(by_home) == {world.a.id, world.b.id}
    expected = {
        "acknowledge_p90": 20.0,  # (295 - 60) * 0.1 = 23.5, capped at 20
        "attend_p90": 3.0,  # (480 - 300) / 60
        "unacknowledged_over_5_min": 4.0,  # 2 alarms * 2
        "unresolved_alarms": 2.0,  # the SOS
        "falls_per_100_beds": 10.0,  # 1 fall in 10 beds = 10 per 100 beds
        "device_online": round((0.95 - 419040 / 449280) * 100 * 0.5, 2),
        "subsidy_findings": 20.0,  # major 5 + critical 15
        "inspection_results": 5.0,  # minor issues
    }
    a = by_home[world.a.id]
    assert a["score"] == pytest.approx(100 - sum(expected.values()))
    assert a["blacklisted"] is True and a["threshold"] == formula.THRESHOLD
    assert by_home[world.b.id]["score"] == 100 and by_home[world.b.id]["blacklisted"] is False

    explained = as_user("sup-head-a").ok("GET", f"/api/v1/supervision/credit-scores/{a['id']}")
    assert {t["term"]: t["deduction"] for t in explained["terms"]} == pytest.approx(expected)
    terms = {t["term"]: t for t in explained["terms"]}
    assert terms["acknowledge_p90"]["inputs"]["p90_s_to_acknowledge"] == pytest.approx(295)
    assert terms["acknowledge_p90"]["cap"] == 20 and terms["acknowledge_p90"]["weight"] == pytest.approx(0.1)
    assert terms["subsidy_findings"]["inputs"]["findings"] == {"critical": 1, "major": 1}
    assert terms["inspection_results"]["inputs"]["inspections"] == {"minor_issues": 1}
    assert explained["explanation"][0] == "base 100"
    assert explained["explanation"][-1].startswith(f"= {a['score']:g}")
    assert len(explained["explanation"]) == len(expected) + 2

    flags = as_user("sup-head-a").ok("GET", "/api/v1/supervision/flags")
    assert [(f["institution_id"], f["flag"], f["credit_score_id"]) for f in flags] == [
        (world.a.id, "subsidy_manual_check", a["id"])
    ]
    with psycopg.connect(sup_db.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM institution_flags WHERE institution_id = %s AND flag = 'subsidy_manual_check'"
            " AND cleared_at IS NULL",
            (world.a.id,),
        ).fetchone()
    assert row == (1,)

    # Recomputing keeps the history and does not raise a second flag.
    again = city.ok("POST", "/api/v1/supervision/credit-scores", 201, json={**OCT, "institution_id": world.a.id})
    assert again[0]["score"] == a["score"] and again[0]["id"] != a["id"]
    in_force = city.ok("GET", "/api/v1/supervision/credit-scores", params={"institution_id": world.a.id})
    assert [s["id"] for s in in_force] == [again[0]["id"]]
    every = city.ok(
        "GET", "/api/v1/supervision/credit-scores", params={"institution_id": world.a.id, "all_computations": True}
    )
    assert {s["id"] for s in every} == {a["id"], again[0]["id"]}
    assert len(city.ok("GET", "/api/v1/supervision/flags")) == 1

    # A later period with a good score lifts the flag; the blacklisting stays in the history.
    november = city.ok(
        "POST",
        "/api/v1/supervision/credit-scores",
        201,
        json={"from": "2026-11-01", "to": "2026-11-10", "institution_id": world.a.id},
    )[0]
    assert november["blacklisted"] is False
    assert november["score"] == pytest.approx(100 - 10 - 2)  # no device data (capped 10), a minor finding
    assert city.ok("GET", "/api/v1/supervision/flags") == []
    with psycopg.connect(sup_db.url) as conn:
        cleared = conn.execute(
            "SELECT cleared_reason FROM institution_flags WHERE institution_id = %s", (world.a.id,)
        ).fetchone()
    assert cleared is not None and "at or above 60" in cleared[0]


def test_credit_scope_and_roles(as_user: Callable[[str], Client], world: World) -> None:
    head = as_user("sup-head-a")
    assert head.post("/api/v1/supervision/credit-scores", json=OCT).status_code == 403
    assert as_user("sup-nurse-a").get("/api/v1/supervision/credit-scores").status_code == 403
    city = as_user("sup-city")
    scores = city.ok("POST", "/api/v1/supervision/credit-scores", 201, json={**OCT, "institution_id": world.c.id})
    score_id = scores[0]["id"]
    assert as_user("sup-head-d").get(f"/api/v1/supervision/credit-scores/{score_id}").status_code == 404
    assert as_user("sup-wuhan").get(f"/api/v1/supervision/credit-scores/{score_id}").status_code == 404
    outside = city.post("/api/v1/supervision/credit-scores", json={**OCT, "institution_id": world.d.id})
    assert outside.status_code == 404
    assert city.get("/api/v1/supervision/credit-scores/999999999").status_code == 404


CALM = formula.Inputs(
    alarms_for_people=0,
    p90_s_to_acknowledge=None,
    p90_s_to_attend=None,
    unacknowledged_over_5_min=0,
    open_at_end=0,
    falls=0,
    beds=0,
    device_online_rate=None,
)  # a home with nothing to deduct


def test_formula_terms_are_capped_and_the_threshold_is_strict() -> None:
    assert formula.score(CALM).score == 100
    worst = formula.Inputs(
        alarms_for_people=100,
        p90_s_to_acknowledge=10_000,
        p90_s_to_attend=10_000,
        unacknowledged_over_5_min=100,
        open_at_end=100,
        falls=50,
        beds=10,
        device_online_rate=0.0,
        subsidy_findings={"critical": 10},
        inspections={"fail": 3},
    )
    result = formula.score(worst)
    assert result.score == 0 and result.blacklisted
    assert all(t.deduction == t.cap for t in result.terms)
    # exactly at the threshold is not blacklisted; just below is
    at = replace(CALM, subsidy_findings={"critical": 2}, inspections={"minor_issues": 2})
    assert formula.score(at).score == 60 and not formula.score(at).blacklisted
    below = replace(at, unacknowledged_over_5_min=1)
    assert formula.score(below).score == 58 and formula.score(below).blacklisted


def test_every_rule_is_worded_for_the_pages_in_both_languages() -> None:
    """The pages show a term's rule from their catalogue; the English entry must be the formula's own words, so a
    change of the formula that forgets the pages fails here."""
    catalogue = {lang: json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("en", "zh-CN")}
    terms = formula.terms(CALM)
    assert len(terms) == 8
    for term in terms:
        assert catalogue["en"][f"term_rule.{term.term}"] == term.rule
        assert re.search(r"[\u4e00-\u9fff]", catalogue["zh-CN"][f"term_rule.{term.term}"]), term.term
    assert {k for k in catalogue["zh-CN"] if k.startswith("term_rule.")} == {f"term_rule.{t.term}" for t in terms}
