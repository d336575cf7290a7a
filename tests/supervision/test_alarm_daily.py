"""The alarm figures kept per home and day (migration 0008): the 5-minute rule, the tables against a recount
from the alarms after every kind of change, and the percentiles against percentile_cont over raw times."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, LiteralString

import psycopg
import pytest
from tests.registry.support import Client, Database
from tests.supervision.world import TZ, World, local

from eldercare.devices import codes

Conn = psycopg.Connection[tuple[Any, ...]]


def _home(conn: Conn, region: str, name: str, seed: int) -> int:
    row = conn.execute(
        "INSERT INTO institutions (code, name, kind, region_code, created_at) VALUES (%s, %s, 'residential_home',"
        " %s, %s) RETURNING id",
        (codes.generate_uscc(random.Random(seed), region6=region), name, region, datetime(2026, 9, 1, tzinfo=TZ)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _alarm(conn: Conn, home: int, raised: datetime, *, kind: str = "button", priority: str = "emergency",
           state: str = "raised", ack: float | None = None, attend: float | None = None,
           closed: float | None = None) -> int:  # fmt: skip
    def after(seconds: float | None) -> datetime | None:
        return None if seconds is None else raised + timedelta(seconds=seconds)

    row = conn.execute(
        "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at, acknowledged_at,"
        " attending_at, closed_at, last_event_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (home, kind, priority, state, raised, raised, after(ack), after(attend), after(closed), raised),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_alarm_closed_within_5_minutes_is_not_unacknowledged_over_5_minutes(
    as_user: Callable[[str], Client], world: World, sup_db: Database
) -> None:
    """The rule uses the first of acknowledged, attending and closed: the figures and the alarm report."""
    day = date(2026, 10, 5)
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        home = _home(conn, "420505", "点军颐康院", 5)
        _alarm(conn, home, local(day, 1), state="cancelled", closed=120)  # false alarm, cancelled at 2 min
        _alarm(conn, home, local(day, 2), state="resolved", attend=60, closed=200)  # went straight to the bed
        _alarm(conn, home, local(day, 3), state="resolved", attend=30, closed=900)
        _alarm(conn, home, local(day, 4), state="resolved", ack=400, closed=900)  # late: acknowledged at 6:40
        _alarm(conn, home, local(day, 5), state="resolved", closed=700)  # late: first answered when closed
        _alarm(conn, home, local(day, 6))  # never answered
        _alarm(conn, home, local(day, 7), kind="device_offline", priority="technical")  # not an alarm for people
    figures = as_user("sup-city").ok(
        "GET", "/api/v1/supervision/figures", params={"from": "2026-10-01", "to": "2026-10-30", "institution_id": home}
    )
    assert figures["homes"][0]["alarms_for_people"] == 6
    assert figures["homes"][0]["unacknowledged_over_5_min"] == 3
    assert figures["region"]["unacknowledged_over_5_min"] == 3
    since, until = local(day, 0), local(day + timedelta(days=1), 0)
    report = as_user("sup-admin").ok(
        "GET", "/api/v1/alarms/report", params={"since": since.isoformat(), "until": until.isoformat()}
    )
    row = next(r for r in report if r["institution_code"] == figures["homes"][0]["institution_code"])
    assert (row["alarms"], row["unacknowledged_over_5_min"]) == (6, 3)


def _assert_tables_match_a_recount(conn: Conn) -> None:
    kept = conn.execute("SELECT * FROM supervision_alarm_daily WHERE alarms <> 0 ORDER BY 1, 2, 3, 4").fetchall()
    recount = conn.execute("SELECT * FROM supervision_alarm_daily_recomputed ORDER BY 1, 2, 3, 4").fetchall()
    assert kept == recount
    wrong = conn.execute("SELECT count(*) FROM supervision_alarm_daily WHERE alarms < resolved OR resolved < 0")
    assert wrong.fetchone() == (0,)
    kept = conn.execute(
        "SELECT institution_id, day, answered_late, ARRAY(SELECT unnest(ack_ms) ORDER BY 1),"
        " ARRAY(SELECT unnest(attend_ms) ORDER BY 1) FROM supervision_response_daily"
        " WHERE answered_late > 0 OR cardinality(ack_ms) > 0 OR cardinality(attend_ms) > 0 ORDER BY 1, 2"
    ).fetchall()
    recount = conn.execute(
        "SELECT institution_id, day, answered_late, ARRAY(SELECT unnest(ack_ms) ORDER BY 1),"
        " ARRAY(SELECT unnest(attend_ms) ORDER BY 1) FROM supervision_response_daily_recomputed"
        " WHERE answered_late > 0 OR cardinality(ack_ms) > 0 OR cardinality(attend_ms) > 0 ORDER BY 1, 2"
    ).fetchall()
    assert kept == recount
    assert kept  # the comparison is about something


def test_the_daily_tables_follow_every_change_to_the_alarms(sup_db: Database) -> None:
    day = date(2026, 10, 12)
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        home, other = _home(conn, "420506", "猇亭安康院", 6), _home(conn, "420506", "猇亭福乐院", 7)
        conn.execute(  # one statement, many alarms (the statement trigger)
            "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at, acknowledged_at,"
            " attending_at, closed_at, last_event_at)"
            " SELECT %s, k, 'emergency', 'resolved', t, t, t + n * interval '7.25 seconds',"
            " t + n * interval '20 seconds', t + interval '1 hour', t"
            " FROM generate_series(1, 12) n, LATERAL (SELECT %s::timestamptz + n * interval '1 hour' AS t,"
            " (ARRAY['button', 'fall', 'sos'])[1 + n %% 3] AS k) x",
            (home, local(day, 0)),
        )
        _assert_tables_match_a_recount(conn)
        a = _alarm(conn, home, local(day, 23, 50), kind="bed_exit", priority="urgent")
        b = _alarm(conn, home, local(day, 9))
        c = _alarm(conn, other, local(day, 9))
        gateway = _alarm(conn, home, local(day, 10), kind="gateway_offline", priority="technical")
        _assert_tables_match_a_recount(conn)
        steps: list[tuple[LiteralString, tuple[int, ...]]] = [
            ("UPDATE alarms SET state = 'acknowledged', acknowledged_at = raised_at + interval '12.3456 seconds'"
             " WHERE id = %s", (a,)),
            ("UPDATE alarms SET priority = 'emergency' WHERE id = %s", (a,)),  # the ticker's bed-exit escalation
            ("UPDATE alarms SET state = 'attending', attending_at = raised_at + interval '95 seconds' WHERE id = %s",
             (a,)),
            ("UPDATE alarms SET state = 'resolved', closed_at = raised_at + interval '10 minutes' WHERE id = %s", (a,)),
            ("UPDATE alarms SET repeat_count = repeat_count + 1, last_event_at = now() WHERE id = %s", (b,)),
            ("UPDATE alarms SET held_by = %s WHERE id = %s", (gateway, b)),  # held back: out of the figures
            ("UPDATE alarms SET state = 'cancelled', closed_at = raised_at + interval '30 seconds' WHERE id = %s",
             (b,)),
            ("UPDATE alarms SET held_by = NULL WHERE id = %s", (b,)),  # released: back in
            ("UPDATE alarms SET raised_at = raised_at + interval '20 hours' WHERE id = %s", (b,)),  # the next day
            ("UPDATE alarms SET institution_id = %s WHERE id = %s", (home, c)),
            ("UPDATE alarms SET kind = 'sos', acknowledged_at = raised_at + interval '7.25 seconds' WHERE id = %s",
             (c,)),
            ("UPDATE alarms SET acknowledged_at = NULL WHERE id = %s", (c,)),
            ("DELETE FROM alarms WHERE id = %s", (c,)),
            ("UPDATE alarms SET acknowledged_at = acknowledged_at + interval '1 second' WHERE institution_id = %s",
             (home,)),
        ]  # fmt: skip
        for query, params in steps:
            before = conn.execute("SELECT sum(alarms) FROM supervision_alarm_daily").fetchone()
            conn.execute(query, params)
            _assert_tables_match_a_recount(conn)
            if "repeat_count" in query:
                assert conn.execute("SELECT sum(alarms) FROM supervision_alarm_daily").fetchone() == before


def test_concurrent_writers_of_one_home_and_day_keep_the_tables_right(sup_db: Database) -> None:
    day = date(2026, 10, 13)
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        home = _home(conn, "420506", "猇亭长寿院", 8)
        alarms = [_alarm(conn, home, local(day, 8) + timedelta(minutes=n)) for n in range(40)]
    failures: list[BaseException] = []

    def answer(mine: list[int]) -> None:
        try:
            with psycopg.connect(sup_db.url) as conn:
                for n, alarm in enumerate(mine):
                    with conn.transaction():
                        conn.execute(
                            "UPDATE alarms SET state = 'acknowledged',"
                            " acknowledged_at = raised_at + %s * interval '1 second' WHERE id = %s",
                            (10 + n, alarm),
                        )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=answer, args=(alarms[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    with psycopg.connect(sup_db.url) as conn:
        _assert_tables_match_a_recount(conn)


def test_percentiles_match_percentile_cont_over_the_raw_times(sup_db: Database) -> None:
    """Kept to the millisecond: within half a millisecond of the raw figure, per home and for the region,
    over a period across two months."""
    rng = random.Random(11)
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        homes = [_home(conn, "420581", f"宜都敬老院{n}", 20 + n) for n in range(3)]
        for home in homes:
            for _ in range(150):
                raised = local(date(2026, 8, 10), 0) + timedelta(seconds=rng.uniform(0, 40 * 86400))
                ack = rng.choice([None, rng.uniform(0.5, 900), rng.lognormvariate(4, 1)])
                attend = None if ack is None else ack + rng.uniform(0, 1200)
                state = "attending" if attend is not None else "raised"
                _alarm(conn, home, raised, state=state, ack=ack, attend=attend,
                       priority=rng.choice(["emergency", "urgent", "technical"]))  # fmt: skip
        start, end = date(2026, 8, 15), date(2026, 9, 12)
        got = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT institution_id, median_s_to_acknowledge, p90_s_to_acknowledge, median_s_to_attend,"
                " p90_s_to_attend FROM supervision_figures(%s, %s, %s)",
                (homes, start, end),
            ).fetchall()
        }
        raw = conn.execute(
            "SELECT coalesce(institution_id, 0),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - raised_at)),"
            " percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - raised_at)),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM attending_at - raised_at)),"
            " percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM attending_at - raised_at))"
            " FROM alarms WHERE institution_id = ANY(%s) AND priority <> 'technical'"
            " AND raised_at >= %s AND raised_at < %s GROUP BY GROUPING SETS ((institution_id), ())",
            (homes, local(start, 0), local(end + timedelta(days=1), 0)),
        ).fetchall()
        assert len(raw) == 4
        for key, *expected in raw:
            assert got[key] == pytest.approx(expected, abs=0.0005), key
        # and an exact median of whole seconds stays exact
        whole = _home(conn, "420581", "宜都整秒院", 30)
        for seconds in (10, 20, 30, 41):
            _alarm(conn, whole, local(date(2026, 8, 20), 9), ack=seconds)
        median = conn.execute(
            "SELECT median_s_to_acknowledge, p90_s_to_acknowledge FROM supervision_figures(%s, %s, %s)"
            " WHERE institution_id = %s",
            ([whole], start, end, whole),
        ).fetchone()
        assert median == (25.0, pytest.approx(41 - 0.3 * 11))


def test_figures_in_another_time_zone_are_refused(world: World, sup_db: Database) -> None:
    with psycopg.connect(sup_db.url) as conn, pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM supervision_figures(%s, '2026-10-01', '2026-10-30', 'UTC')", ([world.a.id],))
