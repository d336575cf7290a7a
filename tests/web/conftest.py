"""Fixtures of the web tests: the platform as processes on the test stack with its world (support.py), and a
headless Chromium (Debian's ``chromium`` package) driven by Playwright. Every page is opened in a context
that refuses, and records, any request to a host other than the platform's own."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright
from tests.conftest import free_ports
from tests.platform_procs import run_eldercare, stack_env, wait_http
from tests.subsidy.support import user
from tests.web.support import Feeder, World, build, history, wait_until

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
def web(stack: StackInfo, db: str, vault: Vault) -> Iterator[World]:
    env = stack_env(stack)
    port = free_ports(1)[0]
    with (
        run_eldercare("ingest", ["ingest", "--name", "web"], env) as ingest,
        run_eldercare("serve", ["serve", "--port", str(port)], env) as serve,
    ):
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=30)
        ingest.wait_for("subscribed, storing", timeout=30)
        serve.wait_for("alarm engine: listening", timeout=30)
        world = build(stack, vault, base)
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


def ready(page: Page, timeout_ms: int = 15000) -> None:
    page.wait_for_selector("body[data-ready='true']", timeout=timeout_ms)


STRANGER = codes.new_person_code(random.Random(7))  # a fixed person code no home registered


def _subsidy_claim(world: World) -> None:
    """The slow home claims last month (a month is claimed once it has ended) for a person it never registered,
    and the regulator verifies that month: the regulator's page of the home shows the line rejected, and why."""
    head = user(world.base, world.db, "head", institution_id=world.other_homes[1].institution_id)
    month = (datetime.now(CHINA).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")  # claimed once ended
    line = {"person_code": STRANGER, "programme": "old_age_allowance", "amount": "100", "ref": "web-1"}
    head.ok("POST", f"/api/v1/institutions/{world.other_homes[1].institution_id}/subsidy/claims", 201,
            json={"month": month, "lines": [line]})  # fmt: skip
    token = world.token(world.users.regulator)
    reply = httpx.post(
        f"{world.base}/api/v1/subsidy/runs",
        params={"month": month},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert reply.status_code == 201, reply.text
