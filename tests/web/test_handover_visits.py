"""The handover page lists the visits to elders living alone that are due within a week or overdue, most overdue
first, and leaves out those visited lately (``platform/visits/``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from playwright.sync_api import expect
from tests.web.conftest import Browsers, ready, shot
from tests.web.support import World


@pytest.fixture
def living_alone(web: World) -> Iterator[tuple[int, int]]:
    """Two residents of the home put on the visit list 400 days ago: the first never visited (a try when nobody was
    home does not count), the second visited just now. Taken off the list and their visits removed afterwards. The
    home is a home-care provider meanwhile (home-care beds: the same beds and devices in the elders' own homes): a
    residential home's residents live in it, not alone (migration 0032)."""
    due, visited = web.beds[0].resident_id, web.beds[1].resident_id
    kind = "UPDATE institutions SET kind = %s WHERE id = %s"
    with psycopg.connect(web.db, autocommit=True) as conn:
        conn.execute(kind, ("home_care_provider", web.home.institution_id))
    try:
        for resident in (due, visited):
            reply = web.api(web.users.nurse, "PATCH", f"/api/v1/residents/{resident}", json={"lives_alone": True})
            assert reply.status_code == 200, reply.text
        with psycopg.connect(web.db, autocommit=True) as conn:
            conn.execute(
                "UPDATE residents SET lives_alone_since = current_date - 400 WHERE id = ANY(%s)", ([due, visited],)
            )
        now = datetime.now(UTC).isoformat()
        for resident, outcome in ((due, "not_found_home"), (visited, "well")):
            body = {"visited_at": now, "mode": "in_person", "outcome": outcome}
            reply = web.api(web.users.nurse, "POST", f"/api/v1/residents/{resident}/visits", json=body)
            assert reply.status_code == 201, reply.text
        yield due, visited
    finally:
        with psycopg.connect(web.db, autocommit=True) as conn:
            conn.execute("DELETE FROM resident_visits WHERE resident_id = ANY(%s)", ([due, visited],))
            conn.execute("UPDATE residents SET lives_alone = false WHERE id = ANY(%s)", ([due, visited],))
            conn.execute(kind, ("residential_home", web.home.institution_id))


def test_the_handover_lists_the_visits_due(browsers: Browsers, web: World, living_alone: tuple[int, int]) -> None:
    due, visited = living_alone
    page = browsers.open(web.users.nurse).page("/handover")
    ready(page)
    rows = page.locator("#t-visits tbody tr")
    expect(rows).to_have_count(1)
    row = page.locator(f"#t-visits tbody tr[data-resident-id='{due}']")
    expect(row).to_contain_text(web.beds[0].name)
    expect(row).to_contain_text("从未探访")  # the try when nobody was home is not a visit
    expect(row.locator("td.overdue")).to_contain_text("天")
    expect(page.locator(f"#t-visits tbody tr[data-resident-id='{visited}']")).to_have_count(0)
    expect(page.locator("#n-visits")).to_have_text("(1)")
    expect(page.locator("#t-visits").locator("xpath=ancestor::section").locator(".none")).to_be_hidden()
    shot(page, "handover-visits")
