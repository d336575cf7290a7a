"""Fixtures of the web tests: the platform as processes on the test stack with its world (support.py), and a
headless Chromium (Debian's ``chromium`` package) driven by Playwright. Every page is opened in a context
that refuses, and records, any request to a host other than the platform's own."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright
from tests.conftest import free_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http
from tests.registry.support import create_database, drop_database
from tests.subsidy.support import set_amounts, user
from tests.web.support import REGION, Feeder, World, build, history, wait_until

from eldercare.devices import codes
from eldercare.devices import messages as m
from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.uplink import now_ms

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHINA = timezone(timedelta(hours=8))  # the platform's calendar
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "web"


@pytest.fixture(scope="session")
def web(stack: StackInfo, vault: Vault) -> Iterator[World]:
    """The platform's processes on a database of their own: they run for the session, and a sender or an alarm
    engine of theirs on the stack's database would take the outbox and inbox rows of any test run after these."""
    database = create_database(stack, "ec_web")
    try:
        yield from _web(stack, database.url, vault)
    finally:
        drop_database(stack, database)


def _web(stack: StackInfo, db: str, vault: Vault) -> Iterator[World]:
    env = stack_env(stack, ELDERCARE_DATABASE_URL=db)
    port = free_ports(1)[0]
    with (
        run_eldercare("ingest", ["ingest", "--name", "web"], env) as ingest,
        run_eldercare("serve", ["serve", "--port", str(port)], env) as serve,
    ):
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=30)
        ingest.wait_for("subscribed, storing", timeout=30)
        serve.wait_for("alarm engine: listening", timeout=30)
        world = build(stack, db, vault, base)
        now = datetime.now(UTC)
        out_since = now - timedelta(minutes=25)
        history(world.gateway, world.beds, now=now, out_since=out_since)
        # The gateway's supervision reports the silent sensor offline (a technical alarm).
        silent = world.beds[3].sensor
        world.gateway.send([m.DeviceFault(dev=silent, ts=now_ms(), fault=m.FaultKind.OFFLINE, active=True)], alarm=True)
        feeder = Feeder(world.gateway, world.beds, out_since)
        feeder.start()

        def stored() -> bool:
            with psycopg.connect(db) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM bed_readings r JOIN devices d ON d.id = r.device_id WHERE d.code = %s",
                    (world.beds[0].sensor,),
                ).fetchone()
            return row is not None and row[0] >= 181

        wait_until(stored, 30, "the history reached the database")
        token = world.token(world.users.regulator)
        today = datetime.now(UTC).date()
        reply = httpx.post(
            f"{base}/api/v1/supervision/credit-scores",
            json={"from": str(today - timedelta(days=29)), "to": str(today)},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert reply.status_code == 201, reply.text + "\nserve said:\n" + serve.log()[-3000:]
        _subsidy_claim(world)
        try:
            yield world
        finally:
            feeder.close()
            world.gateway.uplink.close()


@pytest.fixture(scope="module")
def browser(web: World) -> Iterator[Browser]:
    """Started after the world (whose seeding runs its own event loop) and stopped with the module: while
    Playwright's synchronous API is running, ``asyncio.run`` refuses to start another loop."""
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield found
        found.close()


@dataclass
class Visit:
    """A browser context of one user: pages, and every request that tried to leave the platform's host."""

    context: BrowserContext
    base: str
    outside: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)

    def page(self, path: str) -> Page:
        page = self.context.new_page()
        page.on(
            "framenavigated", lambda frame: self.navigations.append(frame.url) if frame.parent_frame is None else None
        )
        page.goto(self.base + path)
        return page


class Browsers:
    def __init__(self, browser: Browser, world: World) -> None:
        self.browser = browser
        self.world = world
        self.visits: list[Visit] = []

    def open(self, username: str | None, *, viewport: tuple[int, int] = (1600, 1000), **options: Any) -> Visit:
        context = self.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            **options,
        )
        host = urlsplit(self.world.base).netloc
        visit = Visit(context, self.world.base)

        def guard(route: Route) -> None:
            url = route.request.url
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != host:
                visit.outside.append(url)
                route.abort()
            else:
                route.continue_()

        context.route("**/*", guard)
        if username is not None:
            reply = httpx.post(
                f"{self.world.base}/api/v1/auth/login", json={"username": username, "password": "web-password-1"}
            )
            assert reply.status_code == 200, reply.text
            # The session as the login page stores it, in place before any script of the page runs.
            context.add_init_script(
                "if (!sessionStorage.getItem('test.seeded')) { sessionStorage.setItem('test.seeded', '1');"
                f" localStorage.setItem('eldercare.session', JSON.stringify({reply.text})); }}"
            )
        self.visits.append(visit)
        return visit

    def close(self) -> None:
        for visit in self.visits:
            visit.context.close()
        leaks = [url for visit in self.visits for url in visit.outside]
        assert not leaks, f"requests that tried to leave the platform: {leaks}"


