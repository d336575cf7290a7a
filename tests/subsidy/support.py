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
