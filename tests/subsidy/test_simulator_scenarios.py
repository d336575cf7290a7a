"""The simulators' subsidy scenarios (simulators/scenarios/*.yaml with ``claims:``), end to end: the platform's
own processes (``eldercare ingest``, ``eldercare serve``) on a database of their own, the world made with
``eldercare simulate world`` through the API, each scenario run with ``eldercare simulate scenario``; then the
month is rolled up (``ingest.rollups.rebuild``: the simulated month is a backfill), its claim file (the
simulators' format, all homes in one file) is submitted through the API by a regulator, the month verified
through the API, and every finding the scenario expects (``expect_claim_finding`` in its ground truth) is
checked against the verdicts of the claim lines it names; the other lines must be paid."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from tests.conftest import free_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http
from tests.registry.support import ADMIN_PASSWORD, Client, Database, create_database, drop_database, login, make_admin
from tests.subsidy.support import CAUGHT, held_by, said_in_both, user

from eldercare.ingest import rollups
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators import demo_month
from eldercare.simulators.run import truth as truth_log
from eldercare.simulators.scenario import claims as claim_file
from eldercare.simulators.scenario import session

EXE = str(Path(sys.executable).with_name("eldercare"))
TZ = ZoneInfo("Asia/Shanghai")
CLAIM_SCENARIOS = sorted(name for name in session.shipped() if session.load(name).scenario.claims is not None)


@dataclass
class Platform:
    base: str
    env: dict[str, str]
    db: Database
    world: Path
    admin: Client
    regulator: Client


@pytest.fixture(scope="module")
def platform(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    db = create_database(stack, "ec_subsim")
    make_admin(db, "sim-admin")
    port = free_ports(1)[0]
    env = stack_env(stack, ELDERCARE_DATABASE_URL=db.url, ELDERCARE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        with (
            run_eldercare("ingest", ["ingest", "--name", "subsim"], env) as ingest,
            run_eldercare("serve", ["serve", "--port", str(port)], env) as serve,
        ):
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", timeout=60)
            ingest.wait_for("subscribed, storing", timeout=60)
            serve.wait_for("alarm engine: listening", timeout=60)
            spec = session.load(CLAIM_SCENARIOS[0]).scenario.world
            world = tmp_path_factory.mktemp("world") / "world.json"
            done = subprocess.run(
                [EXE, "simulate", "world", "--region", spec.region, "--institutions", str(spec.institutions),
                 "--households", str(spec.households), "--seed", str(spec.seed), "--beds", spec.beds,
                 "--api", base, "--admin", "sim-admin", "--out", str(world)],
                env=env, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            admin = login(base, "sim-admin", ADMIN_PASSWORD)
            for programme, rates in claim_file.SCHEDULES.items():
                body = {"programme": programme, "region_code": "42", "effective_from": "2020-01", "rates": rates}
                admin.ok("POST", "/api/v1/subsidy/schedules", 201, json=body)
            regulator = user(base, db.url, "regulator", region=spec.region)
            yield Platform(base, env, db, world, admin, regulator)
    finally:
        drop_database(stack, db)


def _run(platform: Platform, name: str, out: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    done = subprocess.run(
        [EXE, "simulate", "scenario", name, "--world", str(platform.world), "--out", str(out),
         "--api", platform.base, "--progress-s", "60"],
        env=platform.env, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "run finished" in done.stdout, done.stdout + done.stderr
    return truth_log.read(out / "truth.jsonl"), claim_file.read(out / "claims.csv")


def _verdicts(platform: Platform, month: str, homes: set[int]) -> dict[str, dict[str, Any]]:
    """Verdicts of the month by the claim file's ``claim_id`` (the line's ``ref``)."""
    out: dict[str, dict[str, Any]] = {}
    for home in homes:
        view = platform.regulator.ok("GET", f"/api/v1/institutions/{home}/subsidy/claims", params={"month": month})
        out.update({line["ref"]: line for line in view["lines"]})
    return out


@pytest.mark.parametrize("name", CLAIM_SCENARIOS)
def test_scenario_findings(name: str, platform: Platform, vault: Vault, tmp_path: Path) -> None:
    truth, lines = _run(platform, name, tmp_path / name)
    month = lines[0]["month"]
    first = date.fromisoformat(month + "-01")
    following = (first + timedelta(days=32)).replace(day=1)
    demo_month.wait_stored(
        platform.db.url,
        start=datetime(first.year, first.month, 1, tzinfo=TZ),
        end=datetime(following.year, following.month, 1, tzinfo=TZ),
    )
    with psycopg.connect(platform.db.url, autocommit=True) as conn:
        rollups.rebuild(conn, vault=vault, start=datetime(first.year, first.month, 1, tzinfo=UTC) - timedelta(days=1),
                        end=datetime(first.year, first.month, 1, tzinfo=UTC) + timedelta(days=33),
                        timezone="Asia/Shanghai")  # fmt: skip
    data = (tmp_path / name / "claims.csv").read_bytes()
    receipt = platform.regulator.ok("POST", "/api/v1/subsidy/claims/upload", 201, files={"file": ("claims.csv", data)})
    assert sum(c["lines"] for c in receipt["claims"]) == len(lines)
    platform.regulator.ok("POST", "/api/v1/subsidy/runs", 201, params={"month": month})
    verdicts = _verdicts(platform, month, {c["institution_id"] for c in receipt["claims"]})
    expected = [r["detail"] for r in truth if r["kind"] == "expect_claim_finding"]
    assert expected
    named: set[str] = set()
    report = []
    for finding in expected:
        named |= set(finding["claims"])
        report.append(held_by(finding, verdicts))
    assert all(held for *_, held in report), report
    others = [(ref, v["verdict"], [r["code"] for r in v["reasons"]]) for ref, v in verdicts.items() if ref not in named]
    flagged = [o for o in others if o[1] in CAUGHT]
    print(f"\n{name}: findings {report}; other lines {len(others)}, flagged {flagged}")
    assert not flagged, flagged  # the honest lines of the world are paid
    said_in_both(verdicts.values())
