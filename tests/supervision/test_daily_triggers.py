"""supervision_daily follows the roll-ups' minutes, and only their minutes (migrations 0006 and 0033).

A rewrite of the roll-ups' other columns (the vitals' sealing, ``eldercare db rekey``) recomputes nothing; a change
of minutes recomputes the day it is in, and a row moved to another day both days. Each step is compared with
``supervision_daily_refresh`` over every day, run in a savepoint that is rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.registry.support import Database
from tests.supervision.world import World

Conn = psycopg.Connection[Any]
Table = dict[tuple[int, Any], tuple[Any, ...]]


@pytest.fixture
def conn(sup_db: Database, world: World) -> Iterator[Conn]:
    """In a transaction rolled back afterwards: the module's world is left as it was."""
    with psycopg.connect(sup_db.url) as conn:
        yield conn
        conn.rollback()


def _table(conn: Conn) -> Table:
    """supervision_daily by (home, day): its figures and the row's version (xmin: a recomputed row is a new one)."""
    rows = conn.execute(
        "SELECT institution_id, day, device_minutes_online, bed_minutes_observed, bed_minutes_occupied, xmin::text"
        " FROM supervision_daily"
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _figures(table: Table) -> Table:
    return {key: value[:3] for key, value in table.items()}


def _recomputed(conn: Conn) -> Table:
    """What supervision_daily would hold recomputed whole."""
    conn.execute("SAVEPOINT whole")
    conn.execute(
        "SELECT supervision_daily_refresh(ARRAY(SELECT DISTINCT day FROM device_daily"
        " UNION SELECT DISTINCT day FROM bed_daily UNION SELECT day FROM supervision_daily))"
    )
    figures = _figures(_table(conn))
    conn.execute("ROLLBACK TO SAVEPOINT whole")
    return figures


def _one(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


def _untouched(before: Table, after: Table) -> set[Any]:
    return {key for key in before if key in after and before[key][3] == after[key][3]}


def test_rewriting_other_columns_recomputes_nothing(conn: Conn) -> None:
    before = _table(conn)
    assert before, "the world has daily figures"
    changed = conn.execute(
        "UPDATE bed_daily SET samples = samples + 1, vitals_enc = coalesce(vitals_enc, '\\x00'), hr_count = hr_count"
    ).rowcount
    changed += conn.execute("UPDATE device_daily SET messages = messages + 1").rowcount
    assert changed > 0
    after = _table(conn)
    assert _untouched(before, after) == set(before)  # no row rewritten
    assert _figures(after) == _recomputed(conn)


def test_a_change_of_minutes_recomputes_its_day_and_no_other(conn: Conn) -> None:
    device, day = _one(conn, "SELECT device_id, day FROM bed_daily ORDER BY day, device_id LIMIT 1")
    home = _one(conn, "SELECT institution_id FROM devices WHERE id = %s", (device,))[0]
    before = _table(conn)
    conn.execute(
        "UPDATE bed_daily SET occupied_minutes = occupied_minutes + 7 WHERE device_id = %s AND day = %s", (device, day)
    )
    after = _table(conn)
    assert after[(home, day)][2] == before[(home, day)][2] + 7
    assert set(before) - _untouched(before, after) <= {(h, d) for h, d in before if d == day}
    assert _figures(after) == _recomputed(conn)

    device, day = _one(conn, "SELECT device_id, day FROM device_daily ORDER BY day DESC, device_id LIMIT 1")
    before = after
    conn.execute(
        "UPDATE device_daily SET active_minutes = active_minutes / 2 WHERE device_id = %s AND day = %s", (device, day)
    )
    after = _table(conn)
    assert set(before) - _untouched(before, after) <= {(h, d) for h, d in before if d == day}
    assert _figures(after) == _recomputed(conn)


def test_a_row_moved_to_another_day_recomputes_both(conn: Conn) -> None:
    device, day = _one(
        conn,
        "SELECT device_id, day FROM bed_daily b WHERE occupied_minutes > 0"
        " AND NOT EXISTS (SELECT 1 FROM bed_daily n WHERE n.device_id = b.device_id AND n.day = b.day + 1)"
        " ORDER BY day, device_id LIMIT 1",
    )
    conn.execute("UPDATE bed_daily SET day = day + 1 WHERE device_id = %s AND day = %s", (device, day))
    assert _figures(_table(conn)) == _recomputed(conn)