@pytest.fixture
def browsers(browser: Browser, web: World) -> Iterator[Browsers]:
    found = Browsers(browser, web)
    yield found
    found.close()


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def hold_texts(visit: Visit) -> list[Route]:
    """Hold back the pages' texts (every page's script waits for them before it attaches its handlers) until
    the test lets them through with ``route.continue_()``: the page as a slow network would show it."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    visit.context.route("**/i18n/*.json", hold)  # the latest route matching a request handles it
    return held


def release(page: Page, held: list[Route]) -> None:
    page.wait_for_timeout(300)  # time for anything the page would do on its own before its texts came
    assert held, "the page asked for no texts"
    page.context.unroute("**/i18n/*.json")  # the next pages get theirs at once
    for route in held:
        route.continue_()


def ready(page: Page, timeout_ms: int = 15000) -> None:
    page.wait_for_selector("body[data-ready='true']", timeout=timeout_ms)


STRANGER = codes.new_person_code(random.Random(7))  # a fixed person code no home registered


def _subsidy_claim(world: World) -> None:
    """The slow home claims last month (a month is claimed once it has ended) for a person it never registered,
    and for one of its residents' bed every night of the month, while the bed sensor saw the bed empty on night 3
    and sent nothing on nights 7 and 8 (:func:`_last_month_in_bed`). The regulator verifies that month: the
    regulator's page of the home shows the first line rejected and the second paid in part, why, and which
    nights."""
    home = world.other_homes[1].institution_id
    month_start = (datetime.now(CHINA).date().replace(day=1) - timedelta(days=1)).replace(day=1)  # last month
    person, bed_code, nights = _last_month_in_bed(world.db, home, month_start)
    admin = user(world.base, world.db, "admin")
    set_amounts(admin, region=REGION[:2])
    head = user(world.base, world.db, "head", institution_id=home)
    lines = [
        {"person_code": STRANGER, "programme": "old_age_allowance", "amount": "100", "ref": "web-1"},
        {"person_code": person, "bed_code": bed_code, "programme": "operating_subsidy", "days": nights, "ref": "web-2"},
    ]
    month = month_start.strftime("%Y-%m")
    head.ok("POST", f"/api/v1/institutions/{home}/subsidy/claims", 201, json={"month": month, "lines": lines})
    token = world.token(world.users.regulator)
    reply = httpx.post(
        f"{world.base}/api/v1/subsidy/runs",
        params={"month": month},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert reply.status_code == 201, reply.text


EMPTY_NIGHT, SILENT_NIGHTS = 3, (7, 8)  # of the claimed month, in the resident's bed (tests/web/test_regulator...)


def _last_month_in_bed(db: str, home: int, month_start: date) -> tuple[str, str, int]:
    """One resident of ``home``, in the same bed since before ``month_start``, and what its bed sensor's roll-ups
    say of the nights of that month: in bed, except :data:`EMPTY_NIGHT` (empty) and :data:`SILENT_NIGHTS` (no
    data). Returns the person code, the bed code and the month's number of nights."""
    since = datetime.combine(month_start - timedelta(days=1), time(12), tzinfo=CHINA)
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT r.person_code, b.code, a.bed_id, a.resident_id, g.device_id FROM bed_assignments a"
            " JOIN beds b ON b.id = a.bed_id JOIN residents r ON r.id = a.resident_id"
            " JOIN device_bindings g ON g.bed_id = a.bed_id AND g.during @> now()"
            " JOIN devices d ON d.id = g.device_id AND d.kind = 'bed_sensor'"
            " WHERE b.institution_id = %s AND a.during @> now() ORDER BY b.code LIMIT 1",
            (home,),
        ).fetchone()
        assert row is not None, "the slow home has a resident in a bed with a sensor"
        person, bed_code, bed_id, resident_id, device_id = row
        conn.execute(
            "UPDATE bed_assignments SET during = tstzrange(%s, upper(during))"
            " WHERE bed_id = %s AND resident_id = %s AND during @> now()",
            (since, bed_id, resident_id),
        )
        conn.execute(
            "UPDATE device_bindings SET during = tstzrange(%s, upper(during)) WHERE device_id = %s AND during @> now()",
            (since, device_id),
        )
        # Eight hours a night from 22:00, as the roll-ups of a sensor reporting every few seconds would hold them.
        conn.execute(
            "INSERT INTO bed_hourly"
            " (bucket, device_id, samples, observed_minutes, occupied_minutes, hr_count, rr_count)"
            " SELECT (n.night + make_time(22, 0, 0)) AT TIME ZONE 'Asia/Shanghai' + make_interval(hours => k), %s,"
            "        60, 60, CASE WHEN extract(day FROM n.night) = %s THEN 0 ELSE 60 END, 30, 30"
            " FROM (SELECT d::date AS night FROM generate_series(%s::date, %s::date + interval '1 month' - interval"
            "       '1 day', '1 day') AS d) AS n, generate_series(0, 7) AS k"
            " WHERE extract(day FROM n.night) <> ALL (%s) ON CONFLICT DO NOTHING",
            (device_id, EMPTY_NIGHT, month_start, month_start, list(SILENT_NIGHTS)),
        )
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    return str(person), str(bed_code), (next_month - month_start).days
