"""Helpers of the subsidy tests: users made straight in the database and logged in through the API, the test
region's amounts set through the API, and a scenario's files submitted through the API."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from tests.registry.support import PASSWORD, Client, login
from tests.subsidy.world import SCHEDULES, Scenario

from eldercare.platform.auth.service import hash_password
from eldercare.platform.subsidy import reason_text
from eldercare.platform.subsidy.models import Reason

_HASH = hash_password(PASSWORD)
CAUGHT = ("rejected", "manual_check")
# What a finding the simulators planted (``expect_claim_finding`` in a run's ground truth) must look like in
# the verdicts of the claim lines it names.
FINDINGS = {
    "claimed_after_death": {"claims_after_death", "died_before_month"},
    "empty_bed_claimed": {"bed_unassigned"},
    "never_present": {"bed_empty", "not_present", "long_absence"},
    "absent_in_hospital": {"hospital_days_claimed"},
}


def user(base: str, db_url: str, role: str, *, institution_id: int | None = None, region: str | None = None) -> Client:
    name = f"{role}-{secrets.token_hex(4)}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, password_hash, role, institution_id, region_code)"
            " VALUES (%s, %s, %s, %s, %s)",
            (name, _HASH, role, institution_id, region),
        )
    return login(base, name, PASSWORD)


def set_amounts(client: Client, *, region: str = "42", effective_from: str = "2026-01") -> list[dict[str, Any]]:
    """The test region's schedules (tests/subsidy/world.py SCHEDULES) through the API."""
    return [
        client.ok(
            "POST",
            "/api/v1/subsidy/schedules",
            201,
            json={"programme": programme, "region_code": region, "effective_from": effective_from, "rates": rates},
        )
        for programme, rates in SCHEDULES.items()
    ]


@dataclass
class Verdict:
    home: int
    line: dict[str, Any]


def submit(scenario: Scenario, homes: list[int], client: Client) -> None:
    """Every home's claim file through the upload endpoint."""
    for index, home_id in enumerate(homes):
        if not any(c.home == index for c in scenario.claims):
            continue
        client.ok(
            "POST",
            f"/api/v1/institutions/{home_id}/subsidy/claims/upload",
            201,
            files={"file": (f"claim-{index}.csv", scenario.claim_file(index), "text/csv")},
        )


def registers(scenario: Scenario, client: Client, *, region: str | None = None) -> None:
    params = {"region": region} if region else {}
    client.ok(
        "POST",
        "/api/v1/subsidy/death-register",
        201,
        params=params,
        files={"file": ("deaths.csv", scenario.death_register(), "text/csv")},
    )
    client.ok(
        "POST",
        "/api/v1/subsidy/hardship-register",
        201,
        params=params,
        files={"file": ("hardship.csv", scenario.hardship_register(), "text/csv")},
    )


def home(db_url: str, region: str = "420502") -> int:
    """A home inserted straight into the database (its id)."""
    from tests.registry.support import new_uscc

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO institutions (code, name, kind, region_code) VALUES (%s, '测试院', 'residential_home', %s)"
            " RETURNING id",
            (new_uscc(region), region),
        ).fetchone()
    assert row is not None
    return int(row[0])


def said_in_both(lines: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Checks that every reason of the verdicts ``lines`` (as the API gives them) can be said in both languages:
    its values fill the English template back into its text exactly (so none is missing or wrong), and the
    Chinese template completely. Returns how often each code was said."""
    said: Counter[str] = Counter()
    for line in lines:
        for reason in (Reason.model_validate(r) for r in line["reasons"]):
            assert reason_text.render(reason, "en") == reason.text, reason
            zh = reason_text.render(reason, "zh-CN")
            assert zh != reason.text and "{" not in zh and re.search(r"[\u4e00-\u9fff]", zh), (reason, zh)
            said[reason.code] += 1
    return said


def held_by(
    finding: Mapping[str, Any], verdicts: Mapping[str, Mapping[str, Any]]
) -> tuple[str, str, list[tuple[str, list[str]]], bool]:
    """Whether the verdicts (by the claim file's ``claim_id``) of the lines a planted finding names show it:
    (kind, programme, each line's verdict and reason codes, held)."""
    kind = str(finding["finding"])
    mine = [verdicts[i] for i in finding["claims"]]
    codes = [{str(r["code"]) for r in v["reasons"]} for v in mine]
    pairs = list(zip(mine, codes, strict=True))
    if kind == "claimed_by_two_homes":
        # the home whose sensor shows the elder keeps its line; the other's is rejected as a duplicate
        held = any(v["verdict"] in CAUGHT and "duplicate_claim" in c for v, c in pairs) and all(
            v["verdict"] in CAUGHT or "duplicate_resolved" in c for v, c in pairs
        )
    elif kind == "unverifiable_days":
        silent = {int(d) for d in finding.get("days") or []}
        held = all(
            v["verdict"] != "rejected"  # silence is not absence
            and v["evidence"]["nights"]["no_evidence"]
            and not silent & set(v["evidence"]["nights"]["absent"])
            for v in mine
        )
    else:
        held = bool(mine) and all(v["verdict"] in CAUGHT and c & FINDINGS[kind] for v, c in pairs)
    return kind, str(finding["programme"]), [(str(v["verdict"]), sorted(c)) for v, c in pairs], held
